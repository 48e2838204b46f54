"""The hook that tells the data loader's workers the training iteration (wsod_d2.data.progress)."""
from detectron2.engine import HookBase

from wsod_d2.data.progress import TrainingProgress

__all__ = ["TrainingProgressHook"]


class TrainingProgressHook(HookBase):
    """Writes the trainer's iteration into ``progress`` before each step, ahead of the step's
    batch; the first step's is the start iteration, a resumed one included, written before the
    loader's workers start (at the first batch, wsod_d2.data.progress.DeferredLoader)."""

    def __init__(self, progress: TrainingProgress):
        self.progress = progress

    def before_step(self):
        self.progress.set_iteration(self.trainer.iter)
