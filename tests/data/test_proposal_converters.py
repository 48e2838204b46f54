"""The .mat (v5, v7.3) and wetectron converters and tools/convert_proposals.py."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.converters import convert_selective_search_mat, convert_wetectron_pkl
from wsod_d2.data.proposals.io import load_proposal_file, save_proposal_file
from wsod_d2.testing import REPO_ROOT, image_record

W, H = 100, 50


def _record(image_id, file_name=None):
    return image_record(image_id, file_name, width=W, height=H)


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


def _write_two_image_mat(path):
    """A v5 .mat of images 000005 and 000007 with MAT_BOXES_A / MAT_BOXES_B; returns path."""
    images = _mat_cells([np.array(["000005"]), np.array(["000007"])])
    scipy.io.savemat(path, {"boxes": _mat_cells([MAT_BOXES_A, MAT_BOXES_B]), "images": images})
    return path


def test_convert_mat_v5(tmp_path):
    path = _write_two_image_mat(str(tmp_path / "voc_2007_trainval.mat"))
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


def test_convert_cli(tmp_path):
    mat = _write_two_image_mat(str(tmp_path / "ss.mat"))
    image_set = tmp_path / "val.txt"
    image_set.write_text("000007\n")
    out = str(tmp_path / "out" / "ss.pkl")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "convert_proposals.py"), "mat", mat]
    subprocess.run(cmd + ["--output", out, "--image-set", str(image_set)], check=True, env=env)
    data = load_proposal_file(out)
    assert data["ids"] == ["000007"]
    np.testing.assert_array_equal(data["boxes"][0], D2_BOXES_B)
