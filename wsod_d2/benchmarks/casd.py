"""CASD's own cost: training steps on V views of one image with CASD's components on (each alone,
then all), against the sum of plain refinement steps (same detector, CASD off) on each view."""
import tempfile
from typing import Dict, List

import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from wsod_d2.benchmarks.step import input_record
from wsod_d2.benchmarks.timing import median_seconds
from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper

# Each timed variant of the config (which has every CASD component on): overrides.
VARIANTS = {
    "multi-view, CASD off": ["MODEL.CASD.IW_WEIGHT", "0.0", "MODEL.CASD.LW_WEIGHT", "0.0",
                             "MODEL.CASD.IA.ENABLED", "False"],
    "+ IW": ["MODEL.CASD.LW_WEIGHT", "0.0", "MODEL.CASD.IA.ENABLED", "False"],
    "+ LW": ["MODEL.CASD.IW_WEIGHT", "0.0", "MODEL.CASD.IA.ENABLED", "False"],
    "+ IA": ["MODEL.CASD.IW_WEIGHT", "0.0", "MODEL.CASD.LW_WEIGHT", "0.0"],
    "full CASD": [],
}  # fmt: skip


def benchmark_casd_overhead(
    config_file: str,
    *,
    scales=(240, 288),
    num_proposals: int = 300,
    repeats: int = 2,
    device: str = "cpu",
) -> Dict[str, float]:
    """Seconds of the plain steps on each of len(scales) x 2 views of one image, summed
    ("views_s"), and per variant of ``config_file`` (VARIANTS: CASD off, each component alone,
    all) the seconds of one step over all views and its overhead = seconds / views_s - 1."""
    cfg = get_wsod_cfg(
        config_file,
        [
            "MODEL.DEVICE", device,
            "MODEL.WEIGHTS", "",
            "INPUT.MIN_SIZE_TRAIN", str(tuple(scales)),
            "INPUT.VIEWS.NUM_SCALES", str(len(scales)),
            "INPUT.VIEWS.FLIP", "True",
            "INPUT.VIEWS.NUM_PROPOSALS", str(num_proposals),
        ],
        freeze=False,
    )  # fmt: skip
    torch.manual_seed(0)
    plain_cfg = cfg.clone()
    plain_cfg.merge_from_list(
        ["MODEL.META_ARCHITECTURE", "WSODRCNN", "MODEL.ROI_HEADS.NAME", "RefinementROIHeads"]
    )
    plain = build_model(plain_cfg).train()
    with tempfile.TemporaryDirectory() as tmp:
        record = input_record(tmp, min(scales), 2 * num_proposals, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        batch = [MultiViewWSODDatasetMapper(cfg)(record)]
    views = [
        [{"image": v["image"], "proposals": v["proposals"], "image_labels": x["image_labels"]}]
        for x in batch
        for v in x["views"]
    ]

    def step(model, inputs):
        def run():
            model.zero_grad()
            sum(model(inputs).values()).backward()

        return run

    variants: List[Dict] = []
    with EventStorage():
        views_s = sum(median_seconds(step(plain, v), repeats, device) for v in views)
        for name, opts in VARIANTS.items():
            variant_cfg = cfg.clone()
            variant_cfg.merge_from_list(opts)
            model = build_model(variant_cfg).train()
            model.load_state_dict(plain.state_dict(), strict=False)
            seconds = median_seconds(step(model, batch), repeats, device)
            variants.append({"name": name, "s": seconds, "overhead": seconds / views_s - 1.0})
    return {"num_views": len(views), "views_s": views_s, "variants": variants}
