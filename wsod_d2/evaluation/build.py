"""The detector's evaluators for one test set, by TEST.EVALUATORS or the dataset's type.

Result keys (tasks), one per evaluator kind, so that any kinds run together: "bbox" (VOC mAP:
AP, AP50, AP75, from detectron2's PascalVOCDetectionEvaluator), "coco_bbox" (COCO AP: AP, AP50,
AP75, APs, APm, APl, AP-<class>) and "corloc" (CorLoc, CorLoc-<class>). With an output folder,
the predictions and the results are also saved there (wsod_d2.evaluation.predictions).
"""
import os

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, PascalVOCDetectionEvaluator

from wsod_d2.evaluation.corloc import CorLocEvaluator
from wsod_d2.evaluation.predictions import (
    RESULTS_FILE,
    EvaluatorsWithResultsFile,
    PredictionsWriter,
    PrefixedTasks,
)
from wsod_d2.utils.env import has_detectron2_ops

# Evaluators by the dataset's evaluator_type when TEST.EVALUATORS is empty.
DEFAULT_EVALUATORS = {"pascal_voc": ["voc", "corloc"], "coco": ["coco", "corloc"]}
# Prefix of the COCO evaluator's tasks ("bbox" -> "coco_bbox"): VOC keeps detectron2's "bbox".
COCO_TASK_PREFIX = "coco_"


def build_coco_evaluator(dataset_name: str, output_folder=None) -> COCOEvaluator:
    """detectron2's COCOEvaluator, which saves no file of its own (PredictionsWriter does). A
    dataset without a COCO json is converted once to ``<output_folder>/<dataset>_coco_format.json``
    (detectron2's own conversion and cache path)."""
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "json_file"):
        if output_folder is None:
            raise ValueError(
                f"TEST.EVALUATORS 'coco' on {dataset_name}, which has no COCO json: its conversion "
                "needs an output folder"
            )
        path = os.path.join(output_folder, f"{dataset_name}_coco_format.json")
        convert_to_coco_json(dataset_name, path)
        meta.json_file = path
    return COCOEvaluator(dataset_name, output_dir=None, use_fast_impl=has_detectron2_ops())


def build_wsod_evaluator(cfg, dataset_name: str, output_folder=None) -> DatasetEvaluators:
    """TEST.EVALUATORS kinds ("voc", "coco", "corloc"), or by the dataset's evaluator_type
    (pascal_voc: voc + corloc, coco: coco + corloc, other: corloc). With ``output_folder``, the
    detections and the results are saved there."""
    kinds = list(cfg.TEST.EVALUATORS) or DEFAULT_EVALUATORS.get(
        MetadataCatalog.get(dataset_name).get("evaluator_type"), ["corloc"]
    )
    builders = {
        "voc": lambda: PascalVOCDetectionEvaluator(dataset_name),
        "coco": lambda: PrefixedTasks(
            build_coco_evaluator(dataset_name, output_folder), COCO_TASK_PREFIX
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
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"TEST.EVALUATORS: {kinds} names an evaluator twice")
    evaluators = [builders[k]() for k in kinds]
    if output_folder is None:
        return DatasetEvaluators(evaluators)
    evaluators.append(PredictionsWriter(dataset_name, output_folder))
    return EvaluatorsWithResultsFile(evaluators, os.path.join(output_folder, RESULTS_FILE))
