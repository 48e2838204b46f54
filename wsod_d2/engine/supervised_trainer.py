"""The re-training step: detectron2's own box-supervised detector (GeneralizedRCNN: its RPN and
ROI heads, unchanged, with its DatasetMapper) trained on a WSOD model's pseudo ground truth
(DATASETS.PSEUDO_GT_FILES_TRAIN) and evaluated like the WSOD detectors (VOC mAP, CorLoc, COCO)."""
import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader

from wsod_d2.data.datasets.pseudo_gt import register_pseudo_gt_datasets
from wsod_d2.engine.base_trainer import WeakSupervisionTrainer
from wsod_d2.evaluation.build import build_wsod_evaluator


class SupervisedTrainer(WeakSupervisionTrainer):
    """Trains on box annotations (no proposals); CPU DDP, checkpointer and optimizer as the WSOD
    trainers."""

    @classmethod
    def build_train_loader(cls, cfg):
        register_pseudo_gt_datasets(cfg.DATASETS.TRAIN, cfg.DATASETS.PSEUDO_GT_FILES_TRAIN)
        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_wsod_evaluator(cfg, dataset_name, output_folder)
