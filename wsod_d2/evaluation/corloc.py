"""CorLoc: how often the top-scoring box of a class localizes it in the images that hold it."""

import logging
from collections import OrderedDict
from typing import Dict, Hashable, Iterable, List, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, BoxMode, pairwise_iou
from detectron2.utils import comm
from tabulate import tabulate

# class id -> (score, [x1, y1, x2, y2]) of the top-scoring predicted box of that class
TopBoxes = Dict[int, Tuple[float, List[float]]]
# class id -> (boxes (G, 4) XYXY_ABS, difficult (G,) bool) of the GT boxes of that class
ClassGroundTruth = Dict[int, Tuple[torch.Tensor, torch.Tensor]]


def top_box_per_class(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor) -> TopBoxes:
    """
    Keep the highest-scoring box of each predicted class; on equal scores the earlier box wins.

    Args:
        boxes: (R, 4) XYXY boxes.
        scores: (R,) confidences.
        classes: (R,) int class ids.
    Returns:
        {class id: (score, [x1, y1, x2, y2])}, one entry per class present in ``classes``.
    """
    if classes.numel() == 0:
        return {}
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_classes = classes[order]
    unique_classes, group = torch.unique(sorted_classes, return_inverse=True)
    positions = torch.arange(order.numel(), device=order.device)
    first = torch.full_like(unique_classes, order.numel()).scatter_reduce(
        0, group, positions, reduce="amin"
    )
    best = order[first].cpu()
    boxes, scores = boxes.detach().cpu(), scores.detach().cpu()
    return {
        int(c): (float(scores[i]), boxes[i].tolist()) for c, i in zip(unique_classes.tolist(), best)
    }


def merge_top_boxes(dst: TopBoxes, src: TopBoxes) -> None:
    """Fold ``src`` into ``dst`` in place, keeping the higher score per class (``dst`` on ties)."""
    for c, entry in src.items():
        if c not in dst or entry[0] > dst[c][0]:
            dst[c] = entry


def ground_truth_by_image(
    dataset_name: str, image_ids: Iterable[Hashable], num_classes: int
) -> Dict[Hashable, ClassGroundTruth]:
    """
    Group the GT boxes of the requested images of a registered dataset by class.

    Annotations: {"bbox", "bbox_mode", "category_id", optional "difficult" (default False)}.
    Raises KeyError for an image id the dataset does not have, ValueError for a duplicated
    image id or a category id outside [0, num_classes).
    """
    by_id = {}
    for record in DatasetCatalog.get(dataset_name):
        image_id = record["image_id"]
        if image_id in by_id:
            raise ValueError(f"Dataset '{dataset_name}' lists image_id {image_id!r} twice.")
        by_id[image_id] = record
    result = {}
    for image_id in image_ids:
        if image_id not in by_id:
            raise KeyError(f"Predicted image_id {image_id!r} is not in dataset '{dataset_name}'.")
        per_class: Dict[int, Tuple[List[List[float]], List[bool]]] = {}
        for ann in by_id[image_id].get("annotations", []):
            c = int(ann["category_id"])
            if not 0 <= c < num_classes:
                raise ValueError(
                    f"Image {image_id!r} of dataset '{dataset_name}' has category_id {c}, "
                    f"outside [0, {num_classes})."
                )
            box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            boxes, difficult = per_class.setdefault(c, ([], []))
            boxes.append([float(v) for v in box])
            difficult.append(bool(ann.get("difficult", False)))
        result[image_id] = {
            c: (torch.tensor(boxes, dtype=torch.float32), torch.tensor(difficult))
            for c, (boxes, difficult) in per_class.items()
        }
    return result


class CorLocEvaluator(DatasetEvaluator):
    """
    Correct Localization (CorLoc), the WSOD localization metric, usually on VOC07 trainval.

    For class c the evaluated images are those whose annotations hold class c. In each, only the
    top-scoring predicted box of class c is judged: a hit if its IoU with some GT box of class c
    (difficult boxes included) is >= ``iou_threshold``; no prediction of c is a miss. Predictions
    of c in images without c count nowhere. CorLoc_c = hits / images, CorLoc = mean of CorLoc_c
    over the classes that have at least one image (others are reported as NaN), in percent.

    Choices, against the public implementations (pcl.pytorch and wetectron ``dis_eval``):

    * an image whose GT boxes of c are all difficult is counted in the denominator of c, as
      there (they parse every VOC object, difficult or not); ``count_difficult_only=False``
      leaves such images out instead.
    * IoU uses detectron2's continuous convention (no +1 on widths) and a hit needs
      IoU >= threshold; the public code adds 1 pixel and needs IoU > threshold. Both shift
      results by a hair.
    * as in detectron2's COCOEvaluator, only the images given to ``process`` are evaluated.
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        iou_threshold: float = 0.5,
        count_difficult_only: bool = True,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: registered dataset with "annotations" and ``thing_classes`` metadata.
            iou_threshold: minimum IoU of the top box with a GT box of its class for a hit.
            count_difficult_only: count images whose boxes of a class are all difficult in that
                class's denominator (the pcl.pytorch / wetectron protocol).
            distributed: gather the results of all ranks to the main process.
        """
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
        self._dataset_name = dataset_name
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        self._iou_threshold = iou_threshold
        self._count_difficult_only = count_difficult_only
        self._distributed = distributed
        self._logger = logging.getLogger(__name__)
        self.reset()

    def reset(self):
        self._top_boxes: Dict[Hashable, TopBoxes] = {}

    def process(self, inputs, outputs):
        """
        Args:
            inputs: dataset dicts with "image_id".
            outputs: dicts with "instances": Instances holding pred_boxes (Boxes, XYXY in
                original image coordinates), scores (R,) and pred_classes (R,).
        """
        num_classes = len(self._class_names)
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            instances = out["instances"]
            classes = instances.pred_classes
            if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
                raise ValueError(
                    f"Image {image_id!r}: pred_classes {classes.unique().tolist()} fall outside "
                    f"[0, {num_classes}) for dataset '{self._dataset_name}'."
                )
            top = top_box_per_class(instances.pred_boxes.tensor, instances.scores, classes)
            merge_top_boxes(self._top_boxes.setdefault(image_id, {}), top)

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(self._top_boxes, dst=0)
            if not comm.is_main_process():
                return {}
        else:
            parts = [self._top_boxes]
        top_boxes: Dict[Hashable, TopBoxes] = {}
        for part in parts:
            for image_id, per_class in part.items():
                merge_top_boxes(top_boxes.setdefault(image_id, {}), per_class)
        if not top_boxes:
            self._logger.warning("[CorLocEvaluator] Did not receive any image to evaluate.")
            return {}

        num_classes = len(self._class_names)
        hits = np.zeros(num_classes, dtype=np.int64)
        images = np.zeros(num_classes, dtype=np.int64)
        ground_truth = ground_truth_by_image(self._dataset_name, top_boxes.keys(), num_classes)
        for image_id, per_class_gt in ground_truth.items():
            for c, (gt_boxes, difficult) in per_class_gt.items():
                if not self._count_difficult_only and bool(difficult.all()):
                    continue
                images[c] += 1
                if c in top_boxes[image_id]:
                    box = torch.tensor([top_boxes[image_id][c][1]], dtype=torch.float32)
                    iou = pairwise_iou(Boxes(box), Boxes(gt_boxes)).max()
                    hits[c] += int(iou >= self._iou_threshold)

        has_images = images > 0
        corloc = np.full(num_classes, np.nan)
        corloc[has_images] = 100.0 * hits[has_images] / images[has_images]
        if not has_images.any():
            self._logger.warning("[CorLocEvaluator] No GT box in the evaluated images.")
        mean = float(corloc[has_images].mean()) if has_images.any() else float("nan")
        self._log_table(corloc, hits, images, mean)

        results = OrderedDict({"CorLoc": mean})
        for name, value in zip(self._class_names, corloc):
            results[f"CorLoc-{name}"] = float(value)
        return OrderedDict({"corloc": results})

    def _log_table(self, corloc: np.ndarray, hits: np.ndarray, images: np.ndarray, mean: float):
        rows = list(zip(self._class_names, corloc.tolist(), hits.tolist(), images.tolist()))
        table = tabulate(
            rows,
            headers=["category", "CorLoc", "hits", "images"],
            tablefmt="pipe",
            floatfmt=".2f",
            numalign="left",
        )
        self._logger.info(
            f"CorLoc (IoU >= {self._iou_threshold}) on {self._dataset_name}: {mean:.2f}\n{table}"
        )
