"""The WSOD trainer: data with proposals, VOC / COCO / CorLoc evaluators, test-time
augmentation."""
import logging
import os
from collections import OrderedDict

from detectron2.engine import hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from wsod_d2.data.progress import training_progress
from wsod_d2.data.wsod.build import (
    build_wsod_test_loader,
    build_wsod_train_loader,
    check_wsod_test_data,
)
from wsod_d2.data.wsod.gt_leak import warn_gt_leak
from wsod_d2.engine.adversarial import AdversarialTrainer
from wsod_d2.engine.base_trainer import WeakSupervisionTrainer
from wsod_d2.engine.progress import TrainingProgressHook
from wsod_d2.evaluation.build import build_wsod_evaluator
from wsod_d2.modeling.wsod.tta import WSODRCNNWithTTA, original_size_mapper
from wsod_d2.solver.build import (
    build_adversary_lr_scheduler,
    build_adversary_optimizer,
    build_optimizer,
)


class WSODTrainer(WeakSupervisionTrainer):
    @classmethod
    def check_model_and_config(cls, cfg, model):
        multi_view = cfg.INPUT.VIEWS.NUM_SCALES > 0
        if model.trains_on_views != multi_view:
            raise ValueError(
                f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} trains on "
                f"{'several views' if model.trains_on_views else 'one view'} of each image, but "
                f"INPUT.VIEWS.NUM_SCALES is {cfg.INPUT.VIEWS.NUM_SCALES}: set it to "
                f"{'>= 1 (e.g. 2 for CASD)' if model.trains_on_views else '0'}"
            )

    @classmethod
    def build_optimizer(cls, cfg, model):
        """The main optimizer, without the adversary's parameters (they have their own)."""
        exclude = model.adversary.parameters() if model.adversary is not None else ()
        return build_optimizer(cfg, model, exclude=exclude)

    @classmethod
    def build_step_trainer(cls, cfg, model, ddp_model, data_loader, optimizer):
        """With an adversary (MODEL.CDB.ENABLED), its step follows each detector step with its
        own optimizer and schedule (SOLVER.CDB; wsod_d2.engine.adversarial)."""
        if model.adversary is None:
            return super().build_step_trainer(cfg, model, ddp_model, data_loader, optimizer)
        if cfg.SOLVER.AMP.ENABLED:
            raise ValueError(
                "MODEL.CDB.ENABLED: Concrete DropBlock's adversarial step runs without AMP; set "
                "SOLVER.AMP.ENABLED False"
            )
        adversary_optimizer = build_adversary_optimizer(cfg, model.adversary)
        return AdversarialTrainer(
            ddp_model,
            data_loader,
            optimizer,
            adversary_model=model,
            adversary=model.adversary,
            adversary_optimizer=adversary_optimizer,
            adversary_scheduler=build_adversary_lr_scheduler(cfg, adversary_optimizer),
            adversary_weight=cfg.MODEL.CDB.LOSS_WEIGHT,
        )

    @classmethod
    def check_inputs(cls, cfg):
        """Also the test sets with their proposal files and images, which evaluation reads only
        after training."""
        super().check_inputs(cfg)
        check_wsod_test_data(cfg)

    def build_hooks(self):
        # The iteration reaches the train loader's workers (INPUT.PHOTOMETRIC.START_ITER).
        ret = super().build_hooks() + [TrainingProgressHook(training_progress())]
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
        warn_gt_leak(cfg, "the TTA evaluation results above")
        return results

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation on every DATASETS.TEST set, then the TEST.CASD_RELEASE_GT_LEAK
        warning after its results when that option is on."""
        results = super().test(cfg, model, evaluators=evaluators)
        warn_gt_leak(cfg, "the evaluation results above")
        return results

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
