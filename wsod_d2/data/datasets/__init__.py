"""Registers the WSOD datasets under $DETECTRON2_DATASETS (default "datasets") at import.

COCO 2014/2017 need no registration of their own: detectron2's coco_* names are used as they
are (image labels come from their non-crowd annotations in wsod_d2.data.wsod.build).
"""
import os

from wsod_d2.data.datasets.synthetic import register_all_synthetic, register_synthetic_voc
from wsod_d2.data.datasets.voc import load_voc_wsod, register_all_voc, register_voc_wsod
from wsod_d2.data.datasets.wsol import (
    load_wsol_metadata,
    register_all_wsol,
    register_synthetic_wsol,
    register_wsol_dataset,
)

_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
register_all_voc(_root)
register_all_synthetic(_root)
register_all_wsol(_root)
