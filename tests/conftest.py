"""Shared fixtures: a tiny synthetic VOC-format dataset (generated once per session) and
configs for fast CPU runs on it."""

import os

import pytest
import torch
from detectron2.config import get_cfg

from wsod_d2 import add_wsod_config
from wsod_d2.data.datasets import register_synthetic_voc
from wsod_d2.data.synthetic_voc import SyntheticVOCSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = "configs/Synthetic/wsddn_tiny.yaml"
TINY_SPEC = SyntheticVOCSpec(
    num_trainval=16,
    num_test=8,
    num_classes=4,
    seed=3,
    min_size=96,
    max_size=128,
    difficult_size_frac=0.15,
)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """(dataset root, {"trainval": name, "test": name}, {split: proposal file})."""
    base = tmp_path_factory.mktemp("datasets")
    root = str(base / "tinyvoc" / "VOC2007")
    register_synthetic_voc("tinyvoc", root, TINY_SPEC)
    proposals = {s: str(base / "tinyvoc" / f"ss_{s}.pkl") for s in ("trainval", "test")}
    return root, {s: f"tinyvoc_{s}" for s in ("trainval", "test")}, proposals


def tiny_opts(tiny_voc, output_dir, *opts):
    """Command-line overrides that shrink the synthetic WSDDN config to the tiny dataset."""
    _, names, proposals = tiny_voc
    return [
        str(x)
        for x in (
            "MODEL.DEVICE", "cpu",
            "MODEL.ROI_HEADS.NUM_CLASSES", TINY_SPEC.num_classes,
            "DATASETS.TRAIN", (names["trainval"],),
            "DATASETS.PROPOSAL_FILES_TRAIN", (proposals["trainval"],),
            "DATASETS.TEST", (names["test"], names["trainval"]),
            "DATASETS.PROPOSAL_FILES_TEST", (proposals["test"], proposals["trainval"]),
            "DATASETS.PROPOSAL_WORKERS", 1,
            "INPUT.MIN_SIZE_TRAIN", (96, 112),
            "INPUT.MIN_SIZE_TEST", 112,
            "DATALOADER.NUM_WORKERS", 0,
            "SOLVER.IMS_PER_BATCH", 2,
            "SOLVER.MAX_ITER", 4,
            "SOLVER.WARMUP_ITERS", 0,
            "SOLVER.CHECKPOINT_PERIOD", 2,
            "OUTPUT_DIR", output_dir,
            *opts,
        )
    ]


def tiny_cfg(tiny_voc, output_dir, *opts):
    """The synthetic WSDDN config, shrunk to the tiny dataset and a few iterations."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, TINY_CONFIG))
    cfg.merge_from_list(tiny_opts(tiny_voc, output_dir, *opts))
    return cfg
