"""The WSOD trainer: detectron2's DefaultTrainer with WSOD data, evaluators and CPU DDP."""
import logging
import os
import weakref
from collections import OrderedDict

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.data import MetadataCatalog
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from wsod_d2.data.wsod.build import build_wsod_test_loader, build_wsod_train_loader
from wsod_d2.evaluation.corloc import CorLocEvaluator
from wsod_d2.modeling.checkpoint import WSODCheckpointer
from wsod_d2.solver.build import build_optimizer
from wsod_d2.modeling.wsod.tta import WSODRCNNWithTTA, original_size_mapper
from wsod_d2.utils.env import has_detectron2_ops

DEFAULT_EVALUATORS = {"pascal_voc": ["voc", "corloc"], "coco": ["coco", "corloc"]}


def create_ddp_model(model, **kwargs):
    """DistributedDataParallel when there are several processes, on GPU or CPU."""
    if comm.get_world_size() == 1:
        return model
    if model.device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


def build_wsod_evaluator(cfg, dataset_name, output_folder=None):
    kinds = list(cfg.TEST.EVALUATORS) or DEFAULT_EVALUATORS.get(
        MetadataCatalog.get(dataset_name).get("evaluator_type"), ["corloc"]
    )
    builders = {
        "voc": lambda: PascalVOCDetectionEvaluator(dataset_name),
        "coco": lambda: COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_detectron2_ops()
        ),
        "corloc": lambda: CorLocEvaluator(
            dataset_name,
            iou_threshold=cfg.TEST.CORLOC_IOU,
            count_difficult_only=cfg.TEST.CORLOC_COUNT_DIFFICULT_ONLY,
        ),
    }
    unknown = [k for k in kinds if k not in builders]
    if unknown:
        raise ValueError(f"TEST.EVALUATORS: unknown {unknown}; choose from {sorted(builders)}")
    return DatasetEvaluators([builders[k]() for k in kinds])


class WSODTrainer(DefaultTrainer):
    def __init__(self, cfg):
        # DefaultTrainer.__init__, except that DDP also wraps CPU models and the checkpointer
        # also reads ImageNet VGG16 files.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = WSODCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        ret = super().build_hooks()
        if self.cfg.TEST.AUG.ENABLED:
            # Period 0: once, after training, as detectron2's projects do.
            ret.append(hooks.EvalHook(0, lambda: self.test_with_TTA(self.cfg, self.model)))
        return ret

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate ``model`` with test-time augmentation (TEST.AUG) on every DATASETS.TEST set;
        results keyed "<dataset>_TTA"."""
        logger = logging.getLogger("detectron2.trainer")
        logger.info("Running inference with test-time augmentation ...")
        tta_model = WSODRCNNWithTTA(cfg, model)
        mapper = original_size_mapper(cfg)
        results = OrderedDict()
        for name in cfg.DATASETS.TEST:
            loader = build_wsod_test_loader(cfg, name, mapper=mapper)
            folder = os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            evaluator = cls.build_evaluator(cfg, name, output_folder=folder)
            results[name + "_TTA"] = inference_on_dataset(tta_model, loader, evaluator)
            if comm.is_main_process():
                logger.info(f"Evaluation results for {name} with TTA in csv format:")
                print_csv_format(results[name + "_TTA"])
        return results

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_wsod_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_wsod_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_wsod_evaluator(cfg, dataset_name, output_folder)
