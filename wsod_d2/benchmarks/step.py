"""One WSOD training step (forward and backward, one image) at a config's recipe settings, on the
CPU or a CUDA device: seconds per image, peak device memory, and the time spent outside the
backbone and fc6/fc7 (RoI pooling, the MIL head, refinement, pseudo labels, CASD, the losses),
measured directly by replaying the recorded outputs of those layers (``replay.py``). Optionally
the same step under bf16 autocast, its losses checked against fp32 on the same inputs and weights;
for a model with Concrete DropBlock, the share of its iteration that the generator's step adds."""
import contextlib
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from PIL import Image

from wsod_d2.benchmarks.mixed_precision import autocast, compare_bf16_losses, without_dropblock
from wsod_d2.benchmarks.pseudo_labels import random_proposals
from wsod_d2.benchmarks.replay import OutputReplay
from wsod_d2.benchmarks.timing import median_seconds
from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper

__all__ = ["benchmark_step", "input_record", "step_scales"]

# Positive classes of the benchmark image (VOC images hold 1.5 classes on average; 3 is a busy one).
NUM_POSITIVE = 3
# Relative tolerance between the losses of a replayed step and of the step it replays: the same
# computation, up to the order of floating-point reductions on a device.
REPLAY_RTOL = 1e-4


def step_scales(cfg, scale_factor: float = 1.0) -> List[int]:
    """Short sides of the benchmarked views: the largest of INPUT.MIN_SIZE_TRAIN, or the largest
    INPUT.VIEWS.NUM_SCALES of them for a multi-view recipe, each times ``scale_factor``."""
    count = max(cfg.INPUT.VIEWS.NUM_SCALES, 1)
    return [max(1, round(s * scale_factor)) for s in sorted(set(cfg.INPUT.MIN_SIZE_TRAIN))[-count:]]


def input_record(directory: str, height: int, num_proposals: int, num_classes: int) -> Dict:
    """A dataset dict of a 4:3 random image written to ``directory``, with random proposals and
    NUM_POSITIVE labels."""
    width = height * 4 // 3
    rng = np.random.default_rng(0)
    path = os.path.join(directory, f"step_{height}.jpg")
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    boxes, _, labels = random_proposals(
        num_proposals, num_classes, NUM_POSITIVE, image_size=float(height)
    )
    return {
        "file_name": path,
        "image_id": "step",
        "height": height,
        "width": width,
        "image_labels": labels.nonzero()[:, 0].tolist(),
        "proposal_boxes": boxes.clamp(max=float(height - 1)).numpy(),
        "proposal_objectness_logits": np.zeros(num_proposals, np.float32),
    }


def _batch(cfg, multi_view: bool, scales: List[int], num_proposals: int) -> List[Dict]:
    """One training input made by the config's own mapper at the benchmarked scales."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.INPUT.MIN_SIZE_TRAIN = tuple(scales)
    np.random.seed(0)  # the mappers draw scales, flips and CASD's proposal subset with numpy
    with tempfile.TemporaryDirectory() as tmp:
        record = input_record(tmp, max(scales), num_proposals, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        mapper = MultiViewWSODDatasetMapper(cfg) if multi_view else WSODDatasetMapper(cfg, True)
        return [mapper(record)]


def _timed_step(model, batch, seed, bf16, repeats, warmup) -> Tuple[float, Optional[int]]:
    """Median seconds of a step and the peak bytes allocated on a CUDA device meanwhile (None
    elsewhere), counted from the model and inputs alone (the peak is reset first)."""
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(model.device)
    step = lambda: _losses(model, batch, seed, bf16)  # noqa: E731
    seconds = median_seconds(step, repeats, model.device, warmup)
    return seconds, torch.cuda.max_memory_allocated(model.device) if cuda else None


def _losses(model: nn.Module, batch: List[Dict], seed: int, bf16: bool) -> Dict[str, torch.Tensor]:
    """One seeded step (forward and backward); its detached losses."""
    torch.manual_seed(seed)  # dropout, CDB and IA draw alike in every step
    model.zero_grad(set_to_none=True)
    with autocast(model) if bf16 else contextlib.nullcontext():
        losses = model(batch)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}


def _outside_seconds(model, batch, seed, repeats, warmup) -> float:
    """Seconds of the step with the backbone and the box head's linear layers replayed."""
    modules = {"backbone": model.backbone}
    for name, module in model.roi_heads.box_head.named_modules():
        if isinstance(module, nn.Linear):
            modules[f"box_head.{name}"] = module
    replay = OutputReplay(modules)
    with replay.recording():
        expected = _losses(model, batch, seed, False)
    with replay.replaying():

        def step():
            replay.rewind()
            return _losses(model, batch, seed, False)

        for name, value in step().items():
            if not torch.allclose(value, expected[name], rtol=REPLAY_RTOL, atol=0.0):
                raise RuntimeError(
                    f"replayed step: {name} = {value.item()}, in the real step "
                    f"{expected[name].item()}"
                )
        return median_seconds(step, repeats, model.device, warmup)


def _cdb_seconds(model, batch, seed, repeats, warmup) -> Dict[str, float]:
    """The detector step plus the generator's step (a second forward and backward on -loss, as
    wetectron's do_train_cdb), and the detector step without Concrete DropBlock."""
    params = [p for p in model.adversary.parameters() if p.requires_grad]

    def cdb_step():
        _losses(model, batch, seed, False)
        torch.autograd.grad(-sum(model(batch).values()), params)

    with_cdb = median_seconds(cdb_step, repeats, model.device, warmup)
    with without_dropblock(model):
        plain = median_seconds(
            lambda: _losses(model, batch, seed, False), repeats, model.device, warmup
        )
    return {"cdb_step_s": with_cdb, "plain_step_s": plain, "cdb_share": 1.0 - plain / with_cdb}


def benchmark_step(
    config_file: str,
    *,
    device: str = "cpu",
    scale_factor: float = 1.0,
    num_proposals: Optional[int] = None,
    repeats: int = 5,
    warmup: int = 2,
    bf16: bool = False,
    seed: int = 0,
) -> Dict:
    """
    Time a training step of ``config_file``'s model (random init) on one image.

    Args:
        scale_factor: times the recipe's training scales (:func:`step_scales`).
        num_proposals: proposals of the image; None = DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN
            (a multi-view mapper then keeps INPUT.VIEWS.NUM_PROPOSALS of them).
        repeats, warmup: timed and untimed steps; times are medians.
        bf16: also time the step under bf16 autocast and compare its losses with fp32.
    Returns:
        {"scales", "num_views", "num_rois" (per view), "step_s", "peak_bytes" (None off CUDA),
        "outside_s", "share"}; with Concrete DropBlock also "cdb_step_s", "plain_step_s",
        "cdb_share"; with ``bf16`` also "bf16_step_s", "bf16_peak_bytes" and "bf16_losses"
        (see :func:`compare_bf16_losses`).
    """
    cfg = get_wsod_cfg(config_file, ["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""], freeze=False)
    torch.manual_seed(seed)
    model = build_model(cfg).train()
    scales = step_scales(cfg, scale_factor)
    count = num_proposals or cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN
    batch = _batch(cfg, model.trains_on_views, scales, count)
    views = batch[0].get("views", batch)
    result = {
        "scales": scales,
        "num_views": len(views),
        "num_rois": len(views[0]["proposals"]),
    }
    with EventStorage():
        result["step_s"], result["peak_bytes"] = _timed_step(
            model, batch, seed, False, repeats, warmup
        )
        result["outside_s"] = _outside_seconds(model, batch, seed, repeats, warmup)
        if model.adversary is not None:
            result.update(_cdb_seconds(model, batch, seed, repeats, warmup))
        if bf16:
            result["bf16_step_s"], result["bf16_peak_bytes"] = _timed_step(
                model, batch, seed, True, repeats, warmup
            )
            result["bf16_losses"] = compare_bf16_losses(model, batch, seed)
    result["share"] = result["outside_s"] / result["step_s"]
    return result
