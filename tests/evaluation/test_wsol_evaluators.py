"""WSOL evaluators: model outputs and dataset dicts in, WSOL and PxAP results out."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from PIL import Image

from wsod_d2.evaluation.wsol.evaluators import PxAPEvaluator, WSOLEvaluator


def wsol_input(image_id, gt_xyxy, category_id=1, size_hw=(64, 80)):
    x0, y0, x1, y1 = gt_xyxy
    return {
        "image_id": image_id,
        "height": size_hw[0],
        "width": size_hw[1],
        "annotations": [
            {
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": category_id,
            }
        ],
    }


def test_wsol_evaluator_end_to_end():
    evaluator = WSOLEvaluator("unused", top_k=2, distributed=False)
    gt = (10, 8, 50, 40)
    cam = torch.zeros(64, 80)
    cam[8:41, 10:51] = 3.0  # normalised to 1 inside the box
    scores_right = torch.tensor([0.1, 0.7, 0.2])
    scores_second = torch.tensor([0.5, 0.3, 0.2])  # GT class 1 is second
    evaluator.reset()
    evaluator.process(
        [wsol_input("a", gt), wsol_input("b", gt)],
        [{"cam": cam, "image_scores": scores_right}, {"cam": cam, "image_scores": scores_second}],
    )
    results = evaluator.evaluate()["wsol"]
    assert results["MaxBoxAccV2"] == 100.0 and results["MaxBoxAcc"] == 100.0
    assert results["IoU30"] == results["IoU50"] == results["IoU70"] == 100.0
    assert results["GT-known Loc"] == 100.0
    assert results["Top-1 Loc"] == 50.0 and results["Top-2 Loc"] == 100.0
    assert results["size(0.25,0.5] images"] == 2.0 and results["size(0.25,0.5]"] == 100.0
    assert all(isinstance(v, float) for v in results.values())


def test_wsol_evaluator_reads_missing_annotations_from_the_dataset_and_eval_size():
    name = "wsol_metrics_test_dataset"
    DatasetCatalog.register(name, lambda: [dict(wsol_input(7, (0, 0, 32, 32)), image_labels=[2])])
    try:
        evaluator = WSOLEvaluator(name, eval_size=(32, 32), distributed=False)
        evaluator.reset()
        cam = torch.zeros(8, 10)
        cam[:4, :5] = 1.0  # top-left quarter, matching the GT box once rescaled
        inputs = [{"image_id": 7, "height": 64, "width": 80}]
        evaluator.process(inputs, [{"cam": cam, "image_scores": torch.tensor([0.0, 0.0, 1.0])}])
        results = evaluator.evaluate()["wsol"]
        assert results["Top-1 Loc"] == results["GT-known Loc"] == 100.0
        with pytest.raises(KeyError, match="image_id 8"):
            evaluator.process([{"image_id": 8, "height": 64, "width": 80}], [{}])
    finally:
        DatasetCatalog.remove(name)


def test_wsol_evaluator_errors_name_the_image():
    evaluator = WSOLEvaluator("unused", distributed=False)
    bad = {"cam": torch.zeros(2, 3, 4), "image_scores": torch.ones(3)}
    with pytest.raises(ValueError, match="'img7'"):
        evaluator.process([wsol_input("img7", (1, 1, 5, 5))], [bad])
    with pytest.raises(KeyError, match="'image_scores'"):
        evaluator.process([wsol_input("img8", (1, 1, 5, 5))], [{"cam": torch.ones(4, 4)}])
    with pytest.raises(ValueError, match="loc_iou_threshold"):
        WSOLEvaluator("unused", loc_iou_threshold=0.6)
    assert WSOLEvaluator("unused", distributed=False).evaluate() == {}


def test_pxap_evaluator_with_png_masks(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:15, 10:25] = 255
    ignore = np.zeros_like(mask)
    ignore[:, :5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(ignore).save(tmp_path / "i.png")
    cam = torch.from_numpy(mask.astype(np.float32))
    cam[:, :5] = 510.0  # background scored above the object, but ignored
    record = {
        "image_id": 1,
        "height": 20,
        "width": 30,
        "sem_seg_file_name": str(tmp_path / "m.png"),
        "ignore_file_name": str(tmp_path / "i.png"),
    }
    evaluator = PxAPEvaluator("unused", distributed=False)
    evaluator.reset()
    evaluator.process([record], [{"cam": cam}])
    assert evaluator.evaluate()["pxap"]["PxAP"] == pytest.approx(100.0)
    evaluator.reset()
    evaluator.process(
        [{k: v for k, v in record.items() if k != "ignore_file_name"}], [{"cam": cam}]
    )
    assert evaluator.evaluate()["pxap"]["PxAP"] < 100.0
