"""Export a trained WSOD model's pseudo ground truth on its training set(s) as a COCO-format
instances JSON that detectron2's ``register_coco_instances`` loads (``tools/export_pseudo_gt.py``).

The file: "images" keep the datasets' ids, file names (as the dataset dicts give them) and sizes;
"annotations" hold XYWH boxes in the original image, "category_id" (1..C in ``thing_classes``
order for VOC-style datasets, the dataset's own ids for COCO), the detector's "score",
"iscrowd" 0; "categories" name the ids; "info" records the model, the rule and its thresholds.
"""
import logging
import os
from typing import Dict, Optional

from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.utils import comm

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.build import dataset_dicts_from_config
from wsod_d2.data.wsod.gt_leak import refuse_gt_leak
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.evaluation.pseudo_gt import PseudoGTCollector, pseudo_gt_category_ids
from wsod_d2.modeling.wsod.tta import WSODRCNNWithTTA, original_size_mapper
from wsod_d2.utils.strict_json import dump_strict

logger = logging.getLogger(__name__)

# The weak detector keeps every detection when it exports (no score floor, no top-k per image):
# the top box of a labelled class must not be cut by other classes' boxes. Command-line KEY
# VALUE overrides still apply after these.
EXPORT_OPTS = ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", -1)


def pseudo_gt_config(config_file: str, opts=()):
    """The WSOD model's config for the export: ``config_file``, EXPORT_OPTS, then ``opts``."""
    return get_wsod_cfg(config_file, [str(x) for x in EXPORT_OPTS] + list(opts))


def export_pseudo_gt(
    cfg,
    model,
    output_file: str,
    *,
    rule: str = "top1",
    score_thresh: float = 0.0,
    nms_thresh: float = 1.0,
    tta: bool = False,
    model_info: Optional[Dict] = None,
) -> Optional[Dict]:
    """
    Run ``model`` (eval mode) on every DATASETS.TRAIN set with its PROPOSAL_FILES_TRAIN at the
    test scale (or with TEST.AUG's test-time augmentation when ``tta``), keep the pseudo-GT
    boxes of each image-level class (:func:`wsod_d2.evaluation.pseudo_gt.select_pseudo_boxes`)
    and write them to ``output_file``. Image labels follow DATASETS.LABELS_FROM_DIFFICULT, as in
    training. Returns the written dict on the main process (None elsewhere).
    """
    refuse_gt_leak(cfg, "exporting pseudo ground truth (it trains a detector)")
    names = list(cfg.DATASETS.TRAIN)
    runner = WSODRCNNWithTTA(cfg, model) if tta else model
    mapper = original_size_mapper(cfg) if tta else WSODDatasetMapper(cfg, False)
    classes = None
    images, annotations, labelled, unboxed = [], [], 0, 0
    for name, proposal_file in zip(names, cfg.DATASETS.PROPOSAL_FILES_TRAIN):
        dicts = dataset_dicts_from_config(cfg, [name], [proposal_file], is_train=False)
        loader = build_detection_test_loader(
            dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
        )
        collector = PseudoGTCollector(
            name, rule=rule, score_thresh=score_thresh, nms_thresh=nms_thresh
        )
        part = inference_on_dataset(runner, loader, collector)
        these = list(zip(pseudo_gt_category_ids(name), MetadataCatalog.get(name).thing_classes))
        if classes not in (None, these):
            raise ValueError(
                f"DATASETS.TRAIN: {name} has other classes than {names[0]}; one pseudo-GT file "
                "needs one label space"
            )
        classes = these
        if comm.is_main_process():
            images += part["images"]
            annotations += part["annotations"]
            labelled += part["labelled_classes"]
            unboxed += part["unboxed_classes"]
    if not comm.is_main_process():
        return None
    seen = set()
    for image in images:
        if image["id"] in seen:
            raise ValueError(f"DATASETS.TRAIN {names}: image_id {image['id']!r} appears twice")
        seen.add(image["id"])
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
    coco = {
        "info": {
            "description": "wsod_d2 pseudo ground truth (tools/export_pseudo_gt.py)",
            "model": model_info or {},
            "datasets": names,
            "rule": rule,
            "score_thresh": score_thresh if rule == "threshold" else None,
            "nms_thresh": nms_thresh if rule == "threshold" else None,
            "tta": tta,
            "test_sizes": list(cfg.TEST.AUG.MIN_SIZES) if tta else [cfg.INPUT.MIN_SIZE_TEST],
            "labelled_classes": labelled,
            "labelled_classes_without_box": unboxed,
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in classes],
    }
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    dump_strict(coco, output_file)
    logger.info(
        f"Pseudo GT ({rule}) of {len(images)} images: {len(annotations)} boxes for {labelled} "
        f"image labels ({unboxed} without a detection) -> {output_file}"
    )
    return coco
