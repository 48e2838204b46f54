import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from detectron2.data import transforms as T
from detectron2.data.build import load_proposals_into_dataset
from detectron2.data.detection_utils import transform_proposals
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.io import (
    attach_proposals,
    convert_selective_search_mat,
    convert_wetectron_pkl,
    load_proposal_file,
    rank_logits,
    read_image_set,
    save_proposal_file,
)
from wsod_d2.testing import REPO_ROOT

W, H = 100, 50


def _record(image_id, file_name=None, width=W, height=H):
    return {
        "image_id": image_id,
        "file_name": file_name or f"/data/{image_id}.jpg",
        "width": width,
        "height": height,
    }


def _single_image_file(tmp_path, boxes, logits=None, image_id="000005"):
    path = str(tmp_path / "props.pkl")
    save_proposal_file(
        path, [image_id], [np.asarray(boxes, np.float32)], None if logits is None else [logits]
    )
    return path


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


def _mat_cells(arrays):
    cells = np.empty((1, len(arrays)), dtype=object)
    for i, a in enumerate(arrays):
        cells[0, i] = a
    return cells


# (y1, x1, y2, x2), 1-based inclusive, as in the Fast R-CNN / OICR .mat files
MAT_BOXES_A = np.array([[1, 1, 50, 100], [5, 10, 20, 30]], dtype=np.uint16)
MAT_BOXES_B = np.array([[2, 3, 4, 5]], dtype=np.float64)
# the same boxes as continuous 0-based (x1, y1, x2, y2)
D2_BOXES_A = [[0, 0, 100, 50], [9, 4, 30, 20]]
D2_BOXES_B = [[2, 1, 5, 4]]


def test_convert_mat_v5(tmp_path):
    path = str(tmp_path / "voc_2007_trainval.mat")
    scipy.io.savemat(
        path,
        {
            "boxes": _mat_cells([MAT_BOXES_A, MAT_BOXES_B]),
            "images": _mat_cells([np.array(["000005"]), np.array(["000007"])]),
        },
    )
    data = convert_selective_search_mat(path)
    assert data["ids"] == ["000005", "000007"] and data["bbox_mode"] == BoxMode.XYXY_ABS
    np.testing.assert_array_equal(data["boxes"][0], D2_BOXES_A)
    np.testing.assert_array_equal(data["boxes"][1], D2_BOXES_B)
    assert data["boxes"][0].dtype == np.float32
    np.testing.assert_array_equal(data["objectness_logits"][0], [0, -1])

    subset = convert_selective_search_mat(path, image_ids=["000007"])
    assert subset["ids"] == ["000007"]
    np.testing.assert_array_equal(subset["boxes"][0], D2_BOXES_B)
    with pytest.raises(ValueError, match="voc_2007_trainval.mat has no proposals for image id '1'"):
        convert_selective_search_mat(path, image_ids=["1"])

    # the full-image box lands exactly on the image border of the detectron2 dict
    out = str(tmp_path / "p.pkl")
    save_proposal_file(out, data["ids"], data["boxes"], data["objectness_logits"])
    (record,) = attach_proposals([_record("000005")], out, bounds_tolerance=0.0)
    np.testing.assert_array_equal(record["proposal_boxes"], D2_BOXES_A)


def test_convert_mat_numeric_ids_and_positional_ids(tmp_path):
    numeric = str(tmp_path / "coco.mat")
    scipy.io.savemat(
        numeric,
        {"boxes": _mat_cells([MAT_BOXES_B, MAT_BOXES_A]), "images": np.array([[139.0, 285.0]])},
    )
    data = convert_selective_search_mat(numeric)
    assert data["ids"] == [139, 285]
    np.testing.assert_array_equal(data["boxes"][1], D2_BOXES_A)

    no_images = str(tmp_path / "boxes_only.mat")
    scipy.io.savemat(no_images, {"boxes": _mat_cells([MAT_BOXES_A, MAT_BOXES_B])})
    data = convert_selective_search_mat(no_images, image_ids=["a", "b"])
    assert data["ids"] == ["a", "b"]
    np.testing.assert_array_equal(data["boxes"][1], D2_BOXES_B)
    with pytest.raises(ValueError, match="boxes_only.mat has no 'images' variable"):
        convert_selective_search_mat(no_images)


def _write_v73_header(path):
    """The 128-byte header MATLAB writes in the HDF5 user block of a v7.3 file."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 "
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        f.write(header)


def test_convert_mat_v73_without_h5py(tmp_path, monkeypatch):
    path = str(tmp_path / "v73.mat")
    _write_v73_header(path)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"v73.mat is a MATLAB v7.3 .*pip install h5py"):
        convert_selective_search_mat(path)


def test_convert_mat_v73_with_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = str(tmp_path / "v73.mat")
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        box_refs, image_refs = [], []
        for i, (boxes, name) in enumerate([(MAT_BOXES_A, "000005"), (MAT_BOXES_B, "000007")]):
            # MATLAB writes column-major arrays: HDF5 sees them transposed
            d = refs.create_dataset(f"b{i}", data=boxes.astype(np.float64).T)
            d.attrs["MATLAB_class"] = np.bytes_("double")
            box_refs.append(d.ref)
            chars = np.array([[ord(c)] for c in name], dtype=np.uint16)
            c = refs.create_dataset(f"c{i}", data=chars)
            c.attrs["MATLAB_class"] = np.bytes_("char")
            image_refs.append(c.ref)
        for key, values in (("boxes", box_refs), ("images", image_refs)):
            cell = f.create_dataset(key, data=np.array(values).reshape(-1, 1), dtype=h5py.ref_dtype)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
    _write_v73_header(path)
    data = convert_selective_search_mat(path)
    assert data["ids"] == ["000005", "000007"]
    np.testing.assert_array_equal(data["boxes"][0], D2_BOXES_A)
    np.testing.assert_array_equal(data["boxes"][1], D2_BOXES_B)


def test_convert_mat_rejects_non_mat(tmp_path):
    path = tmp_path / "x.mat"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="x.mat is not a MATLAB file"):
        convert_selective_search_mat(str(path))
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        convert_selective_search_mat(str(tmp_path / "missing.mat"))


def _write_wetectron(tmp_path, indexes, boxes, scores):
    path = str(tmp_path / "SS-voc_2007_trainval-boxes.pkl")
    with open(path, "wb") as f:
        pickle.dump({"boxes": boxes, "scores": scores, "indexes": indexes}, f, protocol=2)
    return path


def test_convert_wetectron_pkl(tmp_path):
    # wetectron = the .mat boxes reordered to (x1, y1, x2, y2) minus 1 (0-based inclusive)
    wet_a = MAT_BOXES_A[:, (1, 0, 3, 2)].astype(np.float32) - 1
    wet_b = MAT_BOXES_B[:, (1, 0, 3, 2)].astype(np.float32) - 1
    path = _write_wetectron(
        tmp_path, [5, 2008000002], [wet_a, wet_b], [np.zeros(2, np.float32), np.zeros(1)]
    )
    data = convert_wetectron_pkl(path)
    assert data["ids"] == [5, 2008000002]
    np.testing.assert_array_equal(data["boxes"][0], D2_BOXES_A)
    np.testing.assert_array_equal(data["boxes"][1], D2_BOXES_B)
    np.testing.assert_array_equal(data["objectness_logits"][0], [0, -1])

    voc = convert_wetectron_pkl(path, image_ids=["2008_000002", "000005"])
    assert voc["ids"] == ["2008_000002", "000005"]
    np.testing.assert_array_equal(voc["boxes"][0], D2_BOXES_B)
    with pytest.raises(ValueError, match="has no proposals for image id '000006'"):
        convert_wetectron_pkl(path, image_ids=["000006"])


def test_convert_wetectron_keeps_real_scores_and_rejects_d2_files(tmp_path):
    path = _write_wetectron(
        tmp_path, [139], [np.array([[0, 0, 9, 9], [1, 1, 4, 4]], np.float32)], [[0.2, 0.7]]
    )
    data = convert_wetectron_pkl(path)
    np.testing.assert_allclose(data["objectness_logits"][0], [0.2, 0.7])
    np.testing.assert_array_equal(data["boxes"][0], [[0, 0, 10, 10], [1, 1, 5, 5]])

    d2_file = str(tmp_path / "d2.pkl")
    save_proposal_file(d2_file, [1], [[[0, 0, 1, 1]]])
    with pytest.raises(ValueError, match="d2.pkl has a 'bbox_mode' key"):
        convert_wetectron_pkl(d2_file)


def test_read_image_set(tmp_path):
    path = tmp_path / "trainval.txt"
    path.write_text("000005\n000007\n\n2008_000002  1\n")
    assert read_image_set(str(path)) == ["000005", "000007", "2008_000002"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt lists no image ids"):
        read_image_set(str(tmp_path / "empty.txt"))


def test_convert_cli(tmp_path):
    mat = str(tmp_path / "ss.mat")
    scipy.io.savemat(
        mat,
        {
            "boxes": _mat_cells([MAT_BOXES_A, MAT_BOXES_B]),
            "images": _mat_cells([np.array(["000005"]), np.array(["000007"])]),
        },
    )
    image_set = tmp_path / "val.txt"
    image_set.write_text("000007\n")
    out = str(tmp_path / "out" / "ss.pkl")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "convert_proposals.py"), "mat", mat]
    subprocess.run(cmd + ["--output", out, "--image-set", str(image_set)], check=True, env=env)
    data = load_proposal_file(out)
    assert data["ids"] == ["000007"]
    np.testing.assert_array_equal(data["boxes"][0], D2_BOXES_B)
