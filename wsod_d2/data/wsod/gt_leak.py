"""TEST.CASD_RELEASE_GT_LEAK: ground-truth boxes among the test proposals, as in CASD's released
evaluation. A defect reproduced on request, to measure what the released number owes to it; never
a valid result.

The release (``lib/datasets/pascal_voc.py``, ``selective_search_roidb``) puts the non-difficult
GT boxes of each image, in annotation order, in front of its selective-search boxes, for VOC07
test as for trainval, and its test (``lib/model/test.py``, ``get_ss_boxes``) drops row 0 only: an
image with k non-difficult objects is scored on the GT boxes of objects 2..k plus the proposals.
Those rows skip the proposals' min-size and de-duplication filter (the release filters the
selective-search boxes before the merge); here they go in front of the proposals the mapper has
already filtered and cut to the top k. (With k = 0 the release drops its first selective-search
box instead; here nothing changes.)
"""
import logging
from typing import Tuple

import numpy as np
from detectron2.structures import BoxMode

__all__ = [
    "GT_LEAK_KEY",
    "gt_leak_from_config",
    "leaked_gt_boxes",
    "prepend_leaked_gt",
    "refuse_gt_leak",
    "warn_gt_leak",
]

logger = logging.getLogger(__name__)

GT_LEAK_KEY = "TEST.CASD_RELEASE_GT_LEAK"


def refuse_gt_leak(cfg, use: str):
    """ValueError when the leak is on for ``use``, a path whose output trains a model."""
    if cfg.TEST.CASD_RELEASE_GT_LEAK:
        raise ValueError(
            f"{GT_LEAK_KEY} is True while {use}: the option puts ground-truth boxes among the "
            "proposals, for evaluating a trained model only (e.g. train_net.py --eval-only); set "
            f"{GT_LEAK_KEY} False here"
        )


def warn_gt_leak(cfg, where: str):
    """When the leak is on, log that the numbers include ground truth; ``where``: the use."""
    if cfg.TEST.CASD_RELEASE_GT_LEAK:
        logger.warning(
            f"{GT_LEAK_KEY} is True ({where}): the test proposals INCLUDE GROUND-TRUTH BOXES (the "
            "non-difficult GT boxes of each image but the first), so the reported numbers "
            "include ground truth: a defect of CASD's released evaluation, reproduced for "
            "like-with-like comparison only; not a valid result"
        )


def gt_leak_from_config(cfg, is_train: bool) -> bool:
    """Whether a mapper built for ``is_train`` leaks; training data refuses the option."""
    if is_train:
        refuse_gt_leak(cfg, "building a training data mapper")
    return bool(cfg.TEST.CASD_RELEASE_GT_LEAK)


def leaked_gt_boxes(dataset_dict) -> np.ndarray:
    """(k - 1, 4) XYXY in the original image: the boxes of the image's k non-difficult objects
    but the first, in annotation order; (0, 4) when k <= 1."""
    annotations = dataset_dict.get("annotations")
    if annotations is None:
        raise ValueError(
            f"{GT_LEAK_KEY}: the test dict of image {dataset_dict.get('image_id')} "
            f"({dataset_dict.get('file_name')}) has no 'annotations', whose GT boxes the option "
            "puts among the proposals"
        )
    boxes = [
        BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in annotations
        if not a.get("difficult", False)
    ]
    return np.asarray(boxes[1:], dtype=np.float32).reshape(-1, 4)


def prepend_leaked_gt(
    dataset_dict, boxes: np.ndarray, logits: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`leaked_gt_boxes` in front of proposals boxes (N, 4) and logits (N,), original
    coordinates. The GT rows take the image's highest logit, so that a stable re-sort by
    objectness would keep them in front."""
    gt = leaked_gt_boxes(dataset_dict)
    if len(gt) == 0:
        return boxes, logits
    gt_logits = np.full(len(gt), logits.max() if len(logits) else 0.0, dtype=logits.dtype)
    return np.concatenate([gt, boxes.astype(np.float32)]), np.concatenate([gt_logits, logits])
