"""How much of a WSOD training step is spent after RoI pooling, outside fc6/fc7: the MIL head,
the refinement stages, pseudo labelling and the losses, forward and backward."""
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
    """Seconds of a full training step (one image) and of its part after fc7, and the share."""
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
    return {"step_s": full, "after_fc7_s": after, "share": after / full}
