"""Pseudo ground truth: the boxes chosen per image-level class, and the exporter's COCO file on a
hand-made model's output (original coordinates, ids and file names kept, loadable by
detectron2's register_coco_instances)."""
import json

import pytest
import torch
import torch.nn as nn
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import BoxMode, Boxes, Instances

from wsod_d2.data.common import image_labels_from_annotations
from wsod_d2.data.datasets.pseudo_gt import register_pseudo_gt_datasets
from wsod_d2.engine.pseudo_gt import export_pseudo_gt
from wsod_d2.evaluation.pseudo_gt import select_pseudo_boxes
from wsod_d2.testing import TINY_SPEC, tiny_cfg

# Per class, in fractions of the image (x0, y0, x1, y1): a strong and a weaker box (IoU 0.13).
STRONG, WEAK = (0.1, 0.2, 0.5, 0.6), (0.3, 0.3, 0.9, 0.9)


def test_top_box_per_labelled_class_only():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 9, 9], [30, 30, 40, 40], [0, 0, 50, 50.0]]
    )
    scores = torch.tensor([0.3, 0.9, 0.8, 0.6, 0.95])
    classes = torch.tensor([0, 0, 1, 1, 2])
    b, s, c = select_pseudo_boxes(boxes, scores, classes, [1, 0, 3], rule="top1")
    # Class 2 (not a label) is left out, though it scores highest; class 3 has no detection.
    assert c.tolist() == [0, 1] and s.tolist() == pytest.approx([0.9, 0.8])
    assert b.tolist() == [[5, 5, 20, 20], [1, 1, 9, 9]]


def test_threshold_rule_nms_and_fallback():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 5, 5.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2])
    classes = torch.tensor([0, 0, 0, 1])
    b, s, c = select_pseudo_boxes(
        boxes, scores, classes, [0, 1], rule="threshold", score_thresh=0.5, nms_thresh=0.5
    )
    # Box 1 overlaps box 0 (IoU 0.82): suppressed. Class 1 has nothing >= 0.5: its top box.
    assert c.tolist() == [0, 0, 1] and s.tolist() == pytest.approx([0.9, 0.7, 0.2])
    assert b[1].tolist() == [20, 20, 30, 30]
    with pytest.raises(ValueError, match="choose from"):
        select_pseudo_boxes(boxes, scores, classes, [0], rule="top3")


class HandMadeDetector(nn.Module):
    """For every class, STRONG (0.8) and WEAK (0.4) boxes of the input image it is given (the
    test mapper's resized one), mapped to the original size as detectors do."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.resized = 0

    def forward(self, inputs):
        outputs = []
        for inp in inputs:
            h, w = inp["image"].shape[1:]
            self.resized += (h, w) != (inp["height"], inp["width"])
            fractions = torch.tensor([STRONG, WEAK] * self.num_classes)
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(fractions * torch.tensor([w, h, w, h]))
            inst.scores = torch.tensor([0.8, 0.4] * self.num_classes)
            inst.pred_classes = torch.arange(self.num_classes).repeat_interleave(2)
            outputs.append({"instances": detector_postprocess(inst, inp["height"], inp["width"])})
        return outputs


def test_exporter_writes_coco_that_detectron2_loads(tiny_voc, tmp_path):
    cfg = tiny_cfg(tiny_voc, str(tmp_path))
    model = HandMadeDetector(TINY_SPEC.num_classes)
    path = tmp_path / "pseudo.json"
    export_pseudo_gt(cfg, model, str(path), rule="top1", model_info={"weights": "hand-made"})
    assert model.resized > 0  # the model saw resized images: the boxes had to be mapped back
    coco = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert coco["info"]["rule"] == "top1" and coco["info"]["model"] == {"weights": "hand-made"}
    assert coco["info"]["labelled_classes_without_box"] == 0

    name = cfg.DATASETS.TRAIN[0]
    truth = {d["image_id"]: d for d in DatasetCatalog.get(name)}
    register_coco_instances("tiny_pseudo_gt_handmade", {}, str(path), "")
    loaded = DatasetCatalog.get("tiny_pseudo_gt_handmade")
    assert MetadataCatalog.get("tiny_pseudo_gt_handmade").thing_classes == list(
        MetadataCatalog.get(name).thing_classes
    )
    assert sorted(d["image_id"] for d in loaded) == sorted(truth)
    for d in loaded:
        original = truth[d["image_id"]]
        assert d["file_name"] == original["file_name"]
        assert (d["height"], d["width"]) == (original["height"], original["width"])
        labels = image_labels_from_annotations(original["annotations"], False)
        # One box per labelled class (difficult-only classes are no label, as in training), none
        # for absent classes, STRONG in original pixels.
        assert [a["category_id"] for a in d["annotations"]] == labels
        w, h = original["width"], original["height"]
        expected = BoxMode.convert(
            [STRONG[0] * w, STRONG[1] * h, STRONG[2] * w, STRONG[3] * h],
            BoxMode.XYXY_ABS,
            BoxMode.XYWH_ABS,
        )
        for ann in d["annotations"]:
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS
            assert ann["bbox"] == pytest.approx(expected, abs=1e-3)


def test_pseudo_gt_files_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match="PSEUDO_GT_FILES_TRAIN has 1 files .* for 2"):
        register_pseudo_gt_datasets(["a", "b"], [str(tmp_path / "a.json")])
    with pytest.raises(FileNotFoundError, match="missing.json .*tools/export_pseudo_gt.py"):
        register_pseudo_gt_datasets(["pseudo_missing"], [str(tmp_path / "missing.json")])
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="voc_2007_trainval is already a registered dataset"):
        register_pseudo_gt_datasets(["voc_2007_trainval"], [str(path)])
