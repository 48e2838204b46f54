"""The box of one cam threshold (``largest_contour_box``): the reference's box, the metric's box."""

import cv2
import numpy as np

from wsod_d2.benchmarks.wsol_metrics import cam_like_scoremaps
from wsod_d2.evaluation.wsol.boxes import (
    box_iou_inclusive,
    largest_contour_box,
    scoremap_box_ious,
)
from wsod_d2.evaluation.wsol.metrics import normalize_scoremap, resize_scoremap

CAM_THRESHOLDS = np.arange(0, 1, 0.01)


def reference_largest_box(scoremap, cam_threshold):
    """The reference's MaxBoxAcc box: largest contour, [x, y, min(x + w, W - 1), ...]."""
    height, width = scoremap.shape
    u8 = (scoremap * 255).astype(np.uint8)
    binary = cv2.threshold(u8, int(cam_threshold * np.max(u8)), 255, cv2.THRESH_BINARY)[1]
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return [x, y, min(x + w, width - 1), min(y + h, height - 1)]


def test_box_end_is_one_past_the_region_and_clipped_to_the_image():
    scoremap = np.zeros((100, 120))
    scoremap[20:40, 10:30] = 1.0  # pixels x 10..29, y 20..39
    np.testing.assert_array_equal(largest_contour_box(scoremap, 0.5), [10, 20, 30, 40])
    scoremap[60:, 80:] = 1.0  # a larger region reaching the right and bottom edges
    np.testing.assert_array_equal(largest_contour_box(scoremap, 0.5), [80, 60, 119, 99])
    assert largest_contour_box(np.zeros((8, 8)), 0.0) is None
    assert largest_contour_box(scoremap, 1.0) is None  # nothing above the maximum


def test_largest_contour_box_is_the_reference_box_and_the_scored_box():
    rng = np.random.default_rng(11)
    maps, _ = cam_like_scoremaps(4, size=72, seed=3)
    for _ in range(4):
        cells = int(rng.integers(3, 9))
        maps.append(normalize_scoremap(resize_scoremap(rng.random((cells, cells)), (60, 84))))
    ties = np.zeros((40, 40))  # single pixels and a line: all areas 0, OpenCV's order decides
    for y, x, value in [(30, 5, 1.0), (5, 30, 0.9), (20, 20, 1.0), (10, 10, 0.8)]:
        ties[y, x] = value
    ties[35, 30:32] = 0.85
    maps.append(ties)
    for scoremap in maps:
        height, width = scoremap.shape
        gt = np.array([[width // 4, height // 5, width // 2, height - 3]])
        _, scored = scoremap_box_ious(scoremap, gt, CAM_THRESHOLDS)
        for tau, scored_iou in zip(CAM_THRESHOLDS, scored):
            box = largest_contour_box(scoremap, tau)
            expected = reference_largest_box(scoremap, tau)
            if expected is None:
                assert box is None
                box = np.zeros(4, dtype=np.int64)  # the box the metric scores for no contour
            else:
                np.testing.assert_array_equal(box, expected)
            assert box_iou_inclusive(box[None], gt)[0, 0] == scored_iou
