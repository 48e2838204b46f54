"""The trainer's iteration reaches the train loader's workers: the hook writes it before training
and each step, and the deferred loader starts its workers only at the first batch, so a resumed
run's first batch is mapped knowing the resumed iteration."""
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.engine import TrainerBase

from wsod_d2 import add_wsod_config
from wsod_d2.data.progress import DeferredLoader, TrainingProgress, training_progress
from wsod_d2.data.wsod.photometric import build_photometric_augmentation, distort
from wsod_d2.engine.progress import TrainingProgressHook


class StepTrainer(TrainerBase):
    """SimpleTrainer's data handling: iter() on the loader at construction, a batch per step."""

    def __init__(self, loader, progress):
        super().__init__()
        self._data = iter(loader)
        self.progress = progress
        self.seen = []
        self.register_hooks([TrainingProgressHook(progress)])

    def run_step(self):
        self.seen.append((self.progress.iteration, next(self._data)))


def test_hook_writes_the_start_and_each_iteration():
    progress = TrainingProgress()
    trainer = StepTrainer(DeferredLoader(range(100)), progress)
    trainer.train(5, 8)  # as a resume from iteration 5
    assert [it for it, _ in trainer.seen] == [5, 6, 7]


def test_deferred_loader_starts_at_the_first_batch():
    started = []

    def batches():
        started.append(True)
        yield from range(3)

    loader = DeferredLoader(type("Loader", (), {"__iter__": lambda self: batches()})())
    it = iter(loader)
    assert not started
    assert next(it) == 0 and started == [True]


class Distorted(torch.utils.data.IterableDataset):
    """Endless flat images through ``augmentations``: True where one came out distorted."""

    def __init__(self, augmentations):
        self.augmentations = augmentations

    def __iter__(self):
        image = np.full((3, 3, 3), 100, np.uint8)
        while True:
            yield not np.array_equal(distort(self.augmentations, image), image)


def test_resumed_run_distorts_its_first_batch():
    """START_ITER 5, resumed at 5, loader workers (2): the very first batch is distorted."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    p = cfg.INPUT.PHOTOMETRIC
    p.ENABLED, p.STYLE, p.PROB, p.START_ITER = True, "ssd", 1.0, 5
    augs = T.AugmentationList(build_photometric_augmentation(cfg, True))
    progress = training_progress()
    progress.set_iteration(0)  # what a fresh process holds when the trainer is built
    loader = torch.utils.data.DataLoader(Distorted(augs), batch_size=None, num_workers=2)
    trainer = StepTrainer(DeferredLoader(loader), progress)
    time.sleep(0.5)  # a resume loads its checkpoint here; started workers would map meanwhile
    try:
        trainer.train(5, 7)
    finally:
        progress.set_iteration(0)
    assert trainer.seen == [(5, True), (6, True)]
