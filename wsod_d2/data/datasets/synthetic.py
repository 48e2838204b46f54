"""The synthetic VOC-format benchmark, registered as synthvoc_2007_{trainval,test}.

The data (and, through the "auto_proposals" metadata, its selective-search proposals) are
generated on first use under $DETECTRON2_DATASETS/synthvoc/VOC2007.
"""
import os

from wsod_d2.data.datasets.voc import register_voc_wsod
from wsod_d2.data.synthetic.voc import CLASS_NAMES, SyntheticVOCSpec
from wsod_d2.data.synthetic.voc_writer import ensure_synthetic_voc

DEFAULT_SPEC = SyntheticVOCSpec()
# Selective search for the synthetic images: downscaled to 256 px, ~2x faster at a small cost
# in small-object recall.
SELECTIVE_SEARCH = {"mode": "fast", "max_side": 256}


def register_synthetic_voc(prefix: str, root: str, spec: SyntheticVOCSpec = DEFAULT_SPEC):
    """Register ``<prefix>_trainval`` and ``<prefix>_test`` for the synthetic data at ``root``."""
    class_names = CLASS_NAMES[: spec.num_classes]
    for split in ("trainval", "test"):
        name = f"{prefix}_{split}"
        register_voc_wsod(
            name,
            root,
            split,
            2007,
            class_names,
            prepare=lambda: ensure_synthetic_voc(root, spec),
            auto_proposals=SELECTIVE_SEARCH,
        )


def register_all_synthetic(datasets_root):
    register_synthetic_voc("synthvoc_2007", os.path.join(datasets_root, "synthvoc", "VOC2007"))
