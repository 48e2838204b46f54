"""Loading the authors' labellers by file path, with stand-ins, from a checkout the user names:
here a fake pcl.pytorch checkout whose OICR is written for the test with the imports of the real."""
import os
import sys

import numpy as np

from wsod_d2.benchmarks.authors_code import _bbox_overlaps
from wsod_d2.benchmarks.pseudo_labels import benchmark_labellers_vs_authors
from wsod_d2.testing import REPO_ROOT

OICR_CONFIG = os.path.join(REPO_ROOT, "configs", "PascalVOC-Detection", "oicr_vgg16.yaml")
FAKE_PCL = """
import numpy as np
import utils.boxes as box_utils
from core.config import cfg
from sklearn.cluster import KMeans  # noqa: F401


def OICR(boxes, cls_prob, im_labels, cls_prob_new):
    prob = cls_prob.cpu().numpy().copy()
    gt, classes = [], []
    for c in np.flatnonzero(im_labels[0] == 1):
        j = prob[:, c].argmax()
        gt.append(boxes[j])
        classes.append(c + 1)
        prob[j] = 0
    overlaps = box_utils.bbox_overlaps(boxes, np.array(gt))
    labels = np.array(classes)[overlaps.argmax(axis=1)]
    labels[overlaps.max(axis=1) < cfg.TRAIN.FG_THRESH] = 0
    return {"labels": labels[None], "cls_loss_weights": np.ones((1, len(boxes)), np.float32)}
"""


def test_the_bbox_overlaps_stand_in_counts_pixels_inclusively():
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [20, 20, 29, 29]], dtype=np.float32)
    np.testing.assert_allclose(_bbox_overlaps(boxes, boxes[:1])[:, 0], [1.0, 50 / 150, 0.0])


def test_a_checkout_is_loaded_with_stand_ins_and_timed_next_to_ours(tmp_path):
    folder = tmp_path / "lib" / "model" / "pcl"
    folder.mkdir(parents=True)
    (folder / "pcl.py").write_text(FAKE_PCL)
    modules = set(sys.modules)
    rows, notes = benchmark_labellers_vs_authors(
        [OICR_CONFIG], sizes=(60,), repeats=1, authors={"pcl": str(tmp_path)}
    )
    assert [(r["code"], r["R"]) for r in rows] == [("wsod_d2", 60), ("pcl.pytorch", 60)]
    assert rows[1]["same_labels"] > 0.9 and rows[1]["ms"] > 0 and notes == []
    assert not {"utils", "core", "core.config", "pcl_pytorch_pcl"} & (set(sys.modules) - modules)


def test_authors_rows_are_skipped_with_a_reason(tmp_path):
    _, notes = benchmark_labellers_vs_authors([OICR_CONFIG], sizes=(20,), repeats=1)
    assert notes == ["OICR: no pcl.pytorch checkout given (--authors-code pcl=PATH); skipped"]
    _, notes = benchmark_labellers_vs_authors(
        [OICR_CONFIG], sizes=(20,), repeats=1, authors={"pcl": str(tmp_path)}
    )
    assert len(notes) == 1 and "could not be loaded" in notes[0] and "pcl.py not found" in notes[0]
