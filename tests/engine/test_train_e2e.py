"""End to end on the tiny synthetic dataset: train, evaluate (mAP, CorLoc), resume after a kill,
two CPU processes."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest
from detectron2.utils.events import EventStorage

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data import build_wsod_test_loader
from wsod_d2.data.progress import training_progress
from wsod_d2.data.wsod.ssd_photometric import SSDPhotometricTransform
from wsod_d2.engine import WSODTrainer
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG, tiny_cfg, tiny_opts
from wsod_d2.utils.visualizer import visualize_dataset

TINY_TRAIN = os.path.join(REPO_ROOT, "tests", "tiny_train.py")


def run_tiny_train(tiny_voc, output_dir, *args, opts=()):
    # The checkout under test first (not whichever wsod_d2 the venv has installed), then tests/.
    path = os.pathsep.join([REPO_ROOT, os.path.join(REPO_ROOT, "tests")])
    env = dict(os.environ, TINYVOC_ROOT=tiny_voc[0], PYTHONPATH=path)
    cmd = [sys.executable, TINY_TRAIN, "--config-file", os.path.join(REPO_ROOT, TINY_CONFIG), *args]
    return subprocess.Popen(
        cmd + tiny_opts(tiny_voc, str(output_dir), *opts),
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def drain(proc):
    """Collect ``proc``'s output in the background: a pipe nobody reads fills up (64 KiB) and
    stalls the process. Returns the list the lines go to and the reading thread."""
    lines = []
    thread = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    thread.start()
    return lines, thread


def test_train_then_evaluate(tiny_voc, tmp_path):
    cfg = tiny_cfg(tiny_voc, tmp_path)
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert os.path.isfile(tmp_path / "model_final.pth")
    with EventStorage():
        results = WSODTrainer.test(cfg, trainer.model)
    for name in cfg.DATASETS.TEST:
        ap50 = results[name]["bbox"]["AP50"]
        corloc = results[name]["corloc"]["CorLoc"]
        assert 0.0 <= ap50 <= 100.0 and 0.0 <= corloc <= 100.0 and not math.isnan(corloc)
    # The trained model's detections, drawn for the test set as tools/visualize.py does.
    name = cfg.DATASETS.TEST[0]
    paths = visualize_dataset(
        trainer.model.eval(),
        build_wsod_test_loader(cfg, name),
        name,
        str(tmp_path / "vis"),
        num_images=3,
        score_thresh=0.0,
        show_gt=True,
        num_proposals=3,
    )
    assert len(paths) == 3 and all(cv2.imread(p).shape[2] == 3 for p in paths)


def last_checkpoint_iteration(output_dir):
    """Iteration of the checkpoint ``last_checkpoint`` names; -1 while there is none (a run killed
    between writing a checkpoint and naming it resumes from the one named before)."""
    try:
        name = (output_dir / "last_checkpoint").read_text().strip()
        return int(name[len("model_") : -len(".pth")])
    except (FileNotFoundError, ValueError):
        return -1


def metrics_iterations(output_dir):
    """The "iteration" of each metrics.json record, in file order."""
    try:
        with open(output_dir / "metrics.json") as f:
            return [json.loads(line)["iteration"] for line in f if line.strip()]
    except FileNotFoundError:
        return []


def test_resume_after_kill(tiny_voc, tmp_path):
    """A run started with --resume in an empty OUTPUT_DIR warns and starts from scratch; killed
    after logging iterations past its last checkpoint, then resumed, it logs each iteration once
    in metrics.json and log.txt."""
    # Checkpoints every 15 iterations, metrics every 20 (detectron2's writer period): the kill
    # comes when metrics of iterations after the last checkpoint have been written.
    period = ("SOLVER.CHECKPOINT_PERIOD", 15)
    proc = run_tiny_train(tiny_voc, tmp_path, "--resume", opts=("SOLVER.MAX_ITER", 100000, *period))
    lines, reader = drain(proc)
    deadline = time.time() + 300
    while not any(
        i > last_checkpoint_iteration(tmp_path) >= 0 for i in metrics_iterations(tmp_path)
    ):
        assert proc.poll() is None, "".join(lines)
        assert time.time() < deadline, "no metrics after a checkpoint in time:\n" + "".join(lines)
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    out = "".join(lines)
    assert f"--resume, but OUTPUT_DIR {tmp_path} has no checkpoint" in out
    assert "training starts FROM SCRATCH at iteration 0" in out
    assert not os.path.isfile(tmp_path / "model_final.pth")
    last = last_checkpoint_iteration(tmp_path)
    logged = metrics_iterations(tmp_path)
    assert last >= 14 and os.path.isfile(tmp_path / f"model_{last:07d}.pth") and logged[-1] > last
    no_eval = ("DATASETS.TEST", "()", "DATASETS.PROPOSAL_FILES_TEST", "()")
    max_iter = logged[-1] + 3
    resumed = run_tiny_train(
        tiny_voc, tmp_path, "--resume", opts=("SOLVER.MAX_ITER", max_iter, *period, *no_eval)
    )
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert f"Starting training from iteration {last + 1}" in out
    assert os.path.isfile(tmp_path / "model_final.pth")
    after = metrics_iterations(tmp_path)
    assert after == sorted(set(after)) and logged[-1] in after and after[-1] == max_iter - 1
    log = (tmp_path / "log.txt").read_text()
    printed = [int(i) for i in re.findall(r"\biter: (\d+) ", log)]
    assert printed == sorted(set(printed)) and logged[-1] in printed
    assert f"--resume from model_{last:07d}.pth (iteration {last}): what the previous run " in log


def test_two_cpu_processes(tiny_voc, tmp_path):
    proc = run_tiny_train(tiny_voc, tmp_path, "--num-gpus", "2", opts=("SOLVER.IMS_PER_BATCH", 4))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "copypaste: CorLoc" in out and "AP,AP50,AP75" in out
    assert os.path.isfile(tmp_path / "model_final.pth")
    # WSDDN's only loss has weight 1: its raw value, averaged over the two processes like the
    # total, equals total_loss (rank 0's alone would not).
    with open(tmp_path / "metrics.json") as f:
        last = [r for r in map(json.loads, f) if "total_loss" in r][-1]
    assert last["raw/loss_mil"] == pytest.approx(last["total_loss"], rel=1e-5)


def test_nan_loss_stops_with_the_iteration(tiny_voc, tmp_path):
    cfg = tiny_cfg(tiny_voc, tmp_path)
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    head = trainer.model.roi_heads.mil_head
    head.loss = lambda scores, labels: scores.sum() * float("nan")
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=0"):
        trainer.train()


def test_full_casd_trains_and_evaluates_through_the_trainer(tiny_voc, tmp_path, monkeypatch):
    """configs/Synthetic/casd/full_reg.yaml (4 views, IW, LW, IA, regression, the release's
    photometric distortion per scale from iteration 2) through WSODTrainer; every term's raw value
    reaches the metrics file."""
    distorted = []
    apply_image = SSDPhotometricTransform.apply_image
    monkeypatch.setattr(
        SSDPhotometricTransform,
        "apply_image",
        lambda self, img: distorted.append(training_progress().iteration) or apply_image(self, img),
    )
    opts = ("INPUT.VIEWS.NUM_SCALES", 2, "INPUT.PHOTOMETRIC.ENABLED", True)
    opts += ("INPUT.PHOTOMETRIC.STYLE", "ssd", "INPUT.PHOTOMETRIC.PER_SCALE", True)
    opts += ("INPUT.PHOTOMETRIC.START_ITER", 2)
    opts += ("SOLVER.STEPS", "(3,)", "MODEL.CASD.IA.LATE_START_ITER", 2)
    cfg = get_wsod_cfg(
        os.path.join(REPO_ROOT, "configs/Synthetic/casd/full_reg.yaml"),
        tiny_opts(tiny_voc, str(tmp_path), *opts),
        freeze=False,
    )
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    # From iteration 2 on, one draw per scale (2 scales) of at least the 2 images of each step
    # (aspect-ratio grouping may map one more, which waits in its bucket).
    assert min(distorted) == 2 and len(distorted) >= 2 * 2 * 2 and len(distorted) % 2 == 0
    with open(tmp_path / "metrics.json") as f:
        last = [r for r in map(json.loads, f) if "total_loss" in r][-1]
    for name in (
        "loss_mil",
        "loss_refine1",
        "loss_refine2_box_reg",
        "loss_casd_iw",
        "loss_casd_lw",
    ):
        assert math.isfinite(last[name]) and last[f"raw/{name}"] > 0, name
    assert last["loss_casd_iw"] == pytest.approx(0.1 * last["raw/loss_casd_iw"], rel=1e-4)
    with EventStorage():
        results = WSODTrainer.test(cfg, trainer.model)
    assert 0.0 <= results[cfg.DATASETS.TEST[0]]["corloc"]["CorLoc"] <= 100.0
