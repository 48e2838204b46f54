"""How much of a WSOD training step is spent after RoI pooling, outside fc6/fc7: the MIL head,
the refinement stages, pseudo labelling and the losses, forward and backward; and, for a model
with Concrete DropBlock, the share of its whole iteration (detector step + the generator's
adversarial step) that CDB adds over the same step without it."""
import statistics
import time
from typing import Dict

import torch
import torch.nn as nn
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from wsod_d2.benchmarks.pseudo_labels import random_proposals
from wsod_d2.config import get_wsod_cfg


class _Fixed(nn.Module):
    """Stands in for a sub-network: returns a fixed tensor that requires grad."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, *args):
        return self.value


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_step_share(
    config_file: str, *, short_side: int = 480, num_proposals: int = 2000, repeats: int = 3
) -> Dict[str, float]:
    """Seconds of a full training step (one image) and of its part after fc7, and the share.
    With an adversary (CDB) also "cdb_step_s" (detector step + the generator's forward/backward
    on -loss), "plain_step_s" (the detector step without CDB) and "cdb_share"."""
    cfg = get_wsod_cfg(config_file, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    height, width = short_side, short_side * 4 // 3
    boxes, _, labels = random_proposals(
        num_proposals, cfg.MODEL.ROI_HEADS.NUM_CLASSES, 3, image_size=float(height)
    )
    proposals = Instances((height, width), proposal_boxes=Boxes(boxes))
    proposals.objectness_logits = torch.zeros(num_proposals)
    batch = [
        {
            "image": torch.rand(3, height, width) * 255,
            "proposals": proposals,
            "image_labels": labels,
        }
    ]

    def full_step():
        model.zero_grad()
        sum(model(batch).values()).backward()

    heads = model.roi_heads
    with EventStorage():
        full = _median_seconds(full_step, repeats)
        # Freeze what comes before the MIL head: the backbone, RoI pooling and fc6/fc7.
        features = {
            k: v.detach() for k, v in model.backbone(model.preprocess_image(batch).tensor).items()
        }
        pooled, fc7 = heads.roi_features(features, [proposals])
        box_head, pooler = heads.box_head, heads.box_pooler
        heads.box_head = _Fixed(fc7.detach().requires_grad_())
        heads.box_pooler = _Fixed(pooled.detach())

        def after_fc7():
            model.zero_grad()
            sum(heads(features, [proposals], labels[None]).values()).backward()

        try:
            after = _median_seconds(after_fc7, repeats)
        finally:
            heads.box_head, heads.box_pooler = box_head, pooler
        result = {"step_s": full, "after_fc7_s": after, "share": after / full}
        if model.adversary is not None:
            result.update(_cdb_share(model, full_step, batch, repeats))
    return result


def _cdb_share(model, full_step, batch, repeats: int) -> Dict[str, float]:
    params = [p for p in model.adversary.parameters() if p.requires_grad]

    def cdb_step():
        full_step()
        torch.autograd.grad(-sum(model(batch).values()), params)

    heads = model.roi_heads
    with_cdb = _median_seconds(cdb_step, repeats)
    dropblock, heads.dropblock = heads.dropblock, None
    try:
        plain = _median_seconds(full_step, repeats)
    finally:
        heads.dropblock = dropblock
    return {"cdb_step_s": with_cdb, "plain_step_s": plain, "cdb_share": 1.0 - plain / with_cdb}
