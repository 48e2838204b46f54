"""Multi-label image classification mAP (the VOC classification task) from image-level scores."""

import logging
from collections import OrderedDict
from typing import Dict, Hashable

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from wsod_d2.evaluation.corloc import ground_truth_by_image


def voc_classification_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """
    Per-class non-interpolated average precision: the mean, over the positives, of the
    precision of the ranked list cut at that positive.

    Ties: images with equal scores form one block of the ranking, and every positive in it gets
    the precision at the end of the block (as sklearn's ``average_precision_score``), so the
    result does not depend on the input order.

    Args:
        scores: (N, C) class scores, any monotone scale, higher = more confident.
        labels: (N, C) in {1: positive, 0: negative, -1: ignored (left out of that class)}.
    Returns:
        (C,) AP in [0, 1]; NaN for a class without positives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must both be (N, C); got {scores.shape} and {labels.shape}."
        )
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN.")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError(f"labels must be in {{1, 0, -1}}; got values {np.unique(labels)}.")
    ap = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        kept = labels[:, c] != -1
        order = np.argsort(-scores[kept, c], kind="stable")
        ranked_scores = scores[kept, c][order]
        positive = labels[kept, c][order] == 1
        num_positives = positive.sum()
        if num_positives == 0:
            continue
        changes = np.flatnonzero(ranked_scores[1:] != ranked_scores[:-1])
        block_end = np.append(changes, ranked_scores.size - 1)
        true_positives = np.cumsum(positive)[block_end]
        precision = true_positives / (block_end + 1)
        positives_in_block = np.diff(true_positives, prepend=0)
        ap[c] = float((positives_in_block * precision).sum() / num_positives)
    return ap


class VOCClassificationEvaluator(DatasetEvaluator):
    """
    Multi-label classification mAP (percent) of image-level class scores.

    Labels come from the dataset annotations: class c is positive for an image with a
    non-difficult instance of c, ignored for an image whose instances of c are all difficult,
    negative otherwise. AP per class by :func:`voc_classification_ap` (non-interpolated), mAP
    over the classes with at least one positive (others are reported as NaN). As in
    detectron2's COCOEvaluator, only the images given to ``process`` are evaluated.
    """

    def __init__(self, dataset_name: str, *, distributed: bool = True):
        """
        Args:
            dataset_name: registered dataset with "annotations" and ``thing_classes`` metadata.
            distributed: gather the results of all ranks to the main process.
        """
        self._dataset_name = dataset_name
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        self._distributed = distributed
        self._logger = logging.getLogger(__name__)
        self.reset()

    def reset(self):
        self._scores: Dict[Hashable, np.ndarray] = {}

    def process(self, inputs, outputs):
        """
        Args:
            inputs: dataset dicts with "image_id".
            outputs: dicts with "image_scores": (C,) class scores of the image.
        """
        num_classes = len(self._class_names)
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            scores = out["image_scores"]
            if not isinstance(scores, torch.Tensor) or scores.shape != (num_classes,):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores)
                raise ValueError(
                    f"Image {image_id!r}: image_scores must be a tensor of shape ({num_classes},) "
                    f"for dataset '{self._dataset_name}', got {shape}."
                )
            self._scores[image_id] = scores.detach().to("cpu", torch.float64).numpy()

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(self._scores, dst=0)
            if not comm.is_main_process():
                return {}
        else:
            parts = [self._scores]
        all_scores: Dict[Hashable, np.ndarray] = {}
        for part in parts:
            all_scores.update(part)
        if not all_scores:
            self._logger.warning("[VOCClassificationEvaluator] Did not receive any image scores.")
            return {}

        num_classes = len(self._class_names)
        image_ids = list(all_scores)
        ground_truth = ground_truth_by_image(self._dataset_name, image_ids, num_classes)
        labels = np.zeros((len(image_ids), num_classes), dtype=np.int64)
        for row, image_id in enumerate(image_ids):
            for c, (_, difficult) in ground_truth[image_id].items():
                labels[row, c] = 1 if bool((~difficult).any()) else -1
        scores = np.stack([all_scores[i] for i in image_ids])

        ap = 100.0 * voc_classification_ap(scores, labels)
        has_positives = ~np.isnan(ap)
        mean = float(ap[has_positives].mean()) if has_positives.any() else float("nan")
        self._log_table(ap, labels, mean)

        results = OrderedDict({"mAP": mean})
        for name, value in zip(self._class_names, ap):
            results[f"AP-{name}"] = float(value)
        return OrderedDict({"cls": results})

    def _log_table(self, ap: np.ndarray, labels: np.ndarray, mean: float):
        counts = (labels == 1).sum(0).tolist(), (labels == -1).sum(0).tolist()
        rows = zip(self._class_names, ap.tolist(), *counts)
        table = tabulate(
            list(rows),
            headers=["category", "AP", "positives", "ignored"],
            tablefmt="pipe",
            floatfmt=".2f",
            numalign="left",
        )
        self._logger.info(f"Classification mAP on {self._dataset_name}: {mean:.2f}\n{table}")
