"""TEST.CASD_RELEASE_GT_LEAK: the k - 1 non-difficult GT boxes but the first in front of the test
proposals, after their filter, in the resized image; the warning; refused for training data."""
import logging

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.build import build_wsod_test_loader, build_wsod_train_loader
from wsod_d2.data.wsod.gt_leak import leaked_gt_boxes
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper

KEY = "TEST.CASD_RELEASE_GT_LEAK"
# What the gt_leak_record fixture's annotations leak (conftest.py): objects 3 and 4, the second
# non-difficult and the third (XYWH in the dataset), as XYXY in the original image.
LEAKED = [[60.0, 20.0, 61.0, 21.0], [5.0, 25.0, 25.0, 45.0]]


def test_k_non_difficult_objects_leak_all_but_the_first(gt_leak_record):
    np.testing.assert_array_equal(leaked_gt_boxes(gt_leak_record), LEAKED)
    annotations = gt_leak_record["annotations"]
    # One non-difficult object (and a difficult one): nothing; only a difficult one: nothing.
    assert leaked_gt_boxes({**gt_leak_record, "annotations": annotations[:2]}).shape == (0, 4)
    assert leaked_gt_boxes({**gt_leak_record, "annotations": annotations[1:2]}).shape == (0, 4)
    assert leaked_gt_boxes({**gt_leak_record, "annotations": []}).shape == (0, 4)
    missing = {k: v for k, v in gt_leak_record.items() if k != "annotations"}
    with pytest.raises(ValueError, match=rf"{KEY}.*image 000001"):
        leaked_gt_boxes(missing)


def test_mapper_puts_them_in_front_of_the_filtered_proposals_after_the_resize(gt_leak_record):
    def mapper(gt_leak, topk=None):
        return WSODDatasetMapper(
            False,
            augmentations=[T.ResizeShortestEdge(100, 1000)],
            image_format="RGB",
            num_classes=3,
            proposal_topk=topk,
            proposal_min_size=2.0,
            proposal_dedup_scale=0.0625,
            gt_leak=gt_leak,
        )

    plain = mapper(False)(gt_leak_record)["proposals"].proposal_boxes.tensor
    assert plain.tolist() == [[0, 0, 200, 100], [40, 20, 160, 80]]
    out = mapper(True)(gt_leak_record)
    boxes = out["proposals"].proposal_boxes.tensor
    # Short side 50 -> 100: every coordinate doubles, the GT boxes' too.
    assert torch.equal(boxes, torch.cat([torch.tensor(LEAKED) * 2, plain]))
    assert out["proposals"].objectness_logits.tolist() == [3.0, 3.0, 3.0, 1.0]
    assert "annotations" not in out
    # After the top-k of the proposals, not in competition with them.
    boxes = mapper(True, topk=1)(gt_leak_record)["proposals"].proposal_boxes.tensor
    assert boxes.tolist() == [[120, 40, 122, 42], [10, 50, 50, 90], [0, 0, 200, 100]]
    one = {**gt_leak_record, "annotations": gt_leak_record["annotations"][:1]}
    assert torch.equal(mapper(True)(one)["proposals"].proposal_boxes.tensor, plain)


def test_default_is_off_and_training_refuses_it():
    cfg = get_wsod_cfg(freeze=False)
    assert cfg.TEST.CASD_RELEASE_GT_LEAK is False
    assert WSODDatasetMapper(cfg, False).gt_leak is False
    cfg.TEST.CASD_RELEASE_GT_LEAK = True
    assert WSODDatasetMapper(cfg, False).gt_leak is True
    with pytest.raises(ValueError, match=rf"{KEY} is True while building a training"):
        WSODDatasetMapper(cfg, True)
    cfg.INPUT.VIEWS.NUM_SCALES = 2
    with pytest.raises(ValueError, match=KEY):
        MultiViewWSODDatasetMapper(cfg)
    with pytest.raises(ValueError, match=rf"{KEY} is True while building the training loader"):
        build_wsod_train_loader(cfg)


def test_test_loader_leaks_and_warns(gt_leak_dataset, wsod_d2_caplog):
    name, proposal_file = gt_leak_dataset
    cfg = get_wsod_cfg(freeze=False)
    # fmt: off
    cfg.merge_from_list([
        "MODEL.ROI_HEADS.NUM_CLASSES", 3, "INPUT.MIN_SIZE_TEST", 100, "INPUT.FORMAT", "RGB",
        "DATASETS.TEST", (name,), "DATASETS.PROPOSAL_FILES_TEST", (proposal_file,),
        "DATASETS.PROPOSAL_FILES_ACCEPTED", (proposal_file,), "DATALOADER.NUM_WORKERS", 0,
    ])
    # fmt: on
    (batch,) = list(build_wsod_test_loader(cfg, name))
    plain = batch[0]["proposals"].proposal_boxes.tensor
    assert not any(KEY in r.getMessage() for r in wsod_d2_caplog.records)
    cfg.TEST.CASD_RELEASE_GT_LEAK = True
    (batch,) = list(build_wsod_test_loader(cfg, name))
    boxes = batch[0]["proposals"].proposal_boxes.tensor
    assert torch.equal(boxes, torch.cat([torch.tensor(LEAKED) * 2, plain]))
    (warning,) = [r for r in wsod_d2_caplog.records if KEY in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert f"building the test loader of {name}" in warning.getMessage()
    assert "reported numbers include ground truth" in warning.getMessage()
