"""VOC-layout loading, image labels and the WSOD dataset dicts: bad input gives clear errors."""
import logging
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from wsod_d2.data.common import image_labels_from_annotations
from wsod_d2.data.datasets import load_voc_wsod, register_voc_wsod
from wsod_d2.data.proposals.io import save_proposal_file
from wsod_d2.data.wsod.build import get_wsod_dataset_dicts

XML = (
    "<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}"
    "</annotation>"
)
OBJ = """<object><name>{name}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>
<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"""
CLASSES = ("cat", "dog")


def write_voc(root, images):
    """images: {id: [(name, difficult, (xmin, ymin, xmax, ymax)), ...]} -> VOC layout at root."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, objs in images.items():
        body = "".join(OBJ.format(name=n, d=d, b=b) for n, d, b in objs)
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
            f.write(XML.format(w=40, h=30, objs=body))
    with open(os.path.join(root, "ImageSets/Main/trainval.txt"), "w") as f:
        f.write("\n".join(images) + "\n")


@pytest.fixture
def voc(tmp_path):
    root = str(tmp_path / "VOC")
    write_voc(
        root,
        {
            "a": [("cat", 0, (1, 1, 20, 10)), ("dog", 1, (5, 5, 8, 8))],
            "b": [("dog", 1, (1, 1, 40, 30))],  # only a difficult object: no image label
            "c": [("dog", 0, (2, 3, 12, 13))],
        },
    )
    name = f"test_voc_{abs(hash(root))}"
    register_voc_wsod(name, root, "trainval", 2007, CLASSES)
    proposals = str(tmp_path / "p.pkl")
    boxes = [np.array([[0, 0, 10, 10], [5, 5, 30, 25]], np.float32)] * 3
    save_proposal_file(proposals, ["a", "b", "c"], boxes)
    yield root, name, proposals
    DatasetCatalog.remove(name)


def dicts(name, proposals, is_train, **kw):
    args = dict(
        is_train=is_train, labels_from_difficult=False, bounds_tolerance=1.0, proposal_workers=1
    )
    args.update(kw)
    return get_wsod_dataset_dicts([name], [proposals], **args)


def test_voc_loader_boxes_and_difficult(voc):
    root = voc[0]
    d = {r["image_id"]: r for r in load_voc_wsod(root, "trainval", CLASSES)}
    assert d["a"]["annotations"][0]["bbox"] == [0.0, 0.0, 20.0, 10.0]  # VOC 1-based -> 0-based
    assert [a["difficult"] for a in d["a"]["annotations"]] == [False, True]
    assert (d["a"]["height"], d["a"]["width"]) == (30, 40)


def test_training_dicts_have_labels_only_and_skip_unlabeled(voc, caplog):
    _, name, proposals = voc
    with caplog.at_level(logging.WARNING, logger="wsod_d2"):
        train = dicts(name, proposals, True)
    assert [r["image_id"] for r in train] == ["a", "c"]
    assert [r["image_labels"] for r in train] == [[0], [1]]
    assert all("annotations" not in r for r in train)
    assert "1 images without image labels left out of training" in caplog.text
    test = dicts(name, proposals, False)
    assert [r["image_labels"] for r in test] == [[0], [], [1]] and "annotations" in test[0]
    with_difficult = dicts(name, proposals, True, labels_from_difficult=True)
    assert [r["image_labels"] for r in with_difficult] == [[0, 1], [1], [1]]


def test_crowd_never_labels():
    anns = [{"category_id": 3, "iscrowd": 1}, {"category_id": 1}, {"category_id": 1}]
    assert image_labels_from_annotations(anns, False) == [1]


def test_unknown_class_name_names_the_file(voc):
    root, name, proposals = voc
    write_voc(root, {"a": [("cta", 0, (1, 1, 5, 5))]})
    with pytest.raises(ValueError, match=r"a\.xml: unknown class name 'cta' \(image a\)"):
        dicts(name, proposals, True)


def test_missing_proposal_entry_and_file(voc, tmp_path):
    _, name, _ = voc
    partial = str(tmp_path / "partial.pkl")
    save_proposal_file(partial, ["a", "c"], [np.array([[0, 0, 5, 5]], np.float32)] * 2)
    with pytest.raises(ValueError, match=r"partial.pkl: image id 'b' \(file_name .*b\.jpg'\)"):
        dicts(name, partial, True)
    with pytest.raises(
        FileNotFoundError, match=f"nowhere.pkl for dataset {name}.*generate_proposals.py"
    ):
        dicts(name, str(tmp_path / "nowhere.pkl"), True)


def test_boxes_outside_image_name_image(voc, tmp_path):
    _, name, _ = voc
    bad = str(tmp_path / "bad.pkl")
    ok = np.array([[0, 0, 5, 5]], np.float32)
    save_proposal_file(bad, ["a", "b", "c"], [ok, ok, np.array([[0, 0, 30, 45]], np.float32)])
    with pytest.raises(ValueError, match=r"bad.pkl.*'c'.*convention"):
        dicts(name, bad, True)


def test_proposal_count_must_match_datasets(voc):
    _, name, proposals = voc
    with pytest.raises(ValueError, match="PROPOSAL_FILES_TRAIN"):
        get_wsod_dataset_dicts(
            [name],
            [],
            is_train=True,
            labels_from_difficult=False,
            bounds_tolerance=1.0,
            proposal_workers=1,
        )


def test_missing_split_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainval.txt"):
        load_voc_wsod(str(tmp_path), "trainval", CLASSES)
    shutil.rmtree(tmp_path)
