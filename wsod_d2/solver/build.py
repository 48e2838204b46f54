"""The optimizer of every wsod_d2 model: SGD, Adam or AdamW (SOLVER.OPTIMIZER) over per-parameter
groups built as detectron2's ``get_default_optimizer_params`` builds them, plus a learning-rate
factor for parameters named with SOLVER.HEAD_LR_PREFIXES (the new layers of a fine-tuned
classifier, wsolevaluation's 10x)."""
from typing import Any, Dict, List

import torch
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups
from torch import nn

# Parameters of these modules take SOLVER.WEIGHT_DECAY_NORM (detectron2's list).
NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
OPTIMIZERS = {"SGD": torch.optim.SGD, "ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}


def optimizer_param_groups(cfg, model: nn.Module) -> List[Dict[str, Any]]:
    """One group per (lr, weight decay): SOLVER.BASE_LR and WEIGHT_DECAY; WEIGHT_DECAY_NORM for
    normalization layers; biases x BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS (when set); then
    x HEAD_LR_FACTOR for names starting with a HEAD_LR_PREFIXES entry."""
    s = cfg.SOLVER
    prefixes = tuple(s.HEAD_LR_PREFIXES)
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            lr, weight_decay = s.BASE_LR, s.WEIGHT_DECAY
            if isinstance(module, NORM_TYPES) and s.WEIGHT_DECAY_NORM is not None:
                weight_decay = s.WEIGHT_DECAY_NORM
            if name == "bias":
                lr *= s.BIAS_LR_FACTOR
                if s.WEIGHT_DECAY_BIAS is not None:
                    weight_decay = s.WEIGHT_DECAY_BIAS
            full_name = f"{module_name}.{name}" if module_name else name
            if prefixes and full_name.startswith(prefixes):
                lr *= s.HEAD_LR_FACTOR
            groups.append({"params": [param], "lr": lr, "weight_decay": weight_decay})
    return reduce_param_groups(groups)


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over :func:`optimizer_param_groups`, with detectron2's gradient clipping
    (SOLVER.CLIP_GRADIENTS); SGD takes SOLVER.MOMENTUM / NESTEROV, Adam(W) SOLVER.ADAM_BETAS /
    ADAM_EPS."""
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(
            f"SOLVER.OPTIMIZER: unknown {cfg.SOLVER.OPTIMIZER!r}; choose from {sorted(OPTIMIZERS)}"
        )
    if name == "SGD":
        kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV}
    else:
        kwargs = {"betas": tuple(cfg.SOLVER.ADAM_BETAS), "eps": cfg.SOLVER.ADAM_EPS}
    groups = optimizer_param_groups(cfg, model)
    return maybe_add_gradient_clipping(cfg, OPTIMIZERS[name])(
        groups, lr=cfg.SOLVER.BASE_LR, **kwargs
    )
