"""What the WSOD and WSOL trainers share: detectron2's DefaultTrainer, except that DDP also wraps
CPU models (several gloo processes), the checkpointer also reads ImageNet files, and the optimizer
is wsod_d2's one builder, and metrics.json is strict JSON (an undefined metric is null, not NaN)."""
import logging
import os
import tempfile
import weakref

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, TensorboardXWriter
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from wsod_d2.engine.resume import LogOffsetsHook
from wsod_d2.modeling.checkpoint import WSODCheckpointer
from wsod_d2.solver.build import build_optimizer
from wsod_d2.utils.env import check_environment
from wsod_d2.utils.strict_json import StrictJSONWriter


def create_ddp_model(model, **kwargs):
    """DistributedDataParallel when there are several processes, on GPU or CPU."""
    if comm.get_world_size() == 1:
        return model
    if model.device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


class WeakSupervisionTrainer(DefaultTrainer):
    """The shared base of :class:`WSODTrainer` and :class:`WSOLTrainer`; each sibling supplies
    its loaders and evaluators."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__ with create_ddp_model and WSODCheckpointer.
        check_environment()
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        self.check_model_and_config(cfg, model)
        self.check_inputs(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        ddp_model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = self.build_step_trainer(cfg, model, ddp_model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = WSODCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        # Last, after the writers: what a resume from each checkpoint trims the logs back to.
        offsets = LogOffsetsHook(cfg.OUTPUT_DIR, cfg.SOLVER.CHECKPOINT_PERIOD)
        self.register_hooks(self.build_hooks() + [offsets])

    @classmethod
    def build_step_trainer(cls, cfg, model, ddp_model, data_loader, optimizer):
        """What runs one iteration: detectron2's SimpleTrainer (AMPTrainer with SOLVER.AMP)
        over ``ddp_model``, the DDP-wrapped ``model``."""
        return (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            ddp_model, data_loader, optimizer
        )

    @classmethod
    def check_model_and_config(cls, cfg, model):
        """Rules across config keys and the model that the training run needs, checked before
        the first iteration; raises ValueError naming the keys. Default: none."""

    def build_writers(self):
        """detectron2's default writers, with metrics.json in strict JSON."""
        return [
            CommonMetricPrinter(self.max_iter),
            StrictJSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
            TensorboardXWriter(self.cfg.OUTPUT_DIR),
        ]

    @classmethod
    def check_inputs(cls, cfg):
        """What the run will read or write besides the training data (which building the train
        loader checks), checked before the first iteration. Here: OUTPUT_DIR is writable."""
        try:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            with tempfile.TemporaryFile(dir=cfg.OUTPUT_DIR):
                pass
        except OSError as e:
            raise ValueError(
                f"OUTPUT_DIR {cfg.OUTPUT_DIR} is not a writable folder ({e}); set OUTPUT_DIR to "
                "one where checkpoints and logs can be written"
            ) from e

    @classmethod
    def test_with_TTA(cls, cfg, model):
        raise ValueError(
            f"TEST.AUG.ENABLED: test-time augmentation is defined for WSOD detectors only, not "
            f"for {cfg.MODEL.META_ARCHITECTURE} ({cls.__name__}); set TEST.AUG.ENABLED False"
        )

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)
