"""
WSOL metrics of Choe et al. (CVPR 2020, "Evaluating Weakly Supervised Object Localization Methods
Right"): MaxBoxAcc, MaxBoxAccV2 and PxAP with the exact semantics of clovaai/wsolevaluation, plus
GT-known / Top-1 / Top-k Loc (TS-CAM, SCM) and accuracy per object-size bin.

Where we follow the reference (``evaluation.py``, ``inference.py``, ``util.py``) exactly:

- resize: ``cv2.resize(cam, dsize, interpolation=cv2.INTER_CUBIC)`` on a float64 map, then
  normalise. The reference passes ``images.shape[2:]`` = (H, W) as cv2's (W, H) ``dsize``; it only
  sees square 224x224 inputs, so we pass (W, H), which is what it means.
- normalise: a NaN anywhere or a constant map gives all zeros; else ``cam -= min; cam /= max`` in
  float64 (on a copy: the reference edits its argument in place).
- binarise: ``u = uint8(map * 255)`` (truncation, in float64 as the reference casts maps first);
  a pixel is on iff ``u > int(tau * u.max())``: ``cv2.THRESH_BINARY`` is strict, so a pixel exactly
  at the threshold value is off, and an all-zero map is empty at every tau.
- boxes: ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``. RETR_TREE returns hole borders too,
  so with all contours every hole proposes a box as well. Box of a contour:
  ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]`` from ``cv2.boundingRect`` (exclusive end, then
  clipped, one pixel larger than the pixels it covers). No contour: the box [0, 0, 0, 0].
- MaxBoxAcc (v1): the contour of largest ``cv2.contourArea`` (polygon through pixel centres; the
  first one on ties), IoU >= 0.5. MaxBoxAccV2: the best IoU over the boxes of all contours, the
  mean over IoU thresholds 0.3 / 0.5 / 0.7, the cam threshold chosen per IoU threshold (max over
  tau of the accuracy over the whole data set).
- IoU: inclusive pixel boxes, ``area = (x1 - x0 + 1) * (y1 - y0 + 1)``, 0 for a denominator <= 0;
  an image counts when its IoU with at least one GT box reaches the threshold (>=). GT boxes are
  integers: the reference scales them to its 224 grid with ``int()`` (truncation).
- PxAP: histograms of the float scores of GT-foreground and GT-background pixels over the bins
  [tau_0, tau_1), ..., [tau_last, 1), [1, 2), [2, 3]; ignored pixels (ignore mask minus foreground)
  count in neither. From the top bin down TP and FP are cumulative sums, precision = TP / (TP + FP),
  recall = TP / #foreground, AP = sum_i precision_i * (recall_i - recall_{i-1}) over the i >= 1
  with TP + FP > 0, in percent.

Our choices, where the reference defines nothing:

- GT-known / Top-1 / Top-k Loc as in TS-CAM and SCM: one box, the largest contour, IoU >= 0.5 with
  any GT box; Top-k also needs a GT class among the k best class scores. SCM picks the cam
  threshold that maximises GT-known; so do we unless one is given, and all three are read at that
  one threshold. GT-known at its best threshold therefore equals MaxBoxAcc (v1).
- Size bins: an image belongs to the bin of its largest GT box's area / image area (inclusive
  pixel areas), bins right-closed (b0, b1], (b1, b2], ...; ratios above the last edge go to the
  last bin. Default edges (0, 0.1, 0.25, 0.5, 1): the small-object WSOL release does not list its
  bins. Per bin: MaxBoxAcc of the main box mode over the images of that bin (own best cam
  threshold per IoU threshold), mean over IoU thresholds.

Speed: the boxes of all cam thresholds come from ``boxes.scoremap_box_ious`` (see there). The
detectron2 evaluators that feed these accumulators are in ``evaluators.py``.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from wsod_d2.evaluation.wsol.boxes import scoremap_box_ious

__all__ = [
    "DEFAULT_CAM_THRESHOLDS",
    "DEFAULT_IOU_THRESHOLDS",
    "DEFAULT_SIZE_BINS",
    "BoxAccumulator",
    "PxAPAccumulator",
    "normalize_scoremap",
    "resize_boxes",
    "resize_scoremap",
]

DEFAULT_CAM_THRESHOLDS = np.arange(0, 1, 0.01)
DEFAULT_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
DEFAULT_SIZE_BINS = (0.0, 0.1, 0.25, 0.5, 1.0)
# bins appended above the cam thresholds by the reference's PxAP histogram
_PXAP_TOP_EDGES = (1.0, 2.0, 3.0)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """
    Min-max normalisation as the reference's ``normalize_scoremap``, on a float64 copy.

    Args:
        cam: (H, W) map.
    Returns:
        (H, W) float64 in [0, 1]; all zeros if ``cam`` holds a NaN or is constant.
    """
    cam = np.array(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"cam must be a non-empty (H, W) array, got shape {cam.shape}.")
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def resize_scoremap(cam: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an (h, w) map to ``size_hw`` = (H, W), in float64 as the reference."""
    height, width = (int(s) for s in size_hw)
    cam = np.asarray(cam, dtype=np.float64)
    return cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC)


def resize_boxes(
    boxes: np.ndarray, image_hw: Tuple[int, int], new_hw: Tuple[int, int]
) -> np.ndarray:
    """
    Rescale XYXY boxes from an (H, W) image to a (H', W') grid and truncate to integers, as the
    reference's ``resize_bbox``: ``int(x * W' / W)``.

    Args:
        boxes: (G, 4) XYXY.
    Returns:
        (G, 4) int64.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if tuple(image_hw) != tuple(new_hw):
        (height, width), (new_height, new_width) = image_hw, new_hw
        scale_to = np.array([new_width, new_height, new_width, new_height], dtype=np.float64)
        scale_from = np.array([width, height, width, height], dtype=np.float64)
        boxes = boxes * scale_to / scale_from
    return np.trunc(boxes).astype(np.int64)


def _as_thresholds(values: Sequence[float], name: str, upper: float) -> np.ndarray:
    """Validate a strictly increasing 1-D threshold list within [0, upper]."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a non-empty 1-D list of finite numbers, got {values!r}.")
    if (np.diff(array) <= 0).any() or array[0] < 0 or array[-1] > upper:
        raise ValueError(f"{name} must be strictly increasing within [0, {upper}], got {values!r}.")
    return array


def _as_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """Validate as the reference's ``check_scoremap_validity``; returns float64 (H, W)."""
    scoremap = np.asarray(scoremap, dtype=np.float64)
    if scoremap.ndim != 2 or scoremap.size == 0:
        raise ValueError(f"scoremap must be a non-empty (H, W) array, got shape {scoremap.shape}.")
    if np.isnan(scoremap).any():
        raise ValueError("scoremap must not contain NaN.")
    if scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError(
            f"scoremap must lie in [0, 1], got min {scoremap.min()} and max {scoremap.max()}."
        )
    return scoremap


def _as_gt_boxes(gt_boxes: np.ndarray) -> np.ndarray:
    """Validate (G, 4) XYXY boxes as the reference's ``check_box_convention``; int64 (truncated)."""
    boxes = np.asarray(gt_boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[0] == 0 or boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must have shape (G >= 1, 4), got {boxes.shape}.")
    if not np.isfinite(boxes).all() or (boxes < 0).any():
        raise ValueError(f"gt_boxes must be finite and non-negative, got {boxes.tolist()}.")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f"gt_boxes must be XYXY with x1 >= x0 and y1 >= y0, got {boxes.tolist()}.")
    return np.trunc(boxes).astype(np.int64)


class BoxAccumulator:
    """
    Box accuracies of a data set, per IoU threshold and cam threshold, for the largest contour and
    for all contours at once (one tracing serves both). Mergeable across processes.

    ``multi_contour`` picks the main box mode: the one of ``max_box_acc()``,
    ``best_cam_thresholds()`` and the size bins. MaxBoxAcc (v1) and MaxBoxAccV2 always use their
    own modes; GT-known / Top-1 / Top-k Loc always use the largest contour (TS-CAM, SCM).
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        cam_thresholds: Sequence[float] = DEFAULT_CAM_THRESHOLDS,
        multi_contour: bool = True,
        size_bins: Sequence[float] = DEFAULT_SIZE_BINS,
    ):
        """
        Args:
            iou_thresholds: IoU a box needs to count as correct (>=), e.g. (0.3, 0.5, 0.7).
            cam_thresholds: relative score-map thresholds tau in [0, 1].
            multi_contour: main box mode: best box over all contours (True) or the largest
                contour's box (False).
            size_bins: increasing edges of GT-area / image-area bins (b0, b1], (b1, b2], ...
        """
        self.iou_thresholds = _as_thresholds(iou_thresholds, "iou_thresholds", 1.0)
        self.cam_thresholds = _as_thresholds(cam_thresholds, "cam_thresholds", 1.0)
        self.size_bins = _as_thresholds(size_bins, "size_bins", np.inf)
        if self.size_bins.size < 2:
            raise ValueError(f"size_bins needs at least two edges, got {size_bins!r}.")
        self.multi_contour = bool(multi_contour)
        shape = (len(self.iou_thresholds), len(self.cam_thresholds))
        self.num_images = 0
        # [largest contour, all contours] x IoU threshold x cam threshold
        self._correct = np.zeros((2,) + shape, dtype=np.int64)
        self._top1 = np.zeros(shape, dtype=np.int64)
        self._top_k = np.zeros(shape, dtype=np.int64)
        self._bin_correct = np.zeros((len(self.size_bins) - 1,) + shape, dtype=np.int64)
        self._bin_images = np.zeros(len(self.size_bins) - 1, dtype=np.int64)

    def add(
        self,
        scoremap: np.ndarray,
        gt_boxes: np.ndarray,
        correct_class: bool = True,
        image_size: Optional[Tuple[int, int]] = None,
        correct_top_k: Optional[bool] = None,
    ) -> None:
        """
        Args:
            scoremap: (H, W) in [0, 1], already at the resolution of the boxes (float64 as the
                reference; other floats are converted first).
            gt_boxes: (G, 4) XYXY in the same pixel grid, x1 / y1 inclusive, truncated to integers.
            correct_class: the top-1 predicted class is a GT class (Top-1 Loc).
            image_size: (H, W) for the size ratio; default the score map's shape.
            correct_top_k: a GT class is among the top k (Top-k Loc); default ``correct_class``.
        """
        scoremap = _as_scoremap(scoremap)
        gt = _as_gt_boxes(gt_boxes)
        height, width = scoremap.shape if image_size is None else image_size
        all_ious, largest_ious = scoremap_box_ious(
            scoremap, gt, self.cam_thresholds, float(self.iou_thresholds[0])
        )
        hits = np.stack([largest_ious, all_ious])[:, None, :] >= self.iou_thresholds[None, :, None]
        self._correct += hits
        self._top1 += hits[0] & bool(correct_class)
        self._top_k += hits[0] & bool(correct_class if correct_top_k is None else correct_top_k)
        gt_area = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
        ratio = min(gt_area.max() / float(height * width), self.size_bins[-1])
        size_bin = max(int(np.searchsorted(self.size_bins, ratio, side="left")) - 1, 0)
        self._bin_correct[size_bin] += hits[int(self.multi_contour)]
        self._bin_images[size_bin] += 1
        self.num_images += 1

    def merge(self, other: "BoxAccumulator") -> None:
        """Add the counts of ``other`` (same thresholds, bins and mode) to this one."""
        for name in ("iou_thresholds", "cam_thresholds", "size_bins"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                raise ValueError(f"Cannot merge BoxAccumulators with different {name}.")
        if self.multi_contour != other.multi_contour:
            raise ValueError("Cannot merge BoxAccumulators with different multi_contour.")
        self.num_images += other.num_images
        self._correct += other._correct
        self._top1 += other._top1
        self._top_k += other._top_k
        self._bin_correct += other._bin_correct
        self._bin_images += other._bin_images

    def accuracy(self, multi_contour: Optional[bool] = None) -> np.ndarray:
        """Box accuracy in percent, (I, T): IoU threshold x cam threshold; default main mode."""
        mode = self.multi_contour if multi_contour is None else multi_contour
        return self._percent(self._correct[int(mode)], self.num_images)

    def max_box_acc(self, multi_contour: Optional[bool] = None) -> Dict[float, float]:
        """{IoU threshold: max over cam thresholds of the accuracy (percent)}; default main mode."""
        best = self.accuracy(multi_contour).max(axis=1)
        return {float(t): float(a) for t, a in zip(self.iou_thresholds, best)}

    def best_cam_thresholds(self, multi_contour: Optional[bool] = None) -> Dict[float, float]:
        """{IoU threshold: first cam threshold reaching ``max_box_acc``}; default main mode."""
        best = self.cam_thresholds[self.accuracy(multi_contour).argmax(axis=1)]
        return {float(t): float(c) for t, c in zip(self.iou_thresholds, best)}

    def max_box_acc_v1(self, iou_threshold: float = 0.5) -> float:
        """MaxBoxAcc: largest contour, one IoU threshold (0.5 in the paper), percent."""
        return self.max_box_acc(multi_contour=False)[self._iou_key(iou_threshold)]

    def max_box_acc_v2(self) -> float:
        """MaxBoxAccV2: all contours, mean over the IoU thresholds, percent."""
        return float(np.mean(list(self.max_box_acc(multi_contour=True).values())))

    def localization_accuracy(
        self, iou_threshold: float = 0.5, cam_threshold: Optional[float] = None
    ) -> Dict[str, float]:
        """
        GT-known / Top-1 / Top-k Loc (largest contour) at one cam threshold: the given one, or the
        first that maximises GT-known (SCM's choice).

        Returns:
            {"gt_known", "top1", "top_k": percent, "cam_threshold": the threshold used}.
        """
        i = list(self.iou_thresholds).index(self._iou_key(iou_threshold))
        gt_known = self.accuracy(multi_contour=False)[i]
        if cam_threshold is None:
            t = int(gt_known.argmax())
        else:
            matches = np.flatnonzero(np.isclose(self.cam_thresholds, cam_threshold))
            if matches.size == 0:
                raise ValueError(f"cam_threshold {cam_threshold} is not one of cam_thresholds.")
            t = int(matches[0])
        return {
            "gt_known": float(gt_known[t]),
            "top1": float(self._percent(self._top1[i, t], self.num_images)),
            "top_k": float(self._percent(self._top_k[i, t], self.num_images)),
            "cam_threshold": float(self.cam_thresholds[t]),
        }

    def size_bin_accuracy(self) -> List[Tuple[float, float, int, float]]:
        """
        Per size bin (lo, hi]: (lo, hi, number of images, accuracy in percent or NaN when empty);
        accuracy = main-mode MaxBoxAcc over the bin's images, mean over IoU thresholds.
        """
        rows = []
        for b, (lo, hi) in enumerate(zip(self.size_bins[:-1], self.size_bins[1:])):
            count = int(self._bin_images[b])
            accuracy = float("nan")
            if count:
                accuracy = float(self._percent(self._bin_correct[b], count).max(axis=1).mean())
            rows.append((float(lo), float(hi), count, accuracy))
        return rows

    def _iou_key(self, iou_threshold: float) -> float:
        matches = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold))
        if matches.size == 0:
            raise ValueError(
                f"iou_threshold {iou_threshold} is not one of {self.iou_thresholds.tolist()}."
            )
        return float(self.iou_thresholds[matches[0]])

    @staticmethod
    def _percent(counts: np.ndarray, total: int) -> np.ndarray:
        if total == 0:
            raise RuntimeError("No image was accumulated.")
        return counts * 100.0 / float(total)


class PxAPAccumulator:
    """Pixel average precision (PxAP) over a data set from score histograms. Mergeable."""

    def __init__(self, cam_thresholds: Sequence[float] = DEFAULT_CAM_THRESHOLDS):
        """
        Args:
            cam_thresholds: increasing left bin edges tau in [0, 1); [1, 2) and [2, 3] are appended.
        """
        self.cam_thresholds = _as_thresholds(cam_thresholds, "cam_thresholds", 1.0)
        if self.cam_thresholds[-1] >= _PXAP_TOP_EDGES[0]:
            raise ValueError(f"cam_thresholds must be < 1, got {cam_thresholds!r}.")
        self._edges = np.append(self.cam_thresholds, _PXAP_TOP_EDGES)
        num_bins = len(self._edges) - 1
        self._positive = np.zeros(num_bins, dtype=np.int64)
        self._negative = np.zeros(num_bins, dtype=np.int64)

    def add(
        self, scoremap: np.ndarray, gt_mask: np.ndarray, ignore_mask: Optional[np.ndarray] = None
    ) -> None:
        """
        Args:
            scoremap: (H, W) in [0, 1].
            gt_mask: (H, W), nonzero = foreground.
            ignore_mask: (H, W), nonzero = ignored unless foreground.
        """
        scoremap = _as_scoremap(scoremap)
        foreground = np.asarray(gt_mask) != 0
        background = ~foreground
        if ignore_mask is not None:
            background &= np.asarray(ignore_mask) == 0
        if foreground.shape != scoremap.shape or background.shape != scoremap.shape:
            raise ValueError(
                f"scoremap {scoremap.shape}, gt_mask {foreground.shape} and ignore_mask"
                f" {background.shape} must have the same shape."
            )
        # bin i holds edges[i] <= s < edges[i + 1]; below the first edge: no bin (as np.histogram)
        bins = np.searchsorted(self._edges, scoremap, side="right") - 1
        num_bins = len(self._positive)
        for hist, mask in ((self._positive, foreground), (self._negative, background)):
            in_mask = bins[mask]
            hist += np.bincount(in_mask[in_mask >= 0], minlength=num_bins)

    def merge(self, other: "PxAPAccumulator") -> None:
        """Add the histograms of ``other`` (same cam thresholds)."""
        if not np.array_equal(self.cam_thresholds, other.cam_thresholds):
            raise ValueError("Cannot merge PxAPAccumulators with different cam_thresholds.")
        self._positive += other._positive
        self._negative += other._negative

    def pxap(self) -> float:
        """Area under the pixel precision-recall curve, percent."""
        tp = self._positive[::-1].cumsum()
        fp = self._negative[::-1].cumsum()
        if tp[-1] == 0:
            raise RuntimeError("No foreground pixel was accumulated.")
        predicted = tp + fp
        with np.errstate(invalid="ignore"):
            precision = tp / predicted
        recall = tp / (tp + (tp[-1] - tp))
        area = precision[1:] * np.diff(recall)
        return float(area[predicted[1:] != 0].sum() * 100)
