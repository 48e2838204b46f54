"""attach_proposals: matching ids, sorting, clipping and the errors that name file and image."""

import numpy as np
import pytest
from detectron2.data import transforms as T
from detectron2.data.detection_utils import transform_proposals
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.io import save_proposal_file
from wsod_d2.testing import image_record

W, H = 100, 50


def _record(image_id, file_name=None):
    return image_record(image_id, file_name, width=W, height=H)


def _single_image_file(tmp_path, boxes, logits=None, image_id="000005"):
    path = str(tmp_path / "props.pkl")
    save_proposal_file(
        path, [image_id], [np.asarray(boxes, np.float32)], None if logits is None else [logits]
    )
    return path


def test_attach_sorts_clips_and_keeps_input(tmp_path):
    boxes = [[-0.5, 0, 100.8, 50], [10, 10, 10, 20], [1, 2, 3, 4]]
    path = _single_image_file(tmp_path, boxes, logits=[0.0, 2.0, 0.0])
    original = _record("000005")
    (record,) = attach_proposals([original], path)
    # stable sort by decreasing logit; the first box is clipped to the 100 x 50 image
    np.testing.assert_array_equal(
        record["proposal_boxes"], [[10, 10, 10, 20], [0, 0, 100, 50], [1, 2, 3, 4]]
    )
    np.testing.assert_array_equal(record["proposal_objectness_logits"], [2, 0, 0])
    assert record["proposal_boxes"].dtype == np.float32
    assert record["proposal_bbox_mode"] == BoxMode.XYXY_ABS
    assert "proposal_boxes" not in original


def test_attach_matches_int_and_str_ids_and_ignores_extra(tmp_path):
    path = str(tmp_path / "p.pkl")
    save_proposal_file(path, ["139", 285, "999"], [[[0, 0, 5, 5]], [[1, 1, 6, 6]], [[2, 2, 7, 7]]])
    out = attach_proposals([_record(139), _record("285")], path)
    np.testing.assert_array_equal(out[0]["proposal_boxes"], [[0, 0, 5, 5]])
    np.testing.assert_array_equal(out[1]["proposal_boxes"], [[1, 1, 6, 6]])


def test_attach_converts_xywh_files(tmp_path):
    path = str(tmp_path / "p.pkl")
    save_proposal_file(path, [1], [[[10, 5, 20, 30]]], bbox_mode=BoxMode.XYWH_ABS)
    (record,) = attach_proposals([_record(1)], path)
    np.testing.assert_array_equal(record["proposal_boxes"], [[10, 5, 30, 35]])


def test_attach_output_goes_through_detectron2_transform_proposals(tmp_path):
    path = _single_image_file(tmp_path, [[10, 5, 30, 25], [0, 0, 100, 50]])
    (record,) = attach_proposals([_record("000005")], path)
    transform_proposals(record, (H, W), T.TransformList([T.HFlipTransform(W)]), proposal_topk=1)
    proposals = record["proposals"]
    np.testing.assert_allclose(proposals.proposal_boxes.tensor.numpy(), [[70, 5, 90, 25]])


def test_attach_missing_image(tmp_path):
    path = _single_image_file(tmp_path, [[0, 0, 5, 5]])
    records = [_record("000005"), _record("000007", "/voc/000007.jpg"), _record("000009")]
    with pytest.raises(ValueError) as e:
        attach_proposals(records, path)
    msg = str(e.value)
    assert "props.pkl" in msg and "'000007'" in msg and "/voc/000007.jpg" in msg
    assert "2 of 3 dataset images are missing" in msg


def test_attach_empty_image(tmp_path):
    path = _single_image_file(tmp_path, np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"props.pkl: image id '000005' .*zero proposals"):
        attach_proposals([_record("000005")], path)


def test_attach_nan_box(tmp_path):
    path = _single_image_file(tmp_path, [[0, 0, 5, 5], [1, np.nan, 3, 4]])
    with pytest.raises(ValueError, match=r"'000005' .*proposal 1 is not finite: \[1.0, nan"):
        attach_proposals([_record("000005")], path)


def test_attach_malformed_box(tmp_path):
    path = _single_image_file(tmp_path, [[0, 0, 5, 5], [8, 1, 3, 4]])
    with pytest.raises(ValueError, match=r"proposal 1 \[8.0, 1.0, 3.0, 4.0\] has x2 < x1"):
        attach_proposals([_record("000005")], path)


def test_attach_swapped_coordinates_are_out_of_bounds(tmp_path):
    # (y1, x1, y2, x2) of a box reaching x = 90 puts 90 in the y column of a 50-high image
    path = _single_image_file(tmp_path, [[0, 0, 5, 5], [4, 60, 20, 90]])
    with pytest.raises(ValueError) as e:
        attach_proposals([_record("000005", "/voc/JPEGImages/000005.jpg")], path)
    msg = str(e.value)
    assert "props.pkl" in msg and "'000005'" in msg and "/voc/JPEGImages/000005.jpg" in msg
    assert "[4.0, 60.0, 20.0, 90.0]" in msg and "width 100, height 50" in msg
    assert "coordinate convention" in msg


def test_attach_bounds_tolerance(tmp_path):
    one_based = [[1, 1, 101, 51]]
    (record,) = attach_proposals([_record("000005")], _single_image_file(tmp_path, one_based))
    np.testing.assert_array_equal(record["proposal_boxes"], [[1, 1, 100, 50]])

    path = _single_image_file(tmp_path, [[0, 0, 101.5, 50]])
    with pytest.raises(ValueError, match="by more than 1 px"):
        attach_proposals([_record("000005")], path)
    (record,) = attach_proposals([_record("000005")], path, bounds_tolerance=2.0)
    np.testing.assert_array_equal(record["proposal_boxes"], [[0, 0, 100, 50]])
    with pytest.raises(ValueError, match="by more than 0 px"):
        attach_proposals([_record("000005")], path, bounds_tolerance=0.0)
