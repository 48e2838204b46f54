"""The hook that tells the data loader's workers the training iteration (wsod_d2.data.progress)."""
from detectron2.engine import HookBase

from wsod_d2.data.progress import TrainingProgress

__all__ = ["TrainingProgressHook"]


class TrainingProgressHook(HookBase):
    """Writes the trainer's iteration into ``progress`` before training (the start iteration,
    a resumed one included) and before each step, ahead of the step's batch."""

    def __init__(self, progress: TrainingProgress):
        self.progress = progress

    def before_train(self):
        self.progress.set_iteration(self.trainer.iter)

    def before_step(self):
        self.progress.set_iteration(self.trainer.iter)
