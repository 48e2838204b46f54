"""The three steps on the tiny synthetic dataset: a WSOD model trains, ``--eval-only`` keeps its
predictions and strict-JSON results (VOC + COCO + CorLoc together), its pseudo ground truth is
exported, and detectron2's Faster R-CNN trains on it and is evaluated by the same evaluators."""
import json
import os

import pytest
import torch
from detectron2.engine import default_argument_parser

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data import build_wsod_test_loader
from wsod_d2.engine import SupervisedTrainer, WSODTrainer
from wsod_d2.engine.defaults import build_trained_model, main
from wsod_d2.engine.pseudo_gt import export_pseudo_gt
from wsod_d2.evaluation.predictions import COCO_RESULTS_FILE, PREDICTIONS_FILE, RESULTS_FILE
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG, tiny_cfg, tiny_opts

RETRAIN_CONFIG = os.path.join(REPO_ROOT, "configs", "Synthetic", "retrain", "faster_rcnn_tiny.yaml")
ALL_EVALUATORS = ("TEST.EVALUATORS", '("voc", "coco", "corloc")')


def refuse(literal):
    raise ValueError(f"non-strict JSON literal {literal}")


def strict_load(path):
    """json.load that fails on NaN / Infinity literals."""
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def strict_lines(path):
    """The records of a JSON-lines file (metrics.json), strictly parsed."""
    return [json.loads(line, parse_constant=refuse) for line in open(path)]


@pytest.fixture(scope="module")
def wsod_run(tiny_voc, tmp_path_factory):
    """A WSDDN trained 4 iterations (evaluated at the end), its config and output folder."""
    out = tmp_path_factory.mktemp("wsod")
    cfg = tiny_cfg(tiny_voc, str(out), *ALL_EVALUATORS)
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return cfg, out


def test_eval_only_keeps_predictions_and_strict_results(tiny_voc, wsod_run):
    cfg, out = wsod_run
    # The end-of-training evaluation: every result in metrics.json, strict (the tiny images hold
    # no large object: COCO's APl is undefined, written as null).
    records = strict_lines(out / "metrics.json")
    evaluated = [r for r in records if any(k.endswith("corloc/CorLoc") for k in r)][-1]
    assert any(v is None for k, v in evaluated.items() if k.endswith("coco_bbox/APl"))
    eval_dir = out / "eval"
    weights = ("MODEL.WEIGHTS", out / "model_final.pth")
    args = default_argument_parser().parse_args(
        ["--config-file", os.path.join(REPO_ROOT, TINY_CONFIG), "--eval-only"]
        + tiny_opts(tiny_voc, str(eval_dir), *ALL_EVALUATORS, *weights)
    )
    results = main(args)
    model = build_trained_model(cfg, str(out / "model_final.pth"))
    for name in cfg.DATASETS.TEST:
        folder = eval_dir / "inference" / name
        assert set(results[name]) == {"bbox", "coco_bbox", "corloc"}
        assert 0 <= results[name]["bbox"]["AP50"] <= 100
        assert 0 <= results[name]["coco_bbox"]["AP50"] <= 100
        saved = strict_load(folder / RESULTS_FILE)
        assert saved["corloc"]["CorLoc"] == pytest.approx(results[name]["corloc"]["CorLoc"])
        predictions = torch.load(folder / PREDICTIONS_FILE)
        detections = strict_load(folder / COCO_RESULTS_FILE)
        assert len(detections) == sum(len(p["instances"]) for p in predictions) > 0
        # The saved detections are the model's: first image, run again.
        first = next(iter(build_wsod_test_loader(cfg, name)))
        with torch.no_grad():
            inst = model(first)[0]["instances"]
        saved_first = next(p for p in predictions if p["image_id"] == first[0]["image_id"])
        assert len(saved_first["instances"]) == len(inst)
        top = saved_first["instances"][0]
        x0, y0, x1, y1 = inst.pred_boxes.tensor[0].tolist()
        assert top["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-3)
        assert top["category_id"] == int(inst.pred_classes[0])  # VOC: contiguous ids


def test_pseudo_gt_then_faster_rcnn(tiny_voc, wsod_run, tmp_path):
    cfg, out = wsod_run
    model = build_trained_model(cfg, str(out / "model_final.pth"))
    pseudo = tmp_path / "pseudo.json"
    coco = export_pseudo_gt(cfg, model, str(pseudo), rule="top1")
    assert coco["annotations"] and coco["info"]["rule"] == "top1"
    # With test-time augmentation and the threshold rule: every label still has a box.
    tta_cfg = cfg.clone()
    tta_cfg.TEST.AUG.MIN_SIZES, tta_cfg.TEST.AUG.MAX_SIZE = (96, 128), 256
    tta = export_pseudo_gt(
        tta_cfg, model, str(tmp_path / "tta.json"), rule="threshold", score_thresh=0.3, tta=True
    )
    assert tta["info"]["tta"] and tta["info"]["test_sizes"] == [96, 128]
    assert tta["info"]["labelled_classes_without_box"] == 0
    assert len(tta["annotations"]) >= tta["info"]["labelled_classes"]
    _, names, _ = tiny_voc
    retrain_opts = [
        str(x)
        for x in (
            "MODEL.DEVICE", "cpu",
            "MODEL.ROI_HEADS.NUM_CLASSES", 4,
            "DATASETS.TRAIN", ("tiny_pseudo_gt",),
            "DATASETS.PSEUDO_GT_FILES_TRAIN", (str(pseudo),),
            "DATASETS.TEST", (names["test"],),
            "INPUT.MIN_SIZE_TRAIN", (96, 112),
            "INPUT.MIN_SIZE_TEST", 112,
            "DATALOADER.NUM_WORKERS", 0,
            "SOLVER.IMS_PER_BATCH", 2,
            "SOLVER.MAX_ITER", 3,
            "SOLVER.WARMUP_ITERS", 0,
            "SOLVER.CHECKPOINT_PERIOD", 3,
            "OUTPUT_DIR", tmp_path / "frcnn",
        )
    ]  # fmt: skip
    frcnn_cfg = get_wsod_cfg(RETRAIN_CONFIG, retrain_opts)
    os.makedirs(frcnn_cfg.OUTPUT_DIR)
    trainer = SupervisedTrainer(frcnn_cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = trainer.test(frcnn_cfg, trainer.model)
    assert set(results) == {"bbox", "coco_bbox", "corloc"}
    assert 0 <= results["corloc"]["CorLoc"] <= 100
    folder = tmp_path / "frcnn" / "inference" / names["test"]
    assert strict_load(folder / RESULTS_FILE)["bbox"]["AP50"] == pytest.approx(
        results["bbox"]["AP50"]
    )
    assert os.path.isfile(folder / PREDICTIONS_FILE)
    losses = [r for r in strict_lines(tmp_path / "frcnn" / "metrics.json") if "loss_rpn_cls" in r]
    assert losses and all(r["loss_box_reg"] >= 0 for r in losses)
