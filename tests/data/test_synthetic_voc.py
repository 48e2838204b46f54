import json
import multiprocessing as mp
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from itertools import combinations

import cv2
import numpy as np
import pytest

from wsod_d2.data.synthetic.render import class_part
from wsod_d2.data.synthetic.voc import CLASS_NAMES, SyntheticVOCSpec, split_image_ids
from wsod_d2.data.synthetic.voc_render import render_synthetic_image
from wsod_d2.data.synthetic.voc_writer import (
    MARKER_NAME,
    ensure_synthetic_voc,
    generate_synthetic_voc,
)
from wsod_d2.testing import REPO_ROOT

# Small images: objects of the minimum body size (10 px) are marked difficult below 15%.
SPEC = SyntheticVOCSpec(
    num_trainval=20,
    num_test=10,
    num_classes=8,
    seed=3,
    min_size=96,
    max_size=128,
    difficult_size_frac=0.15,
)
TINY = SyntheticVOCSpec(num_trainval=6, num_test=4, num_classes=4, min_size=64, max_size=80)


def _box_iou(a, b):
    """IoU of inclusive pixel boxes (x0, y0, x1, y1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _read_tree(root):
    """{relative path: bytes} of every file under root."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _renders(spec):
    return {
        split: [render_synthetic_image(spec, split, i) for i in range(n)]
        for split, n in (("trainval", spec.num_trainval), ("test", spec.num_test))
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("a") / "VOC2007")
    generate_synthetic_voc(root, SPEC)
    return root


@pytest.fixture(scope="module")
def renders():
    return _renders(SPEC)


def test_layout_and_xml(dataset, renders):
    assert sorted(os.listdir(dataset)) == sorted(
        [MARKER_NAME, "Annotations", "ImageSets", "JPEGImages"]
    )
    ids = split_image_ids(SPEC)
    for split in ("trainval", "test"):
        with open(os.path.join(dataset, "ImageSets", "Main", f"{split}.txt")) as f:
            assert f.read().split() == ids[split]
        for image_id, render in zip(ids[split], renders[split]):
            root = ET.parse(os.path.join(dataset, "Annotations", f"{image_id}.xml")).getroot()
            assert root.tag == "annotation"
            assert root.findtext("folder") == "VOC2007"
            assert root.findtext("filename") == f"{image_id}.jpg"
            assert root.find("source").findtext("database")
            assert root.findtext("segmented") == "0"
            w, h = (int(root.find("size").findtext(k)) for k in ("width", "height"))
            assert root.find("size").findtext("depth") == "3"
            jpeg = cv2.imread(os.path.join(dataset, "JPEGImages", f"{image_id}.jpg"))
            assert jpeg.shape == (h, w, 3)
            assert SPEC.min_size <= min(w, h) and max(w, h) <= SPEC.max_size
            objects = root.findall("object")
            assert len(objects) == len(render.objects) >= 1
            for element, obj in zip(objects, render.objects):
                assert element.findtext("name") == CLASS_NAMES[obj.class_id]
                assert obj.class_id < SPEC.num_classes
                assert element.findtext("pose") == "Unspecified"
                assert element.findtext("truncated") == str(int(obj.truncated))
                assert element.findtext("difficult") == str(int(obj.difficult))
                box = [
                    int(element.find("bndbox").findtext(k))
                    for k in ("xmin", "ymin", "xmax", "ymax")
                ]
                # VOC is 1-based inclusive: the drawn 0-based pixel box shifted by one.
                assert box == [v + 1 for v in obj.box]
                assert 1 <= box[0] <= box[2] <= w and 1 <= box[1] <= box[3] <= h
            # The JPEG is the rendered image (up to compression).
            assert np.abs(jpeg[:, :, ::-1].astype(float) - render.image).mean() < 6.0


def test_per_class_image_sets(dataset, renders):
    main = os.path.join(dataset, "ImageSets", "Main")
    trainval = renders["trainval"]
    subsets = {"trainval": trainval, "test": renders["test"]}
    subsets.update(train=trainval[0::2], val=trainval[1::2])
    expected_files = {f"{s}.txt" for s in subsets}
    expected_files |= {f"{c}_{s}.txt" for c in CLASS_NAMES[: SPEC.num_classes] for s in subsets}
    assert set(os.listdir(main)) == expected_files
    seen_labels = set()
    for split, images in subsets.items():
        for class_id, name in enumerate(CLASS_NAMES[: SPEC.num_classes]):
            with open(os.path.join(main, f"{name}_{split}.txt")) as f:
                lines = f.read().splitlines()
            assert len(lines) == len(images)
            for line, image in zip(lines, images):
                image_id, label = line.split()
                assert image_id == image.image_id
                flags = [o.difficult for o in image.objects if o.class_id == class_id]
                want = -1 if not flags else (0 if all(flags) else 1)
                assert int(label) == want
                seen_labels.add(want)
    assert seen_labels == {-1, 0, 1}


def test_splits_disjoint_and_ids():
    ids = split_image_ids(SPEC)
    assert len(set(ids["trainval"]) | set(ids["test"])) == SPEC.num_trainval + SPEC.num_test
    assert ids["trainval"][0] == "000001" and ids["test"][0] == "000021"
    assert all(len(i) == 6 and i.isdigit() for i in ids["trainval"] + ids["test"])


def test_deterministic(tmp_path, dataset):
    again = str(tmp_path / "b" / "VOC2007")
    generate_synthetic_voc(again, SPEC)
    first, second = _read_tree(dataset), _read_tree(again)
    assert len(first) > 30 and first == second

    other = SyntheticVOCSpec(**{**SPEC.__dict__, "seed": 4})
    assert not np.array_equal(
        render_synthetic_image(other, "trainval", 5).image,
        render_synthetic_image(SPEC, "trainval", 5).image,
    )
    # An image does not depend on how many images the other split has.
    resized = SyntheticVOCSpec(**{**SPEC.__dict__, "num_trainval": 13, "num_test": 17})
    for split, index in (("trainval", 12), ("test", 9)):
        a = render_synthetic_image(SPEC, split, index)
        b = render_synthetic_image(resized, split, index)
        assert np.array_equal(a.image, b.image) and a.objects == b.objects


def test_parts_are_small_and_class_coloured(renders):
    spec = SyntheticVOCSpec(**{**SPEC.__dict__, "noise_std": 0.0})
    ious = []
    for split, n in (("trainval", 20), ("test", 10)):
        for index in range(n):
            image = render_synthetic_image(spec, split, index)
            for k, obj in enumerate(image.objects):
                px0, py0, px1, py1 = obj.part_box
                x0, y0, x1, y1 = obj.box
                assert x0 <= px0 <= px1 <= x1 and y0 <= py0 <= py1 <= y1
                ious.append(_box_iou(obj.part_box, obj.box))
                # The part is the only region of the object in its class's part colour.
                _, colour, _ = class_part(obj.class_id)
                close = np.abs(image.image.astype(int) - colour).max(axis=2) < 40
                own = image.instance_map == k
                in_part = np.zeros_like(own)
                in_part[py0 : py1 + 1, px0 : px1 + 1] = True
                assert (close & own & in_part).sum() >= 0.3 * in_part.sum()
                assert (close & own & ~in_part).sum() <= 0.01 * own.sum()
    # Boxing only the part never reaches IoU 0.5; even the smallest objects stay far below.
    assert len(ious) >= 30 and max(ious) < 0.3 and np.median(ious) < 0.06


def test_part_identifies_class_and_body_family_is_shared():
    pairs = {class_part(c)[:2] for c in range(len(CLASS_NAMES))}
    assert len(pairs) == len(CLASS_NAMES)
    spec = SyntheticVOCSpec()
    assert spec.num_families == 5  # 4 classes share each body family
    assert SyntheticVOCSpec(num_classes=8).num_families == 2


def test_class_appearance_and_statistics(dataset):
    # Every class has a non-difficult instance in both splits.
    main = os.path.join(dataset, "ImageSets", "Main")
    for name in CLASS_NAMES[: SPEC.num_classes]:
        for split in ("trainval", "test"):
            with open(os.path.join(main, f"{name}_{split}.txt")) as f:
                assert any(line.split()[1] == "1" for line in f), (name, split)

    spec = SyntheticVOCSpec(num_trainval=150, num_test=1)  # default sizes, as used in training
    images = [render_synthetic_image(spec, "trainval", i) for i in range(150)]
    classes = np.bincount([o.class_id for im in images for o in im.objects], minlength=20)
    assert classes.min() >= 3 and classes.max() <= 8 * classes.min()
    counts = [len(im.objects) for im in images]
    assert min(counts) == 1 and max(counts) == 4 and 1.5 < np.mean(counts) < 2.5
    repeats = np.mean([len({o.class_id for o in im.objects}) < len(im.objects) for im in images])
    assert 0.1 < repeats < 0.45
    objects = [(im, o) for im in images for o in im.objects]
    assert 0.05 < np.mean([o.truncated for _, o in objects]) < 0.5
    assert 0.03 < np.mean([o.difficult for _, o in objects]) < 0.3
    sides = []
    for im, o in objects:
        h, w = im.image.shape[:2]
        side = np.sqrt((o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1)) / min(w, h)
        sides.append(side)
        small = side < spec.difficult_size_frac
        assert o.difficult == (small or o.visible_frac < spec.difficult_min_visible)
        if o.truncated:
            assert o.box[0] == 0 or o.box[1] == 0 or o.box[2] == w - 1 or o.box[3] == h - 1
    assert min(sides) < 0.1 and max(sides) > 0.6
    for im in images:
        for a, b in combinations(im.objects, 2):
            assert _box_iou(a.box, b.box) <= spec.max_box_iou


def test_detectron2_loader(dataset, renders):
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    for split in ("trainval", "test"):
        dicts = load_voc_instances(dataset, split, CLASS_NAMES)
        assert len(dicts) == len(renders[split])
        for d, render in zip(dicts, renders[split]):
            assert d["image_id"] == render.image_id
            assert (d["height"], d["width"]) == render.image.shape[:2]
            assert os.path.isfile(d["file_name"])
            got = [(a["category_id"], a["bbox"]) for a in d["annotations"]]
            # detectron2 boxes are continuous: pixels x0..x1 span [x0, x1 + 1].
            want = [
                (o.class_id, [o.box[0], o.box[1], o.box[2] + 1, o.box[3] + 1])
                for o in render.objects
            ]
            assert got == want


def test_ensure_idempotent_and_mismatch(tmp_path):
    root = str(tmp_path / "synthvoc" / "VOC2007")
    assert ensure_synthetic_voc(root, TINY) is True
    with open(os.path.join(root, MARKER_NAME)) as f:
        marker = json.load(f)
    assert marker["seed"] == TINY.seed and marker["num_classes"] == 4
    stamps = {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in _read_tree(root)}
    assert len(stamps) == 2 * 10 + 1 + 4 * (1 + 4)  # images, xmls, marker, image sets
    assert ensure_synthetic_voc(root, TINY) is False
    assert {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in stamps} == stamps
    assert sorted(os.listdir(tmp_path / "synthvoc")) == ["VOC2007", "VOC2007.lock"]

    other = SyntheticVOCSpec(**{**TINY.__dict__, "seed": 1})
    with pytest.raises(ValueError, match=r"VOC2007 was generated.*differing: seed.*delete"):
        ensure_synthetic_voc(root, other)


def test_no_half_dataset_and_no_foreign_overwrite(tmp_path):
    root = tmp_path / "VOC2007"
    # A killed generation leaves only a staging sibling, which the next call clears.
    (tmp_path / "VOC2007.tmp-dead").mkdir()
    (tmp_path / "VOC2007.tmp-dead" / "000001.jpg").write_bytes(b"partial")
    assert ensure_synthetic_voc(str(root), TINY) is True
    assert sorted(os.listdir(tmp_path)) == ["VOC2007", "VOC2007.lock"]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite .*mine"):
        ensure_synthetic_voc(str(foreign), TINY)
    assert (foreign / "notes.txt").read_text() == "keep me"


def _ensure_worker(root, barrier, results):
    barrier.wait()
    results.put(ensure_synthetic_voc(root, TINY))


def test_concurrent_ensure(tmp_path):
    root = str(tmp_path / "synthvoc" / "VOC2007")
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_ensure_worker, args=(root, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in procs) == [False, True]
    reference = str(tmp_path / "ref" / "VOC2007")
    generate_synthetic_voc(reference, TINY)
    assert _read_tree(root) == _read_tree(reference)
    assert sorted(os.listdir(tmp_path / "synthvoc")) == ["VOC2007", "VOC2007.lock"]


def test_cli(tmp_path):
    root = str(tmp_path / "VOC2007")
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "tools", "make_synthetic_voc.py"),
            "--root",
            root,
            "--num-trainval",
            "3",
            "--num-test",
            "2",
            "--num-classes",
            "2",
            "--seed",
            "7",
            "--min-size",
            "64",
            "--max-size",
            "72",
            "--part-frac",
            "0.1",
            "0.15",
        ],
        check=True,
    )
    with open(os.path.join(root, MARKER_NAME)) as f:
        marker = json.load(f)
    assert (marker["num_trainval"], marker["num_test"], marker["seed"]) == (3, 2, 7)
    assert marker["part_frac"] == [0.1, 0.15] and marker["max_size"] == 72
    assert len(os.listdir(os.path.join(root, "JPEGImages"))) == 5


def test_spec_accepts_config_lists():
    spec = SyntheticVOCSpec(part_frac=[0.1, 0.15], num_distractors=[1, 2])
    assert spec == SyntheticVOCSpec(part_frac=(0.1, 0.15), num_distractors=(1, 2))
    assert hash(spec) == hash(SyntheticVOCSpec(part_frac=(0.1, 0.15), num_distractors=(1, 2)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticVOCSpec(num_classes=21)
    with pytest.raises(ValueError, match="min_object_frac"):
        SyntheticVOCSpec(min_object_frac=0.9, max_object_frac=0.5)
    with pytest.raises(ValueError, match="split='val'"):
        render_synthetic_image(TINY, "val", 0)
    with pytest.raises(ValueError, match="index=4 .*'test'"):
        render_synthetic_image(TINY, "test", 4)
