import os
import pickle
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, pairwise_iou

from wsod_d2.data.proposals.io import load_proposal_file
from wsod_d2.data.proposals.selective_search import generate_proposals, selective_search
from wsod_d2.data.synthetic.voc import SyntheticVOCSpec, split_image_ids
from wsod_d2.data.synthetic.voc_writer import generate_synthetic_voc
from wsod_d2.testing import REPO_ROOT

# (x1, y1, x2, y2) continuous boxes of filled rectangles on a 160 x 240 (H x W) canvas
RECTS = np.array([[20, 15, 100, 75], [130, 40, 220, 140], [30, 95, 80, 150]], dtype=np.float32)
COLORS = [(0, 0, 230), (230, 60, 0), (40, 200, 40)]


def _synthetic_image(scale=1, height=160, width=240, seed=0):
    """Plain noisy background with the filled RECTS (times ``scale``), BGR uint8."""
    rng = np.random.default_rng(seed)
    image = np.full((height * scale, width * scale, 3), 190, dtype=np.int16)
    for (x1, y1, x2, y2), color in zip((RECTS * scale).astype(int), COLORS):
        image[y1:y2, x1:x2] = color
    image += rng.integers(-6, 7, size=image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _best_iou(boxes, rects):
    """(len(rects),) best IoU of each rect with any box."""
    iou = pairwise_iou(Boxes(torch.as_tensor(rects)), Boxes(torch.as_tensor(boxes)))
    return iou.max(dim=1).values.numpy()


def test_finds_each_rectangle():
    image = _synthetic_image()
    boxes = selective_search(image, mode="fast", max_side=500, min_box_size=10)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert (boxes[:, 2:] - boxes[:, :2] >= 10).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 240).all() and (boxes[:, 3] <= 160).all()
    assert (_best_iou(boxes, RECTS) > 0.7).all()


def test_boxes_are_in_original_coordinates_after_downscaling():
    image = _synthetic_image(scale=3)  # 480 x 720, searched at 160 x 240
    boxes = selective_search(image, mode="fast", max_side=240, min_box_size=10)
    assert (_best_iou(boxes, RECTS * 3) > 0.7).all()
    assert boxes[:, 2].max() == 720 and boxes[:, 3].max() == 480


def test_deterministic_and_top_k_keeps_order():
    image = _synthetic_image()
    full = selective_search(image, mode="single", max_proposals=2000)
    np.testing.assert_array_equal(selective_search(image, mode="single"), full)
    assert len(full) > 5
    np.testing.assert_array_equal(selective_search(image, mode="single", max_proposals=5), full[:5])
    assert not np.array_equal(selective_search(image, mode="single", seed=1), full)


def test_package_backend_scaling_dedup_and_filtering(monkeypatch):
    calls = []

    def fake_selective_search(image, mode):
        calls.append((image.shape, image[0, 0].tolist(), mode))
        # boxes of the 250 x 500 downscaled image, (x1, y1, x2, y2) exclusive stops
        return [
            (10, 20, 60, 70),
            (10, 20, 60, 70),
            (0, 0, 3, 30),
            (100, 50, 300, 250),
            (1, 1, 9, 9),
        ]

    fake = types.ModuleType("selective_search")
    fake.selective_search = fake_selective_search
    monkeypatch.setitem(sys.modules, "selective_search", fake)
    image = np.zeros((500, 1000, 3), np.uint8)
    image[:, :] = (1, 2, 3)  # BGR
    boxes = selective_search(
        image,
        mode="quality",
        max_side=500,
        min_box_size=10,
        max_proposals=2,
        backend="selective_search",
    )
    assert calls == [((250, 500, 3), [3, 2, 1], "quality")]  # RGB, downscaled by 2
    # x2: duplicates dropped, (0, 0, 6, 60) too thin, top 2 kept, all scaled by 2
    np.testing.assert_array_equal(boxes, [[20, 40, 120, 140], [200, 100, 600, 500]])


def test_package_backend_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "selective_search", None)
    with pytest.raises(ImportError, match="pip install selective-search"):
        selective_search(_synthetic_image(), backend="selective_search")


def test_bad_arguments():
    image = _synthetic_image()
    with pytest.raises(ValueError, match="mode must be one of"):
        selective_search(image, mode="slow")
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_search(image, backend="matlab")
    with pytest.raises(ValueError, match="expects a uint8 image"):
        selective_search(image.astype(np.float32))


def _write_dataset(tmp_path, n=6):
    dicts = []
    for i in range(n):
        image = _synthetic_image(height=64, width=96, seed=i)
        if i % 2:  # mirrored, so that images differ by more than noise
            image = image[:, ::-1]
        file_name = str(tmp_path / f"img{i}.png")
        cv2.imwrite(file_name, np.ascontiguousarray(image))
        dicts.append({"image_id": f"{i:06d}", "file_name": file_name, "height": 64, "width": 96})
    return dicts


SS_ARGS = dict(mode="single", max_side=500, min_box_size=4, chunk_size=2, progress=False)


def test_generate_parallel_matches_serial(tmp_path):
    dicts = _write_dataset(tmp_path)
    serial = generate_proposals(dicts, str(tmp_path / "w1.pkl"), workers=1, **SS_ARGS)
    parallel = generate_proposals(dicts, str(tmp_path / "w2.pkl"), workers=2, **SS_ARGS)
    a, b = load_proposal_file(serial), load_proposal_file(parallel)
    assert a["ids"] == b["ids"] == [d["image_id"] for d in dicts]
    for boxes_a, boxes_b, logits in zip(a["boxes"], b["boxes"], a["objectness_logits"]):
        assert len(boxes_a) > 0
        np.testing.assert_array_equal(boxes_a, boxes_b)
        np.testing.assert_array_equal(logits, -np.arange(len(boxes_a)))
    np.testing.assert_array_equal(
        a["boxes"][3],
        selective_search(cv2.imread(dicts[3]["file_name"]), mode="single", min_box_size=4),
    )
    assert not os.path.exists(str(tmp_path / "w1.pkl.parts"))


def test_generate_resumes_from_finished_chunks(tmp_path):
    dicts = _write_dataset(tmp_path)
    reference = load_proposal_file(
        generate_proposals(dicts, str(tmp_path / "ref.pkl"), workers=1, **SS_ARGS)
    )
    # a "killed" run: image 4 (third chunk) is unreadable, chunks 0 and 1 are already on disk
    good_bytes = open(dicts[4]["file_name"], "rb").read()
    with open(dicts[4]["file_name"], "wb") as f:
        f.write(b"not an image")
    out = str(tmp_path / "out.pkl")
    with pytest.raises(ValueError, match="img4.png"):
        generate_proposals(dicts, out, workers=1, **SS_ARGS)
    parts = out + ".parts"
    assert sorted(os.listdir(parts)) == ["chunk_00000.pkl", "chunk_00001.pkl"]
    # mark chunk 1 so that reuse is visible; make chunk 0 belong to other images
    for name, edit in (("chunk_00001.pkl", "boxes"), ("chunk_00000.pkl", "ids")):
        with open(os.path.join(parts, name), "rb") as f:
            chunk = pickle.load(f)
        if edit == "boxes":
            chunk["boxes"] = [np.array([[1, 2, 3, 4]], np.float32)] * 2
            chunk["objectness_logits"] = [np.zeros(1, np.float32)] * 2
        else:
            chunk["ids"] = ["other0", "other1"]
        with open(os.path.join(parts, name), "wb") as f:
            pickle.dump(chunk, f)
    with open(dicts[4]["file_name"], "wb") as f:
        f.write(good_bytes)

    result = load_proposal_file(generate_proposals(dicts, out, workers=1, **SS_ARGS))
    assert result["ids"] == reference["ids"]
    for i in (2, 3):  # reused chunk
        np.testing.assert_array_equal(result["boxes"][i], [[1, 2, 3, 4]])
    for i in (0, 1, 4, 5):  # recomputed (mismatched ids) and newly computed chunks
        np.testing.assert_array_equal(result["boxes"][i], reference["boxes"][i])
    assert not os.path.exists(parts)


def test_generate_corrupt_image_names_file_and_id(tmp_path):
    dicts = _write_dataset(tmp_path, n=3)
    with open(dicts[1]["file_name"], "wb") as f:
        f.write(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"'.*img1.png' \(image id '000001'\).*corrupt"):
        generate_proposals(dicts, str(tmp_path / "p.pkl"), workers=2, **SS_ARGS)


def test_generate_size_mismatch_and_duplicates(tmp_path):
    dicts = _write_dataset(tmp_path, n=2)
    wrong = [dict(dicts[0], height=96, width=64)]
    with pytest.raises(ValueError, match=r"img0.png' \(image id '000000'\) is 96x64 .* says 64x96"):
        generate_proposals(wrong, str(tmp_path / "p.pkl"), workers=1, **SS_ARGS)
    with pytest.raises(ValueError, match="image id '000000'.*appears twice"):
        generate_proposals([dicts[0], dicts[0]], str(tmp_path / "p.pkl"), workers=1, **SS_ARGS)


def test_generate_tiny_image_gets_full_image_box(tmp_path):
    file_name = str(tmp_path / "tiny.png")
    cv2.imwrite(file_name, np.full((6, 8, 3), 128, np.uint8))
    out = generate_proposals(
        [{"image_id": 1, "file_name": file_name}], str(tmp_path / "p.pkl"), workers=1, **SS_ARGS
    )
    np.testing.assert_array_equal(load_proposal_file(out)["boxes"][0], [[0, 0, 8, 6]])


def test_generate_cli_on_registered_dataset(tmp_path):
    """tools/generate_proposals.py in its own process, on detectron2's voc_2007_test name
    registered over a tiny synthetic VOC2007 under DETECTRON2_DATASETS."""
    spec = SyntheticVOCSpec(num_trainval=1, num_test=2, num_classes=2, min_size=64, max_size=72)
    generate_synthetic_voc(str(tmp_path / "VOC2007"), spec)
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    tool = [sys.executable, os.path.join(REPO_ROOT, "tools", "generate_proposals.py")]
    out = str(tmp_path / "cli.pkl")
    argv = ["--dataset", "voc_2007_test", "--output", out, "--workers", "1", "--mode", "single"]
    subprocess.run(tool + argv + ["--min-box-size", "4", "--no-progress"], env=env, check=True)
    unknown = subprocess.run(
        tool + ["--dataset", "no_such_dataset", "--output", out], env=env, capture_output=True
    )
    assert unknown.returncode == 2 and b"unknown dataset(s) ['no_such_dataset']" in unknown.stderr
    data = load_proposal_file(out)
    assert data["ids"] == split_image_ids(spec)["test"]
    image = cv2.imread(str(tmp_path / "VOC2007" / "JPEGImages" / f"{data['ids'][1]}.jpg"))
    np.testing.assert_array_equal(
        data["boxes"][1], selective_search(image, mode="single", min_box_size=4)
    )


def test_generate_cli_stops_on_truncated_jpeg_or_skips_it_on_request(tmp_path):
    """A JPEG cut in half decodes (gray tail, libjpeg warning) unless every byte is checked: the
    tool stops naming it, or with --skip-unreadable leaves it out and lists it."""
    spec = SyntheticVOCSpec(num_trainval=1, num_test=2, num_classes=2, min_size=64, max_size=72)
    generate_synthetic_voc(str(tmp_path / "VOC2007"), spec)
    bad_id = split_image_ids(spec)["test"][0]
    jpeg = tmp_path / "VOC2007" / "JPEGImages" / f"{bad_id}.jpg"
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(jpeg)) is not None  # OpenCV alone would accept it
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    tool = [sys.executable, os.path.join(REPO_ROOT, "tools", "generate_proposals.py")]
    out = str(tmp_path / "cli.pkl")
    argv = ["--dataset", "voc_2007_test", "--output", out, "--workers", "1", "--mode", "single"]
    argv += ["--min-box-size", "4", "--no-progress"]
    stopped = subprocess.run(tool + argv, env=env, capture_output=True, text=True)
    assert stopped.returncode == 1 and not os.path.exists(out)
    assert f"cannot decode image '{jpeg}' (image id '{bad_id}') completely" in stopped.stderr
    assert "--skip-unreadable" in stopped.stderr
    skipped = subprocess.run(tool + argv + ["--skip-unreadable"], env=env, capture_output=True)
    assert skipped.returncode == 0, skipped.stderr
    assert load_proposal_file(out)["ids"] == split_image_ids(spec)["test"][1:]
    listed = open(out + ".skipped.txt").read().splitlines()[1:]
    assert len(listed) == 1 and listed[0].startswith(f"{bad_id}\t{jpeg}\t")
