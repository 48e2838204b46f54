"""The WSOL trainer, for classification-with-maps models (WSOLClassifier): data without
proposals, batched testing (TEST.WSOL.IMS_PER_BATCH), WSOL / PxAP / multi-label evaluators."""
from wsod_d2.data.wsol.build import build_wsol_test_loader, build_wsol_train_loader
from wsod_d2.engine.base_trainer import WeakSupervisionTrainer
from wsod_d2.evaluation.wsol.build import build_wsol_evaluator


class WSOLTrainer(WeakSupervisionTrainer):
    @classmethod
    def build_train_loader(cls, cfg):
        return build_wsol_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_wsol_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_wsol_evaluator(cfg, dataset_name)
