"""The tiny synthetic VOC-format dataset, generated once per session (the specs and configs are
in wsod_d2.testing), caplog for wsod_d2's loggers, and a one-image test set for
TEST.CASD_RELEASE_GT_LEAK."""
import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from wsod_d2.data.datasets import register_synthetic_voc
from wsod_d2.data.proposals.io import save_proposal_file
from wsod_d2.testing import TINY_SPEC

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """(dataset root, {"trainval": name, "test": name}, {split: proposal file})."""
    base = tmp_path_factory.mktemp("datasets")
    root = str(base / "tinyvoc" / "VOC2007")
    register_synthetic_voc("tinyvoc", root, TINY_SPEC)
    proposals = {s: str(base / "tinyvoc" / f"ss_{s}.pkl") for s in ("trainval", "test")}
    return root, {s: f"tinyvoc_{s}" for s in ("trainval", "test")}, proposals


@pytest.fixture
def wsod_d2_caplog(caplog):
    """caplog, also for wsod_d2's loggers once setup_logger has stopped their propagation."""
    logger = logging.getLogger("wsod_d2")
    add = not logger.propagate
    if add:
        logger.addHandler(caplog.handler)
    yield caplog
    if add:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def gt_leak_record(tmp_path):
    """A 100 x 50 test image's dict with proposals and, in annotation order, 3 non-difficult
    objects and a difficult one (second): TEST.CASD_RELEASE_GT_LEAK's case."""
    path = tmp_path / "img.jpg"
    Image.fromarray(np.full((50, 100, 3), 128, np.uint8)).save(path)
    xyxy, xywh = BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
    annotations = [
        {"bbox": [10.0, 5.0, 40.0, 30.0], "bbox_mode": xyxy, "category_id": 0},
        {"bbox": [50.0, 10.0, 60.0, 20.0], "bbox_mode": xyxy, "category_id": 0, "difficult": 1},
        # 1 x 1, which the proposals' min size would drop.
        {"bbox": [60.0, 20.0, 61.0, 21.0], "bbox_mode": xyxy, "category_id": 1},
        {"bbox": [5.0, 25.0, 20.0, 20.0], "bbox_mode": xywh, "category_id": 2},
    ]
    return {
        "file_name": str(path),
        "image_id": "000001",
        "height": 50,
        "width": 100,
        "image_labels": [0, 1, 2],
        "annotations": [dict(a, difficult=bool(a.get("difficult"))) for a in annotations],
        # The second is below the min size, the fourth a duplicate of the first after rounding.
        "proposal_boxes": np.array(
            [[0, 0, 100, 50], [3, 3, 4, 4], [20, 10, 80, 40], [0, 0, 100.2, 50]], np.float32
        ),
        "proposal_objectness_logits": np.array([3.0, 2.0, 1.0, 0.0], np.float32),
    }


@pytest.fixture
def gt_leak_dataset(gt_leak_record, tmp_path):
    """(name, proposal file) of a registered one-image test set: gt_leak_record's image."""
    name = "gt_leak_one_image"
    keep = ("file_name", "image_id", "height", "width", "annotations")
    DatasetCatalog.register(name, lambda: [{k: gt_leak_record[k] for k in keep}])
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"])
    proposal_file = str(tmp_path / "proposals.pkl")
    record = gt_leak_record
    save_proposal_file(
        proposal_file,
        [record["image_id"]],
        [record["proposal_boxes"]],
        [record["proposal_objectness_logits"]],
    )
    yield name, proposal_file
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
