"""The detector's evaluators for one test set, by TEST.EVALUATORS or the dataset's type."""
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, PascalVOCDetectionEvaluator

from wsod_d2.evaluation.corloc import CorLocEvaluator
from wsod_d2.utils.env import has_detectron2_ops

# Evaluators by the dataset's evaluator_type when TEST.EVALUATORS is empty.
DEFAULT_EVALUATORS = {"pascal_voc": ["voc", "corloc"], "coco": ["coco", "corloc"]}


def build_wsod_evaluator(cfg, dataset_name: str, output_folder=None) -> DatasetEvaluators:
    """TEST.EVALUATORS kinds ("voc", "coco", "corloc"), or by the dataset's evaluator_type
    (pascal_voc: voc + corloc, coco: coco + corloc, other: corloc)."""
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
