"""WSOL data: the wsolevaluation-format loader, the synthetic generator and the mapper."""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.datasets.wsol import load_wsol_metadata, register_synthetic_wsol
from wsod_d2.data.synthetic.wsol import (
    MARKER_NAME,
    SyntheticWSOLSpec,
    ensure_synthetic_wsol,
    render_synthetic_wsol_image,
    synthetic_wsol_class_names,
)
from wsod_d2.data.wsol.mapper import RandomResizedCrop, WSOLDatasetMapper

TINY = SyntheticWSOLSpec(
    num_classes=4, train_per_class=2, val_per_class=1, test_per_class=2, min_size=48, max_size=64
)


def write_files(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    return str(folder)


BOX_FILES = {
    "image_ids.txt": "001.a/x.jpg\n002.b/y.jpg\n\n003.c/z.jpg\n",
    "class_labels.txt": "001.a/x.jpg,0\n002.b/y.jpg,2\n003.c/z.jpg,1\n",
    "image_sizes.txt": "001.a/x.jpg,500,300\n002.b/y.jpg,64,48\n003.c/z.jpg,10,20\n",
    "localization.txt": "001.a/x.jpg,156,163,318,230\n001.a/x.jpg,23,12,101,259\n"
    "002.b/y.jpg,0,0,63,47\n",
}


def test_box_metadata_parsed_exactly(tmp_path):
    meta = write_files(tmp_path / "meta", BOX_FILES)
    dicts = load_wsol_metadata(meta, "/data/CUB", num_classes=3)

    def box(x0, y0, x1, y1, c):
        return {"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": c}

    assert dicts == [
        {
            "file_name": "/data/CUB/001.a/x.jpg",
            "image_id": "001.a/x.jpg",
            "image_labels": [0],
            "height": 300,
            "width": 500,
            "annotations": [box(156, 163, 318, 230, 0), box(23, 12, 101, 259, 0)],
        },
        {
            "file_name": "/data/CUB/002.b/y.jpg",
            "image_id": "002.b/y.jpg",
            "image_labels": [2],
            "height": 48,
            "width": 64,
            "annotations": [box(0, 0, 63, 47, 2)],
        },
        # No box line: no annotations key (a test split would then fail in the evaluator).
        {
            "file_name": "/data/CUB/003.c/z.jpg",
            "image_id": "003.c/z.jpg",
            "image_labels": [1],
            "height": 20,
            "width": 10,
        },
    ]


def test_optional_files_missing(tmp_path):
    files = {k: BOX_FILES[k] for k in ("image_ids.txt", "class_labels.txt")}
    dicts = load_wsol_metadata(write_files(tmp_path, files), "root", num_classes=3)
    assert [sorted(d) for d in dicts] == [["file_name", "image_id", "image_labels"]] * 3


def test_mask_metadata(tmp_path):
    files = {
        "image_ids.txt": "val/c1/a.jpg\nval/c2/b.jpg\n",
        "class_labels.txt": "val/c1/a.jpg,1\nval/c2/b.jpg,0\n",
        "localization.txt": "val/c1/a.jpg,val/c1/a_m1.png,val/c1/a_ignore.png\n"
        "val/c1/a.jpg,val/c1/a_m2.png,\nval/c2/b.jpg,val/c2/b_m1.png,\n",
    }
    dicts = load_wsol_metadata(
        write_files(tmp_path, files), "/img", num_classes=2, localization="mask", mask_root="/m"
    )
    assert dicts[0]["mask_file_names"] == ["/m/val/c1/a_m1.png", "/m/val/c1/a_m2.png"]
    assert dicts[0]["ignore_file_name"] == "/m/val/c1/a_ignore.png"
    assert dicts[1]["mask_file_names"] == ["/m/val/c2/b_m1.png"]
    assert "ignore_file_name" not in dicts[1] and "annotations" not in dicts[0]
    late_ignore = dict(
        files, **{"localization.txt": "val/c1/a.jpg,m1.png,\nval/c1/a.jpg,m2.png,i.png\n"}
    )
    with pytest.raises(ValueError, match=r"localization.txt:2: .*ignore mask on a line other"):
        load_wsol_metadata(
            write_files(tmp_path / "late", late_ignore), "/img", num_classes=2, localization="mask"
        )


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "class_labels.txt",
            "001.a/x.jpg,0\n002.b/y.jpg,3\n",
            r"class_labels.txt:2: class 3 .*\[0, 3\)",
        ),
        (
            "class_labels.txt",
            "001.a/x.jpg,0\n002.b/y.jpg,two\n",
            r"class_labels.txt:2: a class label",
        ),
        (
            "class_labels.txt",
            "001.a/x.jpg,0\n003.c/z.jpg,1\n",
            r"image '002.b/y.jpg' .* no line in",
        ),
        (
            "image_ids.txt",
            "001.a/x.jpg\n001.a/x.jpg\n",
            r"image_ids.txt:2: image id '001.a/x.jpg' is listed twice",
        ),
        (
            "localization.txt",
            "001.a/x.jpg,1,2,3\n",
            r"localization.txt:1: expected 5 comma-separated",
        ),
        ("localization.txt", "002.b/y.jpg,10,0,5,9\n", r"localization.txt:1: box \[10, 0, 5, 9\]"),
        ("image_sizes.txt", "001.a/x.jpg,5.5,3\n", r"image_sizes.txt:1: an image size"),
    ],
)
def test_bad_metadata_names_file_and_line(tmp_path, name, text, message):
    meta = write_files(tmp_path, dict(BOX_FILES, **{name: text}))
    with pytest.raises(ValueError, match=message):
        load_wsol_metadata(meta, "root", num_classes=3)


def test_missing_metadata_file(tmp_path):
    meta = write_files(tmp_path, {"image_ids.txt": "a.jpg\n"})
    with pytest.raises(FileNotFoundError, match="class_labels.txt"):
        load_wsol_metadata(meta, "root", num_classes=3)


def test_benchmarks_registered():
    for prefix, kind in (("cub", "wsol_box"), ("ilsvrc", "wsol_box"), ("openimages", "wsol_mask")):
        for split in ("train", "val", "test"):
            name = f"{prefix}_wsol_{split}"
            assert name in DatasetCatalog.list()
            assert MetadataCatalog.get(name).evaluator_type == kind
    assert len(MetadataCatalog.get("cub_wsol_test").thing_classes) == 200
    assert MetadataCatalog.get("synthwsol_train").thing_classes == synthetic_wsol_class_names(20)


def test_render_is_deterministic_and_stratified():
    spec = SyntheticWSOLSpec(num_classes=5, train_per_class=8, min_size=64, max_size=80)
    bins = spec.size_bins
    for index in range(spec.split_size("train")):
        item = render_synthetic_wsol_image(spec, "train", index)
        again = render_synthetic_wsol_image(spec, "train", index)
        assert np.array_equal(item.image, again.image) and item.box == again.box
        assert item.class_id == index % 5
        h, w = item.mask.shape
        assert 64 <= h <= 80 and 64 <= w <= 80 and item.image.shape == (h, w, 3)
        rows, cols = np.flatnonzero(item.mask.any(1)), np.flatnonzero(item.mask.any(0))
        assert item.box == (cols[0], rows[0], cols[-1], rows[-1])
        x0, y0, x1, y1 = item.box
        ratio = (x1 - x0 + 1) * (y1 - y0 + 1) / (h * w)
        stratum = (index // 5) % 4
        assert bins[stratum] < ratio <= bins[stratum + 1], (index, ratio)
    other = render_synthetic_wsol_image(spec, "test", 0)
    assert not np.array_equal(
        other.image[:10, :10], render_synthetic_wsol_image(spec, "train", 0).image[:10, :10]
    )
    assert synthetic_wsol_class_names(21)[0] == "stripes_red_circle"
    assert synthetic_wsol_class_names(21)[20] == "checker_red_circle"  # same part, next family


def read_tree(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return out


def test_generated_dataset_round_trips(tmp_path):
    root = str(tmp_path / "a")
    assert ensure_synthetic_wsol(root, TINY)
    assert not ensure_synthetic_wsol(root, TINY)
    assert ensure_synthetic_wsol(str(tmp_path / "b"), TINY)
    assert read_tree(root) == read_tree(str(tmp_path / "b"))
    for split, n in (("train", 8), ("val", 4), ("test", 8)):
        dicts = load_wsol_metadata(
            os.path.join(root, "metadata", split), os.path.join(root, "images"), num_classes=4
        )
        assert len(dicts) == n
        for index, d in enumerate(dicts):
            item = render_synthetic_wsol_image(TINY, split, index)
            assert d["image_id"] == item.image_id and d["image_labels"] == [item.class_id]
            assert d["annotations"][0]["bbox"] == list(item.box)
            jpeg = cv2.imread(d["file_name"])
            assert jpeg.shape[:2] == (d["height"], d["width"]) == item.mask.shape
    with pytest.raises(ValueError, match="different spec"):
        ensure_synthetic_wsol(root, SyntheticWSOLSpec(num_classes=4, seed=1))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        ensure_synthetic_wsol(str(foreign), TINY)
    assert MARKER_NAME in os.listdir(root)


def mapper_cfg(*opts):
    return get_wsod_cfg(
        opts=[
            "MODEL.WSOL.NUM_CLASSES",
            4,
            "INPUT.WSOL.RESIZE_TRAIN",
            40,
            "INPUT.WSOL.CROP_TRAIN",
            32,
            "INPUT.WSOL.SIZE_TEST",
            36,
            *opts,
        ],
        freeze=False,
    )


def test_mapper_train_and_test(tmp_path):
    register_synthetic_wsol("maptest", str(tmp_path / "syn"), TINY)
    record = DatasetCatalog.get("maptest_test")[1]
    train = WSOLDatasetMapper(mapper_cfg(), True)(record)
    assert train["image"].shape == (3, 32, 32) and train["image"].dtype == torch.uint8
    assert train["image_labels"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert "annotations" not in train and "annotations" in record
    test = WSOLDatasetMapper(mapper_cfg(), False)(record)
    assert test["image"].shape == (3, 36, 36)
    assert test["annotations"] == record["annotations"]  # original image coordinates
    assert (test["height"], test["width"]) == (record["height"], record["width"])
    bad = dict(record, image_labels=[4])
    with pytest.raises(
        ValueError, match=r"class ids \[4\] outside \[0, MODEL.WSOL.NUM_CLASSES=4\)"
    ):
        WSOLDatasetMapper(mapper_cfg(), False)(bad)
    resized = WSOLDatasetMapper(mapper_cfg("INPUT.WSOL.RESIZED_CROP_SCALE", [0.5, 1.0]), True)
    assert resized(record)["image"].shape == (3, 32, 32)


def test_random_resized_crop_area_and_fallback():
    image = np.zeros((40, 100, 3), np.uint8)
    np.random.seed(0)
    aug = RandomResizedCrop(24, scale=(0.3, 0.6), ratio=(0.75, 1.333))
    for _ in range(50):
        crop, resize = aug.get_transform(image).transforms
        area = crop.w * crop.h / (40 * 100)
        assert 0.28 <= area <= 0.62 and 0.7 <= crop.w / crop.h <= 1.4
        assert crop.x0 + crop.w <= 100 and crop.y0 + crop.h <= 40
        assert (resize.new_h, resize.new_w) == (24, 24)
    # Area 0.9 of a 40x100 image never fits a ratio in [1, 1]: the central 40x40 square.
    crop, _ = (
        RandomResizedCrop(8, scale=(0.9, 1.0), ratio=(1.0, 1.0)).get_transform(image).transforms
    )
    assert (crop.x0, crop.y0, crop.w, crop.h) == (30, 0, 40, 40)
    out = T.AugInput(np.arange(40 * 100 * 3, dtype=np.uint8).reshape(40, 100, 3))
    RandomResizedCrop(8, scale=(0.9, 1.0), ratio=(1.0, 1.0))(out)
    assert out.image.shape == (8, 8, 3)
