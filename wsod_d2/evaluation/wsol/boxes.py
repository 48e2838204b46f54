"""
Boxes of a score map at every cam threshold, as clovaai/wsolevaluation draws them (one
``cv2.threshold`` + ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` per threshold; the
protocol is documented in ``metrics.py``), with the same numbers:

- each distinct integer level ``int(tau * max)`` is handled once (1000 thresholds give at most
  255 levels); levels at or above the map maximum are empty;
- every box of a level lies in the box of its set's hull (from row and column maxima), so a level
  whose hull box cannot reach the smallest IoU threshold with any GT box is not traced;
- the remaining levels are traced by one ``cv2.findContours`` call on their hull crops stacked
  into one image, and the boxes, polygon areas (shoelace on integer points, equal to
  ``cv2.contourArea``) and IoUs of all contours come from one vectorised pass.

Tracing stays the cost floor (``cv2.findContours`` scans every pixel of its image, about 0.7 ns a
pixel, so the stacked crops cost about what the reference's full-image calls cost once most levels
reach across the map); ``wsod_d2/benchmarks/wsol_metrics.py`` measures the speed against the
reference's way on the same maps and checks that the accuracies agree.

``largest_contour_box`` gives the box itself at one threshold, through the same tracing, for
drawing the box that MaxBoxAcc and GT-known / Top-k Loc score.

Tried instead, exact but not worth a compiled dependency: a component-tree sweep (one union-find
pass over the pixels in falling value order, compiled with numba, giving every level's component
boxes, its hole count from the Euler number and, mostly, its largest contour). A pixel costs it
20-30 ns (about as much in plain C), so a 224x224 map costs about 1 ms before the levels it cannot
settle are traced; sweeping the high levels and tracing the low ones measured 0.9-1.3x this
module's speed on the benchmark's CAM-like maps, nowhere near the 5x target.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["box_iou_inclusive", "largest_contour_box", "scoremap_box_ious"]

_UINT8_MAX = 255


def box_iou_inclusive(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """
    IoU of integer boxes whose x1, y1 are inclusive (area (x1 - x0 + 1) * (y1 - y0 + 1)), 0 where
    the union is not positive, as the reference's ``calculate_multiple_iou``.

    Args:
        boxes: (N, 4) XYXY; gt_boxes: (G, 4) XYXY.
    Returns:
        (N, G) float64.
    """
    inter_w = np.minimum(boxes[:, None, 2], gt_boxes[None, :, 2]) - np.maximum(
        boxes[:, None, 0], gt_boxes[None, :, 0]
    )
    inter_h = np.minimum(boxes[:, None, 3], gt_boxes[None, :, 3]) - np.maximum(
        boxes[:, None, 1], gt_boxes[None, :, 1]
    )
    inter = np.maximum(0, inter_w + 1) * np.maximum(0, inter_h + 1)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1)
    union = area[:, None] + gt_area[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def _threshold_levels(
    scoremap: np.ndarray, cam_thresholds: Sequence[float]
) -> Tuple[np.ndarray, int, np.ndarray]:
    """
    The reference's binarisation: ``u8 = uint8(map * 255)``, a pixel is on iff
    ``u8 > int(tau * u8.max())``.

    Returns:
        u8: (H, W) uint8; top: u8.max(); levels: (T,) int64 ``int(tau * top)`` per threshold.
    """
    u8 = (scoremap * _UINT8_MAX).astype(np.uint8)
    top = int(u8.max())
    levels = (np.asarray(cam_thresholds, dtype=np.float64) * float(top)).astype(np.int64)
    return u8, top, levels


def _superlevel_extents(u8: np.ndarray, values: np.ndarray) -> np.ndarray:
    """
    Inclusive bounding box of {u8 >= v} for each v, from the running row / column maxima.

    Args:
        u8: (H, W) uint8; values: (K,) ints in [0, u8.max()].
    Returns:
        (K, 4) int64 rows [y0, y1, x0, x1].
    """
    row_max = u8.max(axis=1).astype(np.int64)
    col_max = u8.max(axis=0).astype(np.int64)
    extents = [
        np.searchsorted(np.maximum.accumulate(row_max), values),
        len(row_max) - 1 - np.searchsorted(np.maximum.accumulate(row_max[::-1]), values),
        np.searchsorted(np.maximum.accumulate(col_max), values),
        len(col_max) - 1 - np.searchsorted(np.maximum.accumulate(col_max[::-1]), values),
    ]
    return np.stack(extents, axis=1)


def _reference_boxes(hulls: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel hulls (N, 4) [y0, y1, x0, x1] -> reference boxes [x0, y0, x1 + 1, y1 + 1], clipped."""
    return np.stack(
        [
            hulls[:, 2],
            hulls[:, 0],
            np.minimum(hulls[:, 3] + 1, width - 1),
            np.minimum(hulls[:, 1] + 1, height - 1),
        ],
        axis=1,
    )


def _traced_contours(
    u8: np.ndarray, levels: np.ndarray, hulls: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Reference boxes of all contours of {u8 > L} for non-empty levels, grouped level by level.

    All level sets are traced by one ``cv2.findContours`` call: each is cropped to its hull and
    stacked under the previous one with an empty row in between, so none touches another. The
    call lists the stacked sets last first, each in the order a call on it alone gives (the order
    that breaks ties for the largest contour).

    Args:
        levels: (N,); hulls: (N, 4) [y0, y1, x0, x1] of the level sets, each non-empty.
    Returns:
        boxes: (M, 4) int64 XYXY, the contours of level 0 first, each level in OpenCV's order;
        level_starts: (N,) index of each level's first box; largest: (N,) index of each level's
        first contour of largest ``cv2.contourArea``.
    """
    height, width = u8.shape
    y0, y1, x0, x1 = hulls.T
    rows, cols = y1 - y0 + 1, x1 - x0 + 1
    tops = np.cumsum(rows + 1) - (rows + 1)
    canvas = np.zeros((int(tops[-1] + rows[-1]), int(cols.max())), dtype=np.uint8)
    tiles = zip(levels.tolist(), hulls.tolist(), tops.tolist(), rows.tolist(), cols.tolist())
    for level, (ya, yb, xa, xb), top, num_rows, num_cols in tiles:
        tile = canvas[top : top + num_rows, :num_cols]
        cv2.threshold(u8[ya : yb + 1, xa : xb + 1], level, 1, cv2.THRESH_BINARY, dst=tile)
    contours = cv2.findContours(canvas, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    lengths = np.fromiter(map(len, contours), dtype=np.int64, count=len(contours))
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    owner = np.searchsorted(tops, points[starts, 1], side="right") - 1
    # regroup level by level, keeping each level's own contour order
    order = np.argsort(owner, kind="stable")
    lengths, owner = lengths[order], owner[order]
    moved = starts[order]
    starts = np.cumsum(lengths) - lengths
    points = points[np.repeat(moved - starts, lengths) + np.arange(len(points))]
    point_owner = np.repeat(owner, lengths)
    xs = points[:, 0] + x0[point_owner]
    ys = points[:, 1] + (y0 - tops)[point_owner]
    boxes = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.minimum(np.maximum.reduceat(xs, starts) + 1, width - 1),
            np.minimum(np.maximum.reduceat(ys, starts) + 1, height - 1),
        ],
        axis=1,
    )
    # shoelace on integer points: exactly twice cv2.contourArea
    following = np.arange(1, len(xs) + 1)
    following[starts + lengths - 1] = starts
    twice_area = np.abs(np.add.reduceat(xs * ys[following] - xs[following] * ys, starts))
    level_starts = np.searchsorted(owner, np.arange(len(levels)))
    is_largest = twice_area == np.maximum.reduceat(twice_area, level_starts)[owner]
    largest = np.flatnonzero(is_largest)
    # the first largest contour of each level, as Python's max() picks
    first = largest[np.searchsorted(owner[largest], np.arange(len(levels)))]
    return boxes, level_starts, first


def _traced_box_ious(
    u8: np.ndarray, levels: np.ndarray, hulls: np.ndarray, gt_boxes: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Best IoU with the GT boxes over the boxes of all contours of {u8 > L}, and of the largest
    contour's box, for non-empty levels (traced as ``_traced_contours``).

    Args:
        levels: (N,); hulls: (N, 4) [y0, y1, x0, x1] of the level sets, each non-empty.
    Returns:
        all_contours: (N,) float64; largest_contour: (N,) float64.
    """
    boxes, level_starts, largest = _traced_contours(u8, levels, hulls)
    ious = box_iou_inclusive(boxes, gt_boxes).max(axis=1)
    return np.maximum.reduceat(ious, level_starts), ious[largest]


def largest_contour_box(scoremap: np.ndarray, cam_threshold: float) -> Optional[np.ndarray]:
    """
    The box MaxBoxAcc (v1) and GT-known / Top-k Loc score at one cam threshold: the reference box
    of the largest contour (the first on ties) of the binarised map.

    Args:
        scoremap: (H, W) float64 in [0, 1].
        cam_threshold: tau; a pixel is on iff ``uint8(map * 255) > int(tau * max)``.
    Returns:
        (4,) int64 XYXY ``[x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1)]`` over the contour's
        pixels (x0..x1, y0..y1), or None when no pixel is on (the metric scores [0, 0, 0, 0]).
    """
    u8, top, levels = _threshold_levels(scoremap, [cam_threshold])
    if levels[0] >= top:
        return None
    hulls = _superlevel_extents(u8, levels + 1)
    boxes, _, largest = _traced_contours(u8, levels, hulls)
    return boxes[largest[0]]


def scoremap_box_ious(
    scoremap: np.ndarray, gt_boxes: np.ndarray, cam_thresholds: np.ndarray, min_iou: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Best IoU with the GT boxes of the reference's boxes at every cam threshold: over the boxes of
    all contours (MaxBoxAccV2) and of the largest contour (MaxBoxAcc).

    Args:
        scoremap: (H, W) float64 in [0, 1], at the resolution of the boxes.
        gt_boxes: (G, 4) int64 XYXY, x1 / y1 inclusive.
        cam_thresholds: (T,) float64 in [0, 1].
        min_iou: a threshold whose boxes cannot reach this IoU is not traced; it reports an upper
            bound of its IoU instead (still < min_iou). 0 reports exact IoUs everywhere.
    Returns:
        all_contours: (T,) float64; largest_contour: (T,) float64.
    """
    height, width = scoremap.shape
    u8, top, threshold_levels = _threshold_levels(scoremap, cam_thresholds)
    levels, threshold_level = np.unique(threshold_levels, return_inverse=True)
    best_all = np.empty(len(levels))
    best_largest = np.empty(len(levels))
    empty = levels >= top
    empty_iou = box_iou_inclusive(np.zeros((1, 4), dtype=np.int64), gt_boxes).max()
    best_all[empty] = best_largest[empty] = empty_iou
    live = np.flatnonzero(~empty)
    if live.size:
        hulls = _superlevel_extents(u8, levels[live] + 1)
        boxes = _reference_boxes(hulls, height, width)
        # every box of a level lies in its hull's box, so IoU <= |hull box & gt| / |gt|
        gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1)
        overlap = np.minimum(boxes[:, None, 2:], gt_boxes[None, :, 2:]) - np.maximum(
            boxes[:, None, :2], gt_boxes[None, :, :2]
        )
        bounds = (np.maximum(0, overlap + 1).prod(axis=2) / gt_area).max(axis=1)
        skip = bounds < min_iou
        best_all[live[skip]] = best_largest[live[skip]] = bounds[skip]
        if not skip.all():
            keep = live[~skip]
            best_all[keep], best_largest[keep] = _traced_box_ious(
                u8, levels[keep], hulls[~skip], gt_boxes
            )
    return best_all[threshold_level], best_largest[threshold_level]
