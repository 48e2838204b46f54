"""The optimizer of every wsod_d2 model: SGD, Adam or AdamW (SOLVER.OPTIMIZER) over per-parameter
groups built as detectron2's ``get_default_optimizer_params`` builds them, plus a learning-rate
factor for parameters named with SOLVER.HEAD_LR_PREFIXES (the new layers of a fine-tuned
classifier, wsolevaluation's 10x); and the adversary's own SGD and schedule (SOLVER.CDB)."""
from typing import Any, Dict, Iterable, List

import torch
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups
from detectron2.solver.lr_scheduler import LRMultiplier, WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler
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


def optimizer_param_groups(
    cfg, model: nn.Module, exclude: Iterable[nn.Parameter] = ()
) -> List[Dict[str, Any]]:
    """One group per (lr, weight decay): SOLVER.BASE_LR and WEIGHT_DECAY; WEIGHT_DECAY_NORM for
    normalization layers; biases x BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS (when set); then
    x HEAD_LR_FACTOR for names starting with a HEAD_LR_PREFIXES entry. Parameters in ``exclude``
    (an adversary's, trained by its own optimizer) are left out."""
    s = cfg.SOLVER
    prefixes = tuple(s.HEAD_LR_PREFIXES)
    groups, seen = [], set(exclude)
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


def build_optimizer(
    cfg, model: nn.Module, exclude: Iterable[nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over :func:`optimizer_param_groups` (without ``exclude``), with
    detectron2's gradient clipping (SOLVER.CLIP_GRADIENTS); SGD takes SOLVER.MOMENTUM / NESTEROV,
    Adam(W) SOLVER.ADAM_BETAS / ADAM_EPS."""
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(
            f"SOLVER.OPTIMIZER: unknown {cfg.SOLVER.OPTIMIZER!r}; choose from {sorted(OPTIMIZERS)}"
        )
    if name == "SGD":
        kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV}
    else:
        kwargs = {"betas": tuple(cfg.SOLVER.ADAM_BETAS), "eps": cfg.SOLVER.ADAM_EPS}
    groups = optimizer_param_groups(cfg, model, exclude)
    return maybe_add_gradient_clipping(cfg, OPTIMIZERS[name])(
        groups, lr=cfg.SOLVER.BASE_LR, **kwargs
    )


def build_adversary_optimizer(cfg, module: nn.Module) -> torch.optim.Optimizer:
    """SGD over ``module`` (Concrete DropBlock's generator) with SOLVER.CDB: BASE_LR and
    WEIGHT_DECAY, biases at BIAS_LR_FACTOR x BASE_LR with WEIGHT_DECAY_BIAS (wetectron's
    make_cdb_optimizer)."""
    s = cfg.SOLVER.CDB
    groups = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        bias = name.endswith("bias")
        groups.append(
            {
                "params": [param],
                "lr": s.BASE_LR * (s.BIAS_LR_FACTOR if bias else 1.0),
                "weight_decay": s.WEIGHT_DECAY_BIAS if bias else s.WEIGHT_DECAY,
            }
        )
    return torch.optim.SGD(reduce_param_groups(groups), lr=s.BASE_LR, momentum=s.MOMENTUM)


def build_adversary_lr_scheduler(cfg, optimizer: torch.optim.Optimizer):
    """SOLVER.CDB's schedule over SOLVER.MAX_ITER: x GAMMA at each of STEPS, after a linear
    warm-up from WARMUP_FACTOR over WARMUP_ITERS (wetectron's WarmupMultiStepLR)."""
    s = cfg.SOLVER.CDB
    max_iter = cfg.SOLVER.MAX_ITER
    steps = [x for x in s.STEPS if x <= max_iter]
    multiplier = WarmupParamScheduler(
        MultiStepParamScheduler(
            values=[s.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        ),
        s.WARMUP_FACTOR,
        min(s.WARMUP_ITERS / max_iter, 1.0),
        "linear",
    )
    return LRMultiplier(optimizer, multiplier=multiplier, max_iter=max_iter)
