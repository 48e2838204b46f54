"""End to end on tiny synthetic data: CAM, ADL, CAM + CropCAM, TS-CAM and SCM train a few
iterations and go through the WSOL evaluator; CSRA gives a multi-label mAP; the table runner and
the CAM drawer work on a trained model."""

import json
import math
import os

import cv2
import pytest
from detectron2.data import MetadataCatalog

from wsod_d2.benchmarks import run_table
from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.datasets import register_synthetic_wsol
from wsod_d2.data.wsol.build import build_wsol_test_loader
from wsod_d2.engine import WSOLTrainer
from wsod_d2.engine.defaults import build_trained_model
from wsod_d2.evaluation.wsol.visualizer import draw_cams
from wsod_d2.testing import REPO_ROOT, TINY_WSOL

VIT_32 = {
    "MODEL.VIT.IMG_SIZE": 32,
    "MODEL.VIT.EMBED_DIM": 24,
    "MODEL.VIT.DEPTH": 2,
    "MODEL.VIT.NUM_HEADS": 2,
}
# 12 test images: class index % 4, box-area stratum (index // 4) % 4 of (0, .1, .25, .5, .85].
BIN_IMAGES = {
    "size(0,0.1] images": 4.0,
    "size(0.1,0.25] images": 4.0,
    "size(0.25,0.5] images": 4.0,
    "size(0.5,1] images": 0.0,
}


@pytest.fixture(scope="module")
def tiny_wsol(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets") / "tinywsol")
    register_synthetic_wsol("tinywsol", root, TINY_WSOL)
    return root


TINY = {
    "MODEL.DEVICE": "cpu",
    "MODEL.WSOL.NUM_CLASSES": 4,
    "DATASETS.TRAIN": ("tinywsol_train",),
    "DATASETS.TEST": ("tinywsol_test",),
    "INPUT.WSOL.RESIZE_TRAIN": 40,
    "INPUT.WSOL.CROP_TRAIN": 32,
    "INPUT.WSOL.SIZE_TEST": 32,
    "DATALOADER.NUM_WORKERS": 0,
    "SOLVER.IMS_PER_BATCH": 4,
    "SOLVER.MAX_ITER": 3,
    "SOLVER.STEPS": "()",
    "SOLVER.WARMUP_ITERS": 0,
    "SOLVER.CHECKPOINT_PERIOD": 3,
    "TEST.WSOL.IMS_PER_BATCH": 5,
}


def tiny_opts(overrides=()):
    """Command-line KEY VALUE list shrinking a synthetic config to the tiny data."""
    return [str(x) for kv in {**TINY, **dict(overrides)}.items() for x in kv]


def wsol_cfg(config, *opts):
    path = os.path.join(REPO_ROOT, "configs", "Synthetic", "wsol", config)
    return get_wsod_cfg(path, opts, freeze=False)


@pytest.mark.parametrize(
    "config, opts",
    [
        ("cam_vgg_tiny.yaml", {}),
        ("adl_vgg_tiny.yaml", {}),
        ("cam_vgg_tiny_cropcam.yaml", {"MODEL.CROPCAM.START_ITER": 1}),
        ("tscam_vit_tiny.yaml", VIT_32),
        ("scm_vit_tiny.yaml", VIT_32),
    ],
)
def test_train_then_wsol_evaluation(tiny_wsol, tmp_path, config, opts):
    cfg = wsol_cfg(config, *tiny_opts({"OUTPUT_DIR": tmp_path, **opts}))
    trainer = WSOLTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = WSOLTrainer.test(cfg, trainer.model)["wsol"]
    assert os.path.isfile(tmp_path / "model_final.pth")
    for key, count in BIN_IMAGES.items():
        assert results[key] == count
    assert math.isnan(results["size(0.5,1]"])
    ious = [results[f"IoU{t}"] for t in (30, 50, 70)]
    assert results["MaxBoxAccV2"] == pytest.approx(sum(ious) / 3)
    assert 0 <= results["Top-1 Loc"] <= results["GT-known Loc"] <= 100
    assert results["Top-5 Loc"] == results["GT-known Loc"]  # 4 classes: the GT is in any top 5
    assert all(0 <= v <= 100 for k, v in results.items() if k.startswith("IoU"))


def test_csra_multilabel_map(tiny_voc, tmp_path):
    _, names, _ = tiny_voc
    opts = {
        "OUTPUT_DIR": tmp_path,
        "DATASETS.TRAIN": (names["trainval"],),
        "DATASETS.TEST": (names["test"],),
        "INPUT.WSOL.CROP_TRAIN": 48,
        "INPUT.WSOL.SIZE_TEST": 48,
    }
    cfg = wsol_cfg("csra_vgg_tiny_synthvoc.yaml", *tiny_opts(opts))
    trainer = WSOLTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = WSOLTrainer.test(cfg, trainer.model)["cls"]
    assert sorted(results) == ["AP-aeroplane", "AP-bicycle", "AP-bird", "AP-boat", "mAP"]
    assert 0 <= results["mAP"] <= 100


def test_final_metrics_of_a_run(tmp_path):
    table = run_table
    assert all(
        os.path.isfile(os.path.join(REPO_ROOT, c))
        for c in table.PRESETS["wsol"] + table.PRESETS["wsod"]
    )
    records = [
        {"iteration": 9, "total_loss": 1.0, "wsol_classifier/cls_accuracy": 0.5},
        {
            "iteration": 19,
            "a_test/wsol/MaxBoxAccV2": 40.0,
            "a_test/wsol/size(0,0.1]": 12.5,
            "b_test/cls/mAP": 70.0,
            "wsol_classifier/cls_accuracy": 0.75,
        },
        {"iteration": 29, "total_loss": 0.5, "wsol_classifier/cls_accuracy": 1.0},
    ]
    path = tmp_path / "metrics.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert table.final_metrics(str(path)) == {
        "a_test": {"wsol/MaxBoxAccV2": 40.0, "wsol/size(0,0.1]": 12.5},
        "b_test": {"cls/mAP": 70.0},
    }
    # A detector evaluated by VOC, COCO and CorLoc at once; an undefined metric is null.
    detector = {"iteration": 9, "t/bbox/AP50": 30.0, "t/coco_bbox/AP50": 31.0}
    detector.update({"t/coco_bbox/APl": None, "t/corloc/CorLoc": 50.0})
    path.write_text(json.dumps(detector) + "\n")
    metrics = table.final_metrics(str(path))["t"]
    assert math.isnan(metrics.pop("coco_bbox/APl"))
    assert metrics == {"bbox/AP50": 30.0, "coco_bbox/AP50": 31.0, "corloc/CorLoc": 50.0}
    metrics["coco_bbox/AP"] = float("nan")
    row = {"config": "d", "test set": "t", "wall": 1.0, "metrics": metrics}
    assert table.markdown_table([row], "cpu").splitlines()[:3] == [
        "| config | test set | mAP50 | CorLoc | COCO AP | COCO AP50 | wall time (s) |",
        "|---|---|---|---|---|---|---|",
        "| d | t | 30.00 | 50.00 | - | 31.00 | 1 |",
    ]
    text = table.markdown_table(
        [
            {
                "config": "x",
                "test set": "a_test",
                "wall": 12.3,
                "metrics": {"wsol/MaxBoxAccV2": 40.0, "wsol/size(0,0.1]": 12.5},
            }
        ],
        "cpu",
    )
    # Only the metrics some run reported get a column.
    assert text.splitlines()[2] == "| x | a_test | 40.00 | 12.50 | 12 |"


def test_table_runner_and_cam_drawing(tiny_wsol, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYWSOL_ROOT", tiny_wsol)
    helper = os.path.join(REPO_ROOT, "tests", "wsol_tiny_train.py")
    work = tmp_path / "table"
    config = os.path.join(REPO_ROOT, "configs", "Synthetic", "wsol", "tscam_vit_tiny.yaml")
    opts = tiny_opts(VIT_32)  # the runner sets OUTPUT_DIR itself
    path = run_table.main(
        ["--configs", config, "--work-dir", str(work), "--train-script", helper, *opts]
    )
    lines = open(path).read().splitlines()
    assert lines[0].startswith("| config | test set | MaxBoxAccV2 | Top-1 Loc | GT-known Loc |")
    last = [json.loads(line) for line in open(work / "tscam_vit_tiny" / "metrics.json")][-1]
    cells = lines[2].split(" | ")
    assert cells[0] == "| tscam_vit_tiny" and float(cells[2]) == round(last["wsol/MaxBoxAccV2"], 2)
    threads = os.cpu_count()
    assert lines[-1].startswith("Hardware: ") and f"({threads} thread" in lines[-1]
    assert "per run, 1 run at a time)" in lines[-1]

    drawn = tmp_path / "drawn"
    cfg = get_wsod_cfg(config, opts)
    model = build_trained_model(cfg, str(work / "tscam_vit_tiny" / "model_final.pth"))
    loader = build_wsol_test_loader(cfg, cfg.DATASETS.TEST[0])
    written = draw_cams(
        model,
        loader,
        MetadataCatalog.get("tinywsol_test").thing_classes,
        str(drawn),
        num_images=2,
        cam_threshold=0.2,
    )
    assert written == 2
    image = cv2.imread(str(drawn / "test_00000.png"))
    original = cv2.imread(os.path.join(tiny_wsol, "images", "test", "00000.jpg"))
    # The map over the image, then the attention and semantic maps of TS-CAM.
    assert image.shape == (original.shape[0], 3 * original.shape[1], 3)
