import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from PIL import Image

from wsod_d2.data.wsod.mapper import WSODDatasetMapper, dedup_boxes


def make_mapper(augs, **kw):
    args = dict(
        augmentations=augs,
        image_format="RGB",
        num_classes=3,
        proposal_topk=None,
        proposal_min_size=2.0,
        proposal_dedup_scale=0.0625,
    )
    args.update(kw)
    return WSODDatasetMapper(True, **args)


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "img.jpg"
    Image.fromarray(np.full((50, 100, 3), 128, np.uint8)).save(path)
    return {
        "file_name": str(path),
        "image_id": "img",
        "height": 50,
        "width": 100,
        "image_labels": [0, 2],
        "proposal_boxes": np.array([[10, 5, 30, 25], [0, 0, 100, 50]], np.float32),
        "proposal_objectness_logits": np.array([0.0, 1.0], np.float32),
    }


def test_resize_and_flip_transform_proposals(record):
    # Short side 50 -> 100 doubles every coordinate; the flip maps x to 200 - x.
    out = make_mapper([T.ResizeShortestEdge(100, 1000), T.RandomFlip(prob=1.0)])(record)
    assert tuple(out["image"].shape) == (3, 100, 200)
    assert out["proposals"].image_size == (100, 200)
    boxes = out["proposals"].proposal_boxes.tensor
    expected = torch.tensor([[140.0, 10.0, 180.0, 50.0], [0.0, 0.0, 200.0, 100.0]])
    assert torch.allclose(boxes, expected)
    assert out["image_labels"].tolist() == [1.0, 0.0, 1.0]
    assert "proposal_boxes" not in out and "annotations" not in out


def test_no_flip_keeps_coordinates(record):
    out = make_mapper([T.ResizeShortestEdge(25, 1000)])(record)
    boxes = out["proposals"].proposal_boxes.tensor
    assert torch.allclose(boxes, torch.tensor([[5.0, 2.5, 15.0, 12.5], [0.0, 0.0, 50.0, 25.0]]))
    # With top-k the highest objectness comes first.
    out = make_mapper([T.ResizeShortestEdge(25, 1000)], proposal_topk=1)(record)
    assert out["proposals"].proposal_boxes.tensor.tolist() == [[0.0, 0.0, 50.0, 25.0]]


def test_min_size_dedup_topk(record):
    record["proposal_boxes"] = np.array(
        [[0, 0, 16, 16], [1, 1, 17, 17], [5, 5, 6, 30], [40, 10, 90, 45]], np.float32
    )
    record["proposal_objectness_logits"] = np.array([0.5, 0.9, 2.0, 0.1], np.float32)
    mapper = make_mapper([], proposal_topk=None)
    boxes, logits = mapper.select_proposals(record)
    # [5,5,6,30] is 1 px wide (< 2): dropped; [1,1,17,17] rounds to the same cell as the first.
    assert boxes.tolist() == [[0, 0, 16, 16], [40, 10, 90, 45]]
    boxes, _ = make_mapper([], proposal_topk=1).select_proposals(record)
    assert boxes.tolist() == [[0, 0, 16, 16]]


def test_dedup_disabled_and_order():
    boxes = np.array([[3, 3, 9, 9], [0, 0, 4, 4], [3, 3, 9, 9]], np.float32)
    assert dedup_boxes(boxes, 0.0).tolist() == [0, 1, 2]
    assert dedup_boxes(boxes, 1.0).tolist() == [0, 1]


def test_no_usable_proposal_names_image(record):
    record["proposal_boxes"] = np.array([[5, 5, 6, 6]], np.float32)
    record["proposal_objectness_logits"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="image img .*PROPOSAL_MIN_SIZE"):
        make_mapper([])(record)


def test_corrupt_image_names_file(record, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    record["file_name"] = str(bad)
    with pytest.raises(RuntimeError, match="bad.jpg.*image_id img"):
        make_mapper([])(record)
