"""
Speed of ``BoxAccumulator`` against a straightforward implementation of the reference protocol
(clovaai/wsolevaluation: one ``cv2.threshold`` + ``cv2.findContours`` per threshold per image), on
the same seeded CAM-like maps, with a check that both give the same numbers.
"""

import math
import time
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.structures import BoxMode

from wsod_d2.evaluation.wsol.evaluators import WSOLEvaluator
from wsod_d2.evaluation.wsol.metrics import BoxAccumulator, normalize_scoremap, resize_scoremap

__all__ = [
    "benchmark_wsol_metrics",
    "benchmark_wsol_pool",
    "cam_like_scoremaps",
    "evaluator_io",
    "reference_box_hits",
]


def cam_like_scoremaps(
    num_maps: int,
    size: int = 224,
    seed: int = 0,
    feature_size: int = 14,
    max_blobs: int = 3,
    noise: float = 0.05,
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """
    Seeded maps shaped like CAMs: 1..max_blobs Gaussian bumps plus uniform noise on a
    feature_size grid, bicubic-resized to size x size and min-max normalised (the reference's
    pipeline), and one GT box around the strongest bump, jittered.

    Returns:
        scoremaps: (size, size) float64 each; gt_boxes: (1, 4) int64 XYXY each.
    """
    rng = np.random.default_rng(seed)
    grid_y, grid_x = np.mgrid[0:feature_size, 0:feature_size]
    scale = size / feature_size
    scoremaps, gt_boxes = [], []
    for _ in range(num_maps):
        cam = noise * rng.random((feature_size, feature_size))
        peaks = []
        for _ in range(rng.integers(1, max_blobs + 1)):
            cy, cx = rng.uniform(1, feature_size - 1, size=2)
            sigma, height = rng.uniform(0.8, feature_size / 5), rng.uniform(0.3, 1.0)
            cam += height * np.exp(-((grid_y - cy) ** 2 + (grid_x - cx) ** 2) / (2 * sigma**2))
            peaks.append((height, cy, cx, sigma))
        _, cy, cx, sigma = max(peaks)
        half = 2 * sigma * scale * rng.uniform(0.7, 1.3, size=2)
        box = np.array([cx * scale - half[1], cy * scale - half[0], cx * scale + half[1]])
        box = np.append(box, cy * scale + half[0])
        scoremaps.append(normalize_scoremap(resize_scoremap(cam, (size, size))))
        gt_boxes.append(np.clip(box, 0, size - 1).astype(np.int64)[None])
    return scoremaps, gt_boxes


def _reference_iou(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x (G, 4) -> (N, G), pixel-inclusive boxes, one broadcast as the reference's
    ``calculate_multiple_iou`` (degenerate unions give 0)."""
    boxes, gt_boxes = boxes[:, None, :], gt_boxes[None, :, :]
    inter_w = np.maximum(
        0,
        np.minimum(boxes[..., 2], gt_boxes[..., 2])
        - np.maximum(boxes[..., 0], gt_boxes[..., 0])
        + 1,
    )
    inter_h = np.maximum(
        0,
        np.minimum(boxes[..., 3], gt_boxes[..., 3])
        - np.maximum(boxes[..., 1], gt_boxes[..., 1])
        + 1,
    )
    inter = inter_w * inter_h
    area = (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)
    gt_area = (gt_boxes[..., 2] - gt_boxes[..., 0] + 1) * (gt_boxes[..., 3] - gt_boxes[..., 1] + 1)
    union = area + gt_area - inter
    degenerate = union <= 0
    ious = inter / np.where(degenerate, 1, union)
    ious[degenerate] = 0.0
    return ious


def reference_box_hits(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    cam_thresholds: Sequence[float],
    iou_thresholds: Sequence[float],
    multi_contour: bool,
) -> np.ndarray:
    """
    The reference protocol, one threshold at a time: binarise, trace all contours (RETR_TREE),
    keep all of them or the largest by cv2.contourArea, box = [x, y, min(x + w, W - 1),
    min(y + h, H - 1)], no contour -> [0, 0, 0, 0]; best IoU over boxes and GT boxes.

    Returns:
        (I, T) bool: IoU >= each IoU threshold at each cam threshold.
    """
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    boxes_per_threshold, counts = [], []
    for tau in cam_thresholds:
        _, binary = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            boxes_per_threshold.append(np.zeros((1, 4), dtype=np.int64))
            counts.append(1)
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        boxes_per_threshold.append(np.asarray(boxes))
        counts.append(len(boxes))
    ious = _reference_iou(np.concatenate(boxes_per_threshold), np.asarray(gt_boxes))
    best, start = [], 0
    for count in counts:
        # as the reference: the row maxima are taken again for every threshold's slice
        best.append(max(ious.max(axis=1)[start : start + count]))
        start += count
    return np.asarray(best)[None, :] >= np.asarray(iou_thresholds)[:, None]


def benchmark_wsol_metrics(
    num_maps: int = 100,
    size: int = 224,
    num_thresholds: int = 100,
    seed: int = 0,
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    noise: float = 0.05,
) -> Dict[str, float]:
    """
    Time ``BoxAccumulator.add`` (both box modes, Top-k and size bins in one pass) against the
    reference protocol, which needs one pass per box mode, on the same maps; the order of the
    three runs rotates from map to map.

    Returns:
        {"num_maps", "size", "num_thresholds", "maps_per_s", "reference_maps_per_s" (all-contour
        pass, for MaxBoxAccV2), "speedup" (against that pass), "reference_both_maps_per_s" (both
        passes, for MaxBoxAccV2 and MaxBoxAcc), "speedup_both"}.
    Raises:
        RuntimeError: when the accuracies of either box mode differ from the reference's.
    """
    scoremaps, gt_boxes = cam_like_scoremaps(num_maps, size=size, seed=seed, noise=noise)
    cam_thresholds = np.arange(0, 1, 1.0 / num_thresholds)
    accumulator = BoxAccumulator(iou_thresholds=iou_thresholds, cam_thresholds=cam_thresholds)
    reference = np.zeros((2, len(iou_thresholds), len(cam_thresholds)), dtype=np.int64)
    seconds = np.zeros(3)  # fast, reference largest contour, reference all contours
    for i, (scoremap, gt) in enumerate(zip(scoremaps, gt_boxes)):
        for run in np.roll(np.arange(3), i):
            start = time.perf_counter()
            if run == 0:
                accumulator.add(scoremap, gt)
            else:
                multi_contour = bool(run == 2)
                reference[int(multi_contour)] += reference_box_hits(
                    scoremap, gt, cam_thresholds, iou_thresholds, multi_contour
                )
            seconds[run] += time.perf_counter() - start
    for mode, name in ((0, "largest-contour"), (1, "all-contour")):
        expected = reference[mode] * 100.0 / float(num_maps)
        if not np.array_equal(accumulator.accuracy(multi_contour=bool(mode)), expected):
            raise RuntimeError(f"BoxAccumulator {name} accuracies differ from the reference's.")
    return {
        "num_maps": float(num_maps),
        "size": float(size),
        "num_thresholds": float(len(cam_thresholds)),
        "maps_per_s": num_maps / seconds[0],
        "reference_maps_per_s": num_maps / seconds[2],
        "speedup": seconds[2] / seconds[0],
        "reference_both_maps_per_s": num_maps / (seconds[1] + seconds[2]),
        "speedup_both": (seconds[1] + seconds[2]) / seconds[0],
    }


def evaluator_io(
    num_maps: int, size: int = 224, seed: int = 0, cam_stride: int = 8, num_classes: int = 20
) -> Tuple[List[Dict[str, Any]], List[Dict[str, torch.Tensor]]]:
    """
    ``WSOLEvaluator`` inputs and outputs of ``num_maps`` seeded size x size images: one GT box
    each (``cam_like_scoremaps``), the map area-downsampled by ``cam_stride`` as a model's CAM
    (the evaluator resizes it back), seeded random class scores.
    """
    scoremaps, gt_boxes = cam_like_scoremaps(num_maps, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    cam_hw = (size // cam_stride, size // cam_stride)
    inputs, outputs = [], []
    for i, (scoremap, box) in enumerate(zip(scoremaps, gt_boxes)):
        label = int(rng.integers(num_classes))
        annotation = {"bbox": box[0].tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": label}
        inputs.append({"image_id": i, "height": size, "width": size, "annotations": [annotation]})
        cam = cv2.resize(scoremap, cam_hw[::-1], interpolation=cv2.INTER_AREA)
        scores = torch.from_numpy(rng.random(num_classes))
        outputs.append({"cam": torch.from_numpy(cam), "image_scores": scores})
    return inputs, outputs


def _same_metrics(a: Dict[str, float], b: Dict[str, float]) -> bool:
    """Exact equality of every metric (NaN equals NaN: an empty size bin)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


def benchmark_wsol_pool(
    worker_counts: Sequence[int], num_maps: int = 400, size: int = 224, seed: int = 0
) -> List[Dict[str, Any]]:
    """
    ``WSOLEvaluator``'s process() and evaluate() on ``evaluator_io`` maps in-process and with each
    of ``worker_counts`` worker processes (TEST.WSOL.NUM_WORKERS), two passes each: the first
    also starts the workers (and, the first time, the forkserver they fork from), the second is
    the throughput.

    Returns:
        rows {"num_workers", "processes" (computing the metrics), "maps_per_s" (second pass),
        "first_pass_s", "identical" (every metric equals the in-process one)}, in-process first.
    """
    inputs, outputs = evaluator_io(num_maps, size=size, seed=seed)
    rows, expected = [], None
    for num_workers in [0, *worker_counts]:
        evaluator = WSOLEvaluator("unused", distributed=False, num_workers=num_workers)
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            evaluator.reset()
            evaluator.process(inputs, outputs)
            results = evaluator.evaluate()["wsol"]
            seconds.append(time.perf_counter() - start)
        expected = results if expected is None else expected
        rows.append(
            {
                "num_workers": num_workers,
                "processes": max(num_workers, 1),
                "maps_per_s": num_maps / seconds[1],
                "first_pass_s": seconds[0],
                "identical": _same_metrics(results, expected),
            }
        )
    return rows
