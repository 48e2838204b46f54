"""The WSOL classifier's evaluators for one test set, by TEST.EVALUATORS or the dataset's type."""
from typing import Dict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators

from wsod_d2.evaluation.multilabel import VOCClassificationEvaluator
from wsod_d2.evaluation.wsol.evaluators import PxAPEvaluator, WSOLEvaluator

# Evaluators by the dataset's evaluator_type when TEST.EVALUATORS is empty.
DEFAULT_WSOL_EVALUATORS = {
    "wsol_box": ["wsol"],
    "wsol_mask": ["pxap"],
    "pascal_voc": ["voc_cls"],
}


def build_wsol_evaluator(cfg, dataset_name: str) -> DatasetEvaluators:
    """
    TEST.EVALUATORS kinds, or by the dataset's evaluator_type (wsol_box: "wsol", wsol_mask:
    "pxap", pascal_voc: "voc_cls"): "wsol" (MaxBoxAccV2, Top-1 Loc, size bins...), "pxap",
    "voc_cls" (multi-label mAP).
    """
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    kinds = list(cfg.TEST.EVALUATORS) or DEFAULT_WSOL_EVALUATORS.get(evaluator_type)
    if not kinds:
        raise ValueError(
            f"dataset {dataset_name} has evaluator_type {evaluator_type!r} with no default WSOL "
            "evaluator; set TEST.EVALUATORS to some of wsol, pxap, voc_cls"
        )
    builders = _evaluator_builders(cfg, dataset_name)
    unknown = [k for k in kinds if k not in builders]
    if unknown:
        raise ValueError(f"TEST.EVALUATORS: unknown {unknown}; choose from {sorted(builders)}")
    return DatasetEvaluators([builders[k]() for k in kinds])


def _evaluator_builders(cfg, dataset_name: str) -> Dict:
    cam_thresholds = np.arange(0, 1, cfg.TEST.WSOL.CAM_CURVE_INTERVAL)
    eval_size = tuple(cfg.TEST.WSOL.EVAL_SIZE) or None
    return {
        "wsol": lambda: WSOLEvaluator(
            dataset_name,
            iou_thresholds=cfg.TEST.WSOL.IOU_THRESHOLDS,
            cam_thresholds=cam_thresholds,
            multi_contour=cfg.TEST.WSOL.MULTI_CONTOUR,
            size_bins=cfg.TEST.WSOL.SIZE_BINS,
            top_k=cfg.TEST.WSOL.TOP_K,
            eval_size=eval_size,
            num_workers=cfg.TEST.WSOL.NUM_WORKERS,
        ),
        "pxap": lambda: PxAPEvaluator(
            dataset_name, cam_thresholds=cam_thresholds, eval_size=eval_size
        ),
        "voc_cls": lambda: VOCClassificationEvaluator(dataset_name),
    }
