"""The training iteration, readable by the data loader's worker processes, so that a mapper can
change what it does from some iteration on (INPUT.PHOTOMETRIC.START_ITER).

:func:`training_progress` is this process's :class:`TrainingProgress`, one int64 in shared
memory, made in the main process. A mapper keeps a reference to it; the DataLoader hands the
mapper to its workers by fork (the shared pages are inherited) or by pickling (spawn,
forkserver: torch's reductions send the shared storage, not a copy), so every worker reads the
memory that the trainer's hook (``wsod_d2.engine.progress.TrainingProgressHook``) writes before
each step. The train loader is a :class:`DeferredLoader`: its workers start at the first batch,
after that hook has written the (possibly resumed) start iteration, not when detectron2's
SimpleTrainer calls iter() on it at construction.

How late a change is seen: images are mapped ahead of the step that consumes them. With
aspect-ratio grouping (DATALOADER.ASPECT_RATIO_GROUPING, detectron2's default) an image may wait in
its orientation's bucket for batch mates; and each of N = DATALOADER.NUM_WORKERS workers maps up to
prefetch_factor (torch's default 2, which detectron2 keeps) loader items ahead: 2N images with
grouping (about 2N / images per step and process iterations), 2N batches (iterations) without.
With N = 0 only the bucket wait remains and runs are reproducible; with workers, where the switch
falls within that window depends on timing, so the images near it (and the workers' random draws
after it) may differ between reruns.
"""
from typing import Iterable, Optional

import torch

__all__ = ["DeferredLoader", "TrainingProgress", "training_progress"]


class TrainingProgress:
    """The current training iteration (0-based, as detectron2 counts), in shared memory."""

    def __init__(self):
        self._iteration = torch.zeros(1, dtype=torch.long).share_memory_()

    @property
    def iteration(self) -> int:
        return int(self._iteration[0])

    def set_iteration(self, iteration: int):
        self._iteration[0] = iteration


_PROGRESS: Optional[TrainingProgress] = None


def training_progress() -> TrainingProgress:
    """This process's progress, made on first use (call it in the main process, before the
    loader's workers start; they use the mapper's reference, never this function)."""
    global _PROGRESS
    if _PROGRESS is None:
        _PROGRESS = TrainingProgress()
    return _PROGRESS


class DeferredLoader:
    """Iterates over ``loader``, starting it (and its worker processes) when the first batch is
    asked for rather than when iter() is called."""

    def __init__(self, loader: Iterable):
        self.loader = loader

    def __iter__(self):
        yield from self.loader
