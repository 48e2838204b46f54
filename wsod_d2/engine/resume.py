"""Logs that a resumed run can be trusted with.

detectron2's writers append to ``log.txt`` and ``metrics.json``; a run killed after its checkpoint
at iteration k has already written lines for iterations k+1 .. m, which the resumed run writes
again with other values. :class:`LogOffsetsHook` records, at each checkpoint iteration and after
every other hook (the writers included), how long both files are; :func:`trim_logs_for_resume`
cuts them back to those lengths before the resumed run writes anything, and leaves a line in
``log.txt`` that says so.
"""
import json
import logging
import os
import re

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["LogOffsetsHook", "checkpoint_iteration", "trim_logs_for_resume"]

OFFSETS_FILE = "log_offsets.json"
LOG_FILES = ("log.txt", "metrics.json")

logger = logging.getLogger(__name__)


def _sizes(output_dir):
    return {
        name: os.path.getsize(os.path.join(output_dir, name))
        for name in LOG_FILES
        if os.path.isfile(os.path.join(output_dir, name))
    }


def _read_offsets(output_dir):
    path = os.path.join(output_dir, OFFSETS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write_offsets(output_dir, offsets):
    path = os.path.join(output_dir, OFFSETS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(offsets, f)
    os.replace(path + ".tmp", path)


class LogOffsetsHook(HookBase):
    """Registered after every other hook: at each iteration that PeriodicCheckpointer saves
    (``(iter + 1) % period == 0``), record the sizes of log.txt and metrics.json in
    ``OUTPUT_DIR/log_offsets.json``."""

    def __init__(self, output_dir: str, checkpoint_period: int):
        self.output_dir = output_dir
        self.period = checkpoint_period

    def after_step(self):
        iteration = self.trainer.iter
        if not comm.is_main_process() or (iteration + 1) % self.period != 0:
            return
        offsets = _read_offsets(self.output_dir)
        offsets[str(iteration)] = _sizes(self.output_dir)
        _write_offsets(self.output_dir, offsets)


def checkpoint_iteration(path: str) -> int:
    """The iteration a checkpoint was saved at: from its name ``model_%07d.pth``, else from the
    file (the trainer's ``iteration``)."""
    match = re.fullmatch(r"model_(\d+)\.pth", os.path.basename(path))
    if match:
        return int(match[1])
    return int(torch.load(path, map_location="cpu", weights_only=False).get("iteration", -1))


def _last_checkpoint(output_dir):
    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        name = f.read().strip()
    return os.path.join(output_dir, name) if name else None


def _trim_metrics_by_iteration(path, iteration):
    """Keep the metrics.json records of iterations <= ``iteration`` (files from runs without
    log_offsets.json); returns how many were removed."""
    with open(path) as f:
        lines = f.readlines()
    kept = [line for line in lines if json.loads(line).get("iteration", -1) <= iteration]
    with open(path, "w") as f:
        f.writelines(kept)
    return len(lines) - len(kept)


def trim_logs_for_resume(output_dir: str):
    """Before a resumed run writes anything: cut log.txt and metrics.json in ``output_dir`` back
    to where they stood after the iteration of the checkpoint that will be loaded, and note it at
    the end of log.txt. Returns that iteration, or None when there is no checkpoint (then nothing
    is touched)."""
    checkpoint = _last_checkpoint(output_dir)
    if checkpoint is None or not os.path.isfile(checkpoint):
        return None
    iteration = checkpoint_iteration(checkpoint)
    offsets = _read_offsets(output_dir)
    recorded = offsets.get(str(iteration))
    removed = {}
    for name in LOG_FILES:
        path = os.path.join(output_dir, name)
        if not os.path.isfile(path):
            continue
        size = os.path.getsize(path)
        if recorded is not None and name in recorded:
            if recorded[name] < size:
                with open(path, "r+b") as f:
                    f.truncate(recorded[name])
                removed[name] = f"{size - recorded[name]} bytes"
        elif name == "metrics.json":
            removed[name] = f"{_trim_metrics_by_iteration(path, iteration)} records"
    if recorded is not None:
        offsets = {k: v for k, v in offsets.items() if int(k) <= iteration}
        _write_offsets(output_dir, offsets)
    note = (
        f"[wsod_d2] --resume from {os.path.basename(checkpoint)} (iteration {iteration}): what "
        f"the previous run logged after it was removed ({removed or 'nothing'})"
        if recorded is not None
        else f"[wsod_d2] --resume from {os.path.basename(checkpoint)} (iteration {iteration}): "
        "log.txt lines above this one for later iterations come from the killed run and are "
        f"superseded below (no offsets recorded; metrics.json trimmed: {removed or 'nothing'})"
    )
    with open(os.path.join(output_dir, "log.txt"), "a") as f:
        f.write(note + "\n")
    return iteration
