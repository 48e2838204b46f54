"""bf16 autocast for a WSOD training step, and the check of its losses against fp32 on the same
inputs and weights."""
import contextlib
from typing import Dict, List, Union

import torch
import torch.nn as nn
from detectron2.modeling.poolers import ROIPooler

__all__ = ["BF16_ATOL", "BF16_RTOL", "autocast", "compare_bf16_losses", "without_dropblock"]

# A bf16 loss passes when |bf16 - fp32| <= BF16_RTOL * |fp32| + BF16_ATOL: bf16 keeps 8 bits of
# mantissa (relative rounding 2^-8 = 4e-3 per operation), so 2e-2 allows the rounding of a few
# layers to add up; the absolute floor only keeps exact zeros (an empty regression loss) equal.
BF16_RTOL = 2e-2
BF16_ATOL = 1e-6


def _float_features(module, args):
    features, boxes = args
    return [f.float() for f in features], boxes


@contextlib.contextmanager
def autocast(model: nn.Module):
    """bf16 autocast on the device of ``model`` (CUDA, or the CPU for a smoke run). On the CPU the
    RoI poolers get float32 feature maps: torchvision's roi_pool has an autocast rule (pool in
    float32) for CUDA only, and without it refuses bf16 features with float32 boxes."""
    device = torch.device(model.device)
    handles = []
    if device.type == "cpu":
        poolers = [m for m in model.modules() if isinstance(m, ROIPooler)]
        handles = [m.register_forward_pre_hook(_float_features) for m in poolers]
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def without_dropblock(model: nn.Module):
    """The model's box head without Concrete DropBlock inside the block."""
    heads = model.roi_heads
    dropblock, heads.dropblock = heads.dropblock, None
    try:
        yield
    finally:
        heads.dropblock = dropblock


@contextlib.contextmanager
def _deterministic(model: nn.Module):
    """Dropout at p = 0 and Concrete DropBlock off: their random draws depend on the dtype of what
    they drop, which would make fp32 and bf16 differ by more than rounding."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    rates = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        with without_dropblock(model):
            yield
    finally:
        for m, p in zip(dropouts, rates):
            m.p = p


@contextlib.contextmanager
def _no_tf32():
    """Full fp32 matmuls and convolutions for the reference (cuDNN uses TF32 by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def compare_bf16_losses(
    model: nn.Module,
    batch: List[Dict],
    seed: int = 0,
    rtol: float = BF16_RTOL,
    atol: float = BF16_ATOL,
) -> Dict[str, Dict[str, Union[float, bool]]]:
    """
    The training losses of ``model`` on ``batch`` in fp32 (TF32 off) and under bf16 autocast,
    both seeded alike, without dropout and Concrete DropBlock (``_deterministic``).

    Returns:
        {loss name: {"fp32", "bf16", "rel" (|bf16 - fp32| / |fp32|, inf when fp32 is 0 and bf16
        is not), "pass": within rtol * |fp32| + atol}}.
    """
    losses = []
    with _deterministic(model), torch.no_grad():
        for context in (_no_tf32(), autocast(model)):
            torch.manual_seed(seed)
            with context:
                losses.append({k: float(v) for k, v in model(batch).items()})
    out = {}
    for name, fp32 in losses[0].items():
        bf16 = losses[1][name]
        diff = abs(bf16 - fp32)
        rel = diff / abs(fp32) if fp32 else (0.0 if diff == 0 else float("inf"))
        out[name] = {
            "fp32": fp32,
            "bf16": bf16,
            "rel": rel,
            "pass": diff <= rtol * abs(fp32) + atol,
        }
    return out
