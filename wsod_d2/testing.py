"""Fixtures for wsod_d2's tests and for users' own: a tiny synthetic VOC-format dataset and a tiny
WSOL one, and the synthetic WSDDN config shrunk to them (as detectron2's utils/testing.py)."""
import os

import numpy as np
from detectron2.utils.events import EventStorage
from PIL import Image

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.synthetic.voc import SyntheticVOCSpec
from wsod_d2.data.synthetic.wsol import SyntheticWSOLSpec
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.utils.env import REPO_ROOT  # noqa: F401  (re-exported for the tests)

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
TINY_WSOL = SyntheticWSOLSpec(
    num_classes=4, train_per_class=4, val_per_class=1, test_per_class=3, min_size=48, max_size=64
)


def synthetic_wsol_cfg(name, overrides=()):
    """A CPU config of configs/Synthetic/wsol/<name> with {KEY: VALUE} overrides (not frozen)."""
    opts = ["MODEL.DEVICE", "cpu", *[x for kv in dict(overrides).items() for x in kv]]
    path = os.path.join(REPO_ROOT, "configs", "Synthetic", "wsol", name)
    return get_wsod_cfg(path, opts, freeze=False)


def image_record(image_id, file_name=None, *, width: int, height: int):
    """A dataset dict without annotations, as proposal files are checked against."""
    return {
        "image_id": image_id,
        "file_name": file_name or f"/data/{image_id}.jpg",
        "width": width,
        "height": height,
    }


def tiny_opts(tiny_voc, output_dir, *opts):
    """Command-line overrides that shrink the synthetic WSDDN config to the tiny dataset.

    tiny_voc: (dataset root, {"trainval": name, "test": name}, {split: proposal file}).
    """
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
    ]  # fmt: skip


def tiny_cfg(tiny_voc, output_dir, *opts):
    """The synthetic WSDDN config, shrunk to the tiny dataset and a few iterations."""
    return get_wsod_cfg(
        os.path.join(REPO_ROOT, TINY_CONFIG), tiny_opts(tiny_voc, output_dir, *opts), freeze=False
    )


CASD_TEST_PROPOSALS = 24


def tiny_casd_cfg(overrides=None):
    """configs/Synthetic/casd/Base-CASD-tiny.yaml on an even smaller network, with CASD's own
    ContextLocNet head, 4 classes and CASD_TEST_PROPOSALS proposals; ``overrides``: {key: value
    string}."""
    options = {
        "MODEL.DEVICE": "cpu",
        "MODEL.MIL.NAME": "ContextLocNet",
        "MODEL.MIL.CONTEXT_ROI_SCORES": "softmax",
        "MODEL.VGG.CHANNELS": "[8, 8, 16, 16, 16]",
        "MODEL.ROI_BOX_HEAD.FC_DIM": "32",
        "MODEL.ROI_BOX_HEAD.DROPOUT": "0.0",
        "MODEL.ROI_HEADS.NUM_CLASSES": "4",
        "INPUT.MIN_SIZE_TRAIN": "(48, 64)",
        "INPUT.MAX_SIZE_TRAIN": "100",
        "INPUT.VIEWS.NUM_PROPOSALS": str(CASD_TEST_PROPOSALS),
        **(overrides or {}),
    }
    path = os.path.join(REPO_ROOT, "configs", "Synthetic", "casd", "Base-CASD-tiny.yaml")
    return get_wsod_cfg(path, [x for kv in options.items() for x in kv], freeze=False)


def casd_test_record(directory):
    """A dataset dict of one random 80 x 60 JPEG written to ``directory``, labels {1, 3} and 40
    random proposals."""
    rng = np.random.default_rng(0)
    path = os.path.join(str(directory), "img.jpg")
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    xy = rng.uniform(0, 50, (40, 2))
    boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(8, 40, (40, 2)), [80, 60])], 1)
    return {
        "file_name": path,
        "image_id": "img",
        "height": 60,
        "width": 80,
        "image_labels": [1, 3],
        "proposal_boxes": boxes.astype(np.float32),
        "proposal_objectness_logits": np.zeros(40, np.float32),
    }


def multiview_batch(cfg, record, n=2, seed=0):
    """``n`` multi-view mappings of ``record`` (numpy seeded with ``seed`` first)."""
    np.random.seed(seed)
    mapper = MultiViewWSODDatasetMapper(cfg)
    return [mapper(record) for _ in range(n)]


def losses_with_storage(model, batch):
    """(losses, the EventStorage they were computed in) of a training forward."""
    with EventStorage() as storage:
        losses = model(batch)
    return losses, storage
