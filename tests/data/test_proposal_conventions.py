"""Proposal files in a wrong coordinate convention that stay inside their images: the whole-file
statistics name the evidence and the fix, real selective-search output passes, and
DATASETS.PROPOSAL_FILES_ACCEPTED lets a file through knowingly."""
import copy

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.conventions import convention_problems
from wsod_d2.data.proposals.io import load_proposal_file, save_proposal_file
from wsod_d2.data.proposals.selective_search import selective_search
from wsod_d2.data.wsod.build import get_wsod_dataset_dicts


def _options(**kw):
    return dict(
        is_train=False, labels_from_difficult=False, bounds_tolerance=1.0, proposal_workers=1, **kw
    )


@pytest.fixture(scope="module")
def tiny_trainval(tiny_voc):
    """(dataset name, its dicts, its real selective-search proposal file)."""
    _, names, proposals = tiny_voc
    # Generates the proposal file on first use, and checks it: real output raises nothing.
    get_wsod_dataset_dicts([names["trainval"]], [proposals["trainval"]], **_options())
    return names["trainval"], DatasetCatalog.get(names["trainval"]), proposals["trainval"]


def _rewrite(tmp_path, proposal_file, edit):
    data = load_proposal_file(proposal_file)
    path = str(tmp_path / "edited.pkl")
    save_proposal_file(path, data["ids"], [edit(b) for b in data["boxes"]])
    return path


def test_real_selective_search_output_raises_nothing(tiny_trainval):
    _, dicts, proposal_file = tiny_trainval
    data = load_proposal_file(proposal_file)
    boxes = {str(i): b for i, b in zip(data["ids"], data["boxes"])}
    assert convention_problems(dicts, [boxes[str(d["image_id"])] for d in dicts]) == []


def test_half_size_boxes_raise_with_evidence_then_are_accepted(tiny_trainval, tmp_path):
    name, dicts, proposal_file = tiny_trainval
    half = _rewrite(tmp_path, proposal_file, lambda b: b * 0.5)
    with pytest.raises(ValueError) as info:
        get_wsod_dataset_dicts([name], [half], **_options())
    message = str(info.value)
    assert f"proposal file {half} looks written in another coordinate convention" in message
    assert f"over {len(dicts)} images the median of (largest x2 / width) is 0.50" in message
    assert "downscaled by ~0.50: multiply the boxes by 2.00" in message
    assert f"DATASETS.PROPOSAL_FILES_ACCEPTED ('{half}',)" in message
    accepted = get_wsod_dataset_dicts([name], [half], **_options(accepted_files=[half]))
    assert len(accepted) == len(dicts)


def test_one_based_boxes_raise(tiny_trainval, tmp_path):
    name, dicts, proposal_file = tiny_trainval
    # 1-based continuous boxes: every coordinate one more; the largest stay within tolerance.
    one_based = _rewrite(tmp_path, proposal_file, lambda b: b + 1.0)
    with pytest.raises(ValueError, match=r"look 1-based: no box of any image starts at x1 < 1"):
        get_wsod_dataset_dicts([name], [one_based], **_options())


def _square_crops(dicts, side_of):
    """Records of the top-left square crop of each image, with the GT boxes mostly inside it,
    and real selective-search proposals of the crop (written to nowhere: returned)."""
    records, boxes = [], []
    for d in dicts:
        side = side_of(d)
        image = cv2.imread(d["file_name"])[:side, :side]
        record = {"image_id": d["image_id"], "width": side, "height": side, "annotations": []}
        for a in d["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            if x2 <= side and y2 <= side:
                record["annotations"].append(copy.deepcopy(a))
        records.append(record)
        boxes.append(selective_search(image, mode="single", min_box_size=4))
    return records, boxes


def test_swapped_columns_on_square_images_raise(tiny_trainval, tmp_path):
    _, dicts, _ = tiny_trainval
    assert all(a["bbox_mode"] == BoxMode.XYXY_ABS for d in dicts for a in d["annotations"])
    records, boxes = _square_crops(dicts, lambda d: min(d["width"], d["height"]))
    assert sum(len(r["annotations"]) for r in records) >= len(records)
    path = str(tmp_path / "square.pkl")
    save_proposal_file(path, [r["image_id"] for r in records], boxes)
    assert len(attach_proposals(records, path)) == len(records)  # as made: no alarm
    swapped = str(tmp_path / "swapped.pkl")
    save_proposal_file(
        swapped, [r["image_id"] for r in records], [b[:, [1, 0, 3, 2]] for b in boxes]
    )
    with pytest.raises(ValueError) as info:
        attach_proposals(records, swapped)  # inside the square images: only the statistic sees it
    assert "its columns look swapped as (y1, x1, y2, x2)" in str(info.value)
    assert "Reorder each box to (x1, y1, x2, y2)" in str(info.value)
    assert len(attach_proposals(records, swapped, accept_conventions=True)) == len(records)


def test_few_images_are_not_judged():
    records = [{"image_id": i, "width": 100, "height": 100} for i in range(3)]
    assert convention_problems(records, [np.array([[0, 0, 10, 10]], np.float32)] * 3) == []
