"""The proposal file format: save / load, detectron2's and Detectron1's readers, image sets."""

import os
import pickle

import numpy as np
import pytest
from detectron2.data.build import load_proposals_into_dataset
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.io import (
    load_proposal_file,
    rank_logits,
    read_image_set,
    save_proposal_file,
)
from wsod_d2.testing import image_record

W, H = 100, 50


def _record(image_id, file_name=None):
    return image_record(image_id, file_name, width=W, height=H)


def test_rank_logits_strictly_decrease_from_zero():
    np.testing.assert_array_equal(rank_logits(4), [0.0, -1.0, -2.0, -3.0])
    assert rank_logits(3).dtype == np.float32
    assert rank_logits(0).shape == (0,)


def test_save_load_round_trip_plain_pickle(tmp_path):
    path = str(tmp_path / "sub" / "p.pkl")
    boxes = [np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.float64), np.zeros((1, 4))]
    save_proposal_file(path, ["000005", np.int64(7)], boxes)

    with open(path, "rb") as f:
        raw = pickle.load(f)
    assert sorted(raw) == ["bbox_mode", "boxes", "ids", "objectness_logits"]
    assert raw["ids"] == ["000005", 7] and type(raw["ids"][1]) is int
    assert raw["bbox_mode"] == 0 and type(raw["bbox_mode"]) is int
    assert raw["boxes"][0].dtype == np.float32
    np.testing.assert_array_equal(raw["objectness_logits"][0], [0.0, 0.0])
    assert os.listdir(tmp_path / "sub") == ["p.pkl"]  # no temporary file left behind

    data = load_proposal_file(path)
    assert data["ids"] == ["000005", 7]
    assert data["bbox_mode"] is BoxMode.XYXY_ABS and data["has_bbox_mode"]
    np.testing.assert_array_equal(data["boxes"][0], [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(data["boxes"][1], np.zeros((1, 4)))


def test_save_rejects_duplicate_ids_and_bad_shapes(tmp_path):
    path = str(tmp_path / "p.pkl")
    with pytest.raises(ValueError, match="'5' appears more than once"):
        save_proposal_file(path, [5, "5"], [np.zeros((1, 4)), np.zeros((1, 4))])
    with pytest.raises(ValueError, match=r"image id 'a'.*shape \(N, 4\), got \(2, 3\)"):
        save_proposal_file(path, ["a"], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="image id 'a': 1 objectness logits for 2 boxes"):
        save_proposal_file(path, ["a"], [np.zeros((2, 4))], [np.zeros(1)])
    assert not os.path.exists(path)


def test_file_is_read_by_detectron2_loader(tmp_path):
    path = str(tmp_path / "p.pkl")
    boxes = [np.array([[0, 0, 10, 10], [1, 2, 30, 40], [5, 5, 6, 6]]), np.array([[2, 2, 9, 9]])]
    save_proposal_file(path, ["a", 3], boxes, [rank_logits(3), rank_logits(1)])
    records = load_proposals_into_dataset([_record(3), _record("a")], path)
    assert records[0]["proposal_bbox_mode"] == BoxMode.XYXY_ABS
    np.testing.assert_array_equal(records[0]["proposal_boxes"], boxes[1])
    # detectron2 sorts by decreasing logit: rank logits keep the written order.
    np.testing.assert_array_equal(records[1]["proposal_boxes"], boxes[0])
    np.testing.assert_array_equal(records[1]["proposal_objectness_logits"], [0, -1, -2])


def test_detectron1_style_file_is_read(tmp_path):
    path = str(tmp_path / "d1.pkl")
    legacy = {
        "indexes": [12],
        "boxes": [np.array([[1, 2, 3, 4], [0, 0, 9, 9]], np.float32)],
        "scores": [np.array([0.1, 0.9], np.float32)],
        "bbox_mode": BoxMode.XYXY_ABS,
    }
    with open(path, "wb") as f:
        pickle.dump(legacy, f, protocol=2)
    data = load_proposal_file(path)
    assert data["ids"] == [12]
    np.testing.assert_allclose(data["objectness_logits"][0], [0.1, 0.9])
    (record,) = attach_proposals([_record("12")], path)
    np.testing.assert_array_equal(record["proposal_boxes"], [[0, 0, 9, 9], [1, 2, 3, 4]])
    np.testing.assert_allclose(record["proposal_objectness_logits"], [0.9, 0.1])


def test_load_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "nope.pkl")
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_proposal_file(missing)
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x00\x01not a pickle")
    with pytest.raises(ValueError, match="corrupt.pkl is not a readable pickle"):
        load_proposal_file(str(corrupt))
    keyless = tmp_path / "keyless.pkl"
    keyless.write_bytes(pickle.dumps({"ids": [1], "rois": [np.zeros((1, 4))]}))
    with pytest.raises(ValueError, match=r"keyless.pkl lacks key\(s\) \['boxes'\].*'rois'"):
        load_proposal_file(str(keyless))
    short = tmp_path / "short.pkl"
    short.write_bytes(pickle.dumps({"ids": [1, 2], "boxes": [np.zeros((1, 4))]}))
    with pytest.raises(ValueError, match="short.pkl: 2 ids but 1 boxes"):
        load_proposal_file(str(short))


def test_read_image_set(tmp_path):
    path = tmp_path / "trainval.txt"
    path.write_text("000005\n000007\n\n2008_000002  1\n")
    assert read_image_set(str(path)) == ["000005", "000007", "2008_000002"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt lists no image ids"):
        read_image_set(str(tmp_path / "empty.txt"))
