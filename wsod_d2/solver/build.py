"""Optimizers by SOLVER.OPTIMIZER: detectron2's SGD, or Adam with the same parameter groups."""
import torch
from detectron2.solver import build_optimizer as build_sgd_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping


def build_optimizer(cfg, model):
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return build_sgd_optimizer(cfg, model)
    if name != "ADAM":
        raise ValueError(f"SOLVER.OPTIMIZER: unknown {cfg.SOLVER.OPTIMIZER!r}; choose SGD or ADAM")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.Adam)(params, lr=cfg.SOLVER.BASE_LR)
