"""
detectron2 evaluators of the WSOL metrics in ``metrics.py``: ``WSOLEvaluator`` (MaxBoxAcc,
MaxBoxAccV2, GT-known / Top-1 / Top-k Loc, size bins) and ``PxAPEvaluator`` (PxAP against masks).

They turn model outputs and dataset dicts into the accumulators' inputs (score maps resized
bicubically and min-max normalised as the reference, GT boxes and masks on the same grid) and
gather the accumulators of all processes. Grid: the evaluators work at the original image size by
default; ``eval_size`` rescales maps and boxes to a fixed grid (the reference's (224, 224)) with
the reference's box rounding.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from PIL import Image

from wsod_d2.evaluation.wsol.metrics import (
    DEFAULT_CAM_THRESHOLDS,
    DEFAULT_IOU_THRESHOLDS,
    DEFAULT_SIZE_BINS,
    BoxAccumulator,
    PxAPAccumulator,
    normalize_scoremap,
    resize_boxes,
    resize_scoremap,
)
from wsod_d2.evaluation.wsol.pool import BoxJob, BoxMetricPool, accumulate_boxes, available_cores

__all__ = ["PxAPEvaluator", "WSOLEvaluator"]

logger = logging.getLogger(__name__)


class _DatasetRecords:
    """Dataset dicts of a registered dataset by image id, loaded on first use."""

    def __init__(self, dataset_name: str):
        self.dataset_name = dataset_name
        self._by_id: Optional[Dict[Any, Dict[str, Any]]] = None

    def get(self, image_id: Any) -> Dict[str, Any]:
        if self._by_id is None:
            self._by_id = {r["image_id"]: r for r in DatasetCatalog.get(self.dataset_name)}
        if image_id not in self._by_id:
            raise KeyError(f"image_id {image_id!r} is not in dataset '{self.dataset_name}'.")
        return self._by_id[image_id]

    def with_key(self, inputs: Dict[str, Any], key: str) -> Dict[str, Any]:
        """``inputs`` if it holds ``key`` (test-time mappers drop annotations), else its record."""
        return inputs if key in inputs else self.get(inputs["image_id"])


def _cam_array(cam: torch.Tensor, image_id: Any) -> np.ndarray:
    """Model localisation map -> (h, w) float64 numpy, checked."""
    cam = cam.detach().to("cpu", torch.float64).numpy()
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"Image {image_id!r}: 'cam' must be a non-empty (H, W), got {cam.shape}.")
    return cam


def _gt_classes(image_labels: Any, annotations: List[Dict[str, Any]]) -> set:
    """GT class ids: from a (C,) multi-hot tensor (the mapper's), a list of ids, or the boxes."""
    if isinstance(image_labels, torch.Tensor):
        return set(torch.nonzero(image_labels > 0).flatten().tolist())
    if image_labels is not None and len(image_labels) > 0:
        return {int(c) for c in image_labels}
    return {int(a["category_id"]) for a in annotations}


def _output(outputs: Dict[str, Any], key: str, image_id: Any) -> torch.Tensor:
    if key not in outputs:
        raise KeyError(f"Image {image_id!r}: the model outputs lack {key!r} ({sorted(outputs)}).")
    return outputs[key]


def _gather(accumulator: Any, distributed: bool) -> Optional[List[Any]]:
    """All ranks' accumulators on the main process; None on the others."""
    if not distributed:
        return [accumulator]
    comm.synchronize()
    parts = comm.gather(accumulator, dst=0)
    return parts if comm.is_main_process() else None


class WSOLEvaluator(DatasetEvaluator):
    """
    MaxBoxAcc, MaxBoxAccV2, accuracy per IoU threshold, GT-known / Top-1 / Top-k Loc and size-bin
    accuracies of localisation maps.

    Inputs: dataset dicts with "image_id", "height", "width", optional "image_labels" (class ids,
    or the mapper's (C,) multi-hot) and "annotations" ({"bbox", "bbox_mode", "category_id"}); as
    mappers drop annotations at test time, missing ones come from the registered dataset.
    Outputs: {"cam": (h, w) map of the GT class (any resolution; resized bicubically to the image
    as the reference), "image_scores": (C,) class scores}.
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        cam_thresholds: Sequence[float] = DEFAULT_CAM_THRESHOLDS,
        multi_contour: bool = True,
        size_bins: Sequence[float] = DEFAULT_SIZE_BINS,
        top_k: int = 5,
        loc_iou_threshold: float = 0.5,
        loc_cam_threshold: Optional[float] = None,
        eval_size: Optional[Tuple[int, int]] = None,
        distributed: bool = True,
        num_workers: int = 0,
    ):
        """
        Args:
            dataset_name: registered dataset, for ground truth missing from the inputs.
            iou_thresholds, cam_thresholds, multi_contour, size_bins: see ``BoxAccumulator``.
            top_k: k of Top-k Loc (a GT class among the k best scores).
            loc_iou_threshold: IoU of MaxBoxAcc (v1) and GT-known / Top-1 / Top-k Loc; must be one
                of ``iou_thresholds``.
            loc_cam_threshold: cam threshold of GT-known / Top-1 / Top-k Loc; None = the one that
                maximises GT-known.
            eval_size: (H, W) grid to evaluate on, as the reference's (224, 224); None = each
                image's own size.
            distributed: gather the accumulators of all processes in ``evaluate``.
            num_workers: processes computing each image's box metrics (``pool.py``): 0 = in this
                process, -1 = the cores available to it shared among the local ranks. The
                metrics are the same for any count.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        self._records = _DatasetRecords(dataset_name)
        self._config = dict(
            iou_thresholds=iou_thresholds,
            cam_thresholds=cam_thresholds,
            multi_contour=multi_contour,
            size_bins=size_bins,
        )
        self._top_k = int(top_k)
        self._loc_iou = loc_iou_threshold
        self._loc_cam = loc_cam_threshold
        self._eval_size = None if eval_size is None else tuple(int(s) for s in eval_size)
        self._distributed = distributed
        if num_workers < -1:
            raise ValueError(f"num_workers must be >= -1, got {num_workers}.")
        if num_workers == -1:
            num_workers = max(1, available_cores() // comm.get_local_size())
        self._num_workers = num_workers
        self._pool: Optional[BoxMetricPool] = None
        self.reset()
        if not np.isclose(self._accumulator.iou_thresholds, loc_iou_threshold).any():
            raise ValueError(
                f"loc_iou_threshold {loc_iou_threshold} must be one of iou_thresholds"
                f" {list(iou_thresholds)}."
            )

    def reset(self) -> None:
        self._accumulator = BoxAccumulator(**self._config)
        if self._pool is not None:  # a previous evaluation that stopped before evaluate()
            self._pool.close()
            self._pool = None

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            image_hw = (int(inp["height"]), int(inp["width"]))
            grid_hw = self._eval_size or image_hw
            record = self._records.with_key(inp, "annotations")
            annotations = record["annotations"]
            if not annotations:
                raise ValueError(f"Image {image_id!r} has no annotated box.")
            boxes = np.array(
                [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations],
                dtype=np.float64,
            )
            classes = _gt_classes(inp.get("image_labels", record.get("image_labels")), annotations)
            scores = _output(out, "image_scores", image_id).detach().flatten()
            ranked = torch.topk(scores, min(self._top_k, scores.numel())).indices.tolist()
            job = BoxJob(
                image_id=image_id,
                cam=_cam_array(_output(out, "cam", image_id), image_id),
                grid_hw=grid_hw,
                gt_boxes=resize_boxes(boxes, image_hw, grid_hw),
                correct_class=int(scores.argmax()) in classes,
                correct_top_k=any(c in classes for c in ranked),
            )
            if self._num_workers == 0:
                accumulate_boxes(self._config, [job], into=self._accumulator)
                continue
            if self._pool is None:  # started on the first image: workers live one evaluation
                self._pool = BoxMetricPool(self._config, self._num_workers)
            self._pool.add(job)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        if self._pool is not None:
            self._accumulator.merge(self._pool.result())
            self._pool = None
        parts = _gather(self._accumulator, self._distributed)
        if parts is None:
            return {}
        total = BoxAccumulator(**self._config)
        for part in parts:
            total.merge(part)
        if total.num_images == 0:
            logger.warning("WSOLEvaluator on '%s' received no image.", self._records.dataset_name)
            return {}
        loc = total.localization_accuracy(self._loc_iou, self._loc_cam)
        results = {
            "MaxBoxAccV2": total.max_box_acc_v2(),
            "MaxBoxAcc": total.max_box_acc_v1(self._loc_iou),
        }
        for iou, accuracy in total.max_box_acc().items():
            results[f"IoU{round(iou * 100)}"] = accuracy
        results.update(
            {
                "GT-known Loc": loc["gt_known"],
                "Top-1 Loc": loc["top1"],
                f"Top-{self._top_k} Loc": loc["top_k"],
                "Loc cam threshold": loc["cam_threshold"],
            }
        )
        for lo, hi, count, accuracy in total.size_bin_accuracy():
            results[f"size({lo:g},{hi:g}]"] = accuracy
            results[f"size({lo:g},{hi:g}] images"] = float(count)
        logger.info("WSOL results on '%s': %s", self._records.dataset_name, results)
        return {"wsol": results}


def _read_mask(path: str, grid_hw: Tuple[int, int]) -> np.ndarray:
    """Grayscale PNG -> (H, W) bool of its nonzero pixels, nearest-resized to the grid."""
    with PathManager.open(path, "rb") as f:
        mask = np.asarray(Image.open(f).convert("L"))
    if mask.shape != tuple(grid_hw):
        mask = cv2.resize(mask, (grid_hw[1], grid_hw[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


class PxAPEvaluator(DatasetEvaluator):
    """
    PxAP of localisation maps against binary masks.

    Inputs: dataset dicts with "image_id", "height", "width" and, or else from the registered
    dataset, "sem_seg_file_name" (PNG, nonzero = foreground) and optional "ignore_file_name" (PNG,
    nonzero = ignored unless foreground). Outputs: {"cam": (h, w) map of the GT class}.
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        cam_thresholds: Sequence[float] = DEFAULT_CAM_THRESHOLDS,
        eval_size: Optional[Tuple[int, int]] = None,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: registered dataset, for mask paths missing from the inputs.
            cam_thresholds: histogram bin edges, see ``PxAPAccumulator``.
            eval_size: (H, W) grid to evaluate on; None = each image's own size.
            distributed: gather the accumulators of all processes in ``evaluate``.
        """
        self._records = _DatasetRecords(dataset_name)
        self._cam_thresholds = cam_thresholds
        self._eval_size = None if eval_size is None else tuple(int(s) for s in eval_size)
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        self._accumulator = PxAPAccumulator(self._cam_thresholds)

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            grid_hw = self._eval_size or (int(inp["height"]), int(inp["width"]))
            record = self._records.with_key(inp, "sem_seg_file_name")
            mask = _read_mask(record["sem_seg_file_name"], grid_hw)
            ignore = None
            if record.get("ignore_file_name"):
                ignore = _read_mask(record["ignore_file_name"], grid_hw)
            cam = _cam_array(_output(out, "cam", image_id), image_id)
            scoremap = normalize_scoremap(resize_scoremap(cam, grid_hw))
            try:
                self._accumulator.add(scoremap, mask, ignore)
            except ValueError as e:
                raise ValueError(f"Image {image_id!r}: {e}") from e

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        parts = _gather(self._accumulator, self._distributed)
        if parts is None:
            return {}
        total = PxAPAccumulator(self._cam_thresholds)
        for part in parts:
            total.merge(part)
        try:
            pxap = total.pxap()
        except RuntimeError as e:
            logger.warning("PxAPEvaluator on '%s': %s", self._records.dataset_name, e)
            return {}
        logger.info("PxAP on '%s': %.2f", self._records.dataset_name, pxap)
        return {"pxap": {"PxAP": pxap}}
