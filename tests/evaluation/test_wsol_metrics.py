"""WSOL metrics: hand-made maps and boxes, agreement with the reference protocol, PxAP."""

import cv2
import numpy as np
import pytest

from wsod_d2.benchmarks.wsol_metrics import (
    benchmark_wsol_metrics,
    cam_like_scoremaps,
    reference_box_hits,
)
from wsod_d2.evaluation.wsol import boxes as wsol_boxes
from wsod_d2.evaluation.wsol.boxes import box_iou_inclusive, scoremap_box_ious
from wsod_d2.evaluation.wsol.metrics import (
    BoxAccumulator,
    PxAPAccumulator,
    normalize_scoremap,
    resize_boxes,
    resize_scoremap,
)

IOUS = (0.3, 0.5, 0.7)


def block_map(size_hw, *blocks, value=1.0):
    """Zero map with ``value`` on inclusive pixel blocks (x0, y0, x1, y1)."""
    scoremap = np.zeros(size_hw)
    for x0, y0, x1, y1 in blocks:
        scoremap[y0 : y1 + 1, x0 : x1 + 1] = value
    return scoremap


def box(*xyxy):
    return np.array([xyxy], dtype=np.int64)


# ---------------------------------------------------------------- preprocessing and IoU


def test_normalize_scoremap_min_max_on_a_copy():
    cam = np.array([[2.0, 4.0], [6.0, 10.0]])
    out = normalize_scoremap(cam)
    np.testing.assert_array_equal(out, [[0.0, 0.25], [0.5, 1.0]])
    assert cam[0, 0] == 2.0  # the reference edits in place; we do not
    assert not normalize_scoremap(np.full((3, 3), 7.0)).any()
    assert not normalize_scoremap(np.array([[1.0, np.nan]])).any()
    with pytest.raises(ValueError, match="cam"):
        normalize_scoremap(np.zeros((2, 2, 2)))


def test_resize_scoremap_takes_height_width():
    cam = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = resize_scoremap(cam, (5, 7))
    assert out.shape == (5, 7) and out.dtype == np.float64
    expected = cv2.resize(cam.astype(np.float64), (7, 5), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, expected)


def test_resize_boxes_truncates_like_reference():
    boxes = np.array([[10.0, 20.0, 30.0, 40.0]])
    # x * 50 / 200 and y * 50 / 100: 2.5 -> 2, 10, 7.5 -> 7, 20
    np.testing.assert_array_equal(resize_boxes(boxes, (100, 200), (50, 50)), [[2, 10, 7, 20]])
    np.testing.assert_array_equal(
        resize_boxes([[1.9, 2.2, 3.7, 4.0]], (9, 9), (9, 9)), [[1, 2, 3, 4]]
    )


def test_box_iou_inclusive_hand_computed():
    a = np.array([[0, 0, 9, 9], [0, 0, 0, 0], [20, 20, 29, 29]])
    b = np.array([[5, 5, 14, 14]])
    # 10x10 boxes overlapping on 5x5 pixels: 25 / (100 + 100 - 25); a 1-pixel box far away: 0
    np.testing.assert_allclose(box_iou_inclusive(a, b)[:, 0], [25 / 175, 0.0, 0.0])


# ---------------------------------------------------------------- box accuracy, hand-made maps


def test_perfect_map_scores_100_with_reference_box_enlargement():
    gt = box(10, 20, 59, 69)  # 50 x 50 pixels
    scoremap = block_map((100, 120), (10, 20, 59, 69))
    all_ious, largest_ious = scoremap_box_ious(scoremap, gt, np.arange(0, 1, 0.01))
    # predicted box [10, 20, 60, 70]: x + w is exclusive, so 51 x 51 against 50 x 50
    np.testing.assert_array_equal(all_ious, np.full(100, 2500 / 2601))
    np.testing.assert_array_equal(largest_ious, all_ious)
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(scoremap, gt)
    assert acc.max_box_acc() == {0.3: 100.0, 0.5: 100.0, 0.7: 100.0}
    assert acc.max_box_acc_v1() == 100.0 and acc.max_box_acc_v2() == 100.0


def test_empty_map_scores_zero():
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(np.zeros((50, 60)), box(10, 10, 30, 30))
    assert acc.max_box_acc() == {0.3: 0.0, 0.5: 0.0, 0.7: 0.0}
    assert acc.max_box_acc_v1() == 0.0
    all_ious, _ = scoremap_box_ious(np.zeros((50, 60)), box(0, 0, 3, 3), np.array([0.0, 0.5]))
    np.testing.assert_array_equal(all_ious, [1 / 16, 1 / 16])  # the [0, 0, 0, 0] box


def test_shifted_map_passes_iou_30_but_not_50():
    gt = box(20, 20, 59, 59)  # 40 x 40
    scoremap = block_map((100, 100), (40, 20, 79, 59))  # shifted right by 20 pixels
    # box [40, 20, 80, 60]: intersection 20 x 40 = 800, union 1600 + 41 * 41 - 800 = 2481
    all_ious, _ = scoremap_box_ious(scoremap, gt, np.array([0.2]))
    assert all_ious[0] == 800 / 2481  # 0.322
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(scoremap, gt)
    assert acc.max_box_acc() == {0.3: 100.0, 0.5: 0.0, 0.7: 0.0}
    assert acc.max_box_acc_v2() == pytest.approx(100 / 3)


def test_pixel_exactly_at_threshold_value_is_off():
    # block at 0.5 -> uint8 127; tau 0.5 -> int(0.5 * 255) = 127: 127 > 127 is false (strict)
    scoremap = block_map((60, 60), (10, 10, 49, 49), value=0.5)
    scoremap[30, 30] = 1.0
    acc = BoxAccumulator(iou_thresholds=(0.5,), cam_thresholds=(0.49, 0.5))
    acc.add(scoremap, box(10, 10, 49, 49))
    np.testing.assert_array_equal(acc.accuracy(), [[100.0, 0.0]])
    assert acc.best_cam_thresholds() == {0.5: 0.49}


def test_all_contours_vs_largest_contour_on_two_blobs():
    gt = box(150, 150, 179, 179)
    scoremap = block_map((224, 224), (10, 10, 99, 99), (150, 150, 179, 179))
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(scoremap, gt)
    assert acc.max_box_acc(multi_contour=True) == {0.3: 100.0, 0.5: 100.0, 0.7: 100.0}
    assert acc.max_box_acc(multi_contour=False) == {0.3: 0.0, 0.5: 0.0, 0.7: 0.0}
    assert acc.max_box_acc_v1() == 0.0 and acc.max_box_acc_v2() == 100.0


def test_multiple_gt_boxes_take_the_best_match():
    gts = np.array([[0, 0, 9, 9], [50, 50, 89, 89]])
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(block_map((100, 100), (50, 50, 89, 89)), gts)
    assert acc.max_box_acc() == {0.3: 100.0, 0.5: 100.0, 0.7: 100.0}


def test_gt_known_top1_top_k_with_a_wrong_class():
    gt = box(10, 10, 49, 49)
    scoremap = block_map((64, 64), (10, 10, 49, 49))
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(scoremap, gt, correct_class=True)
    acc.add(scoremap, gt, correct_class=False, correct_top_k=True)
    acc.add(np.zeros((64, 64)), gt, correct_class=True)
    loc = acc.localization_accuracy(iou_threshold=0.5)
    assert loc["gt_known"] == pytest.approx(200 / 3)
    assert loc["top1"] == pytest.approx(100 / 3)
    assert loc["top_k"] == pytest.approx(200 / 3)
    assert loc["cam_threshold"] == 0.0
    at = acc.localization_accuracy(iou_threshold=0.5, cam_threshold=0.3)
    assert at["cam_threshold"] == pytest.approx(0.3) and at["top1"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="cam_threshold"):
        acc.localization_accuracy(cam_threshold=0.333)
    with pytest.raises(ValueError, match="iou_threshold"):
        acc.localization_accuracy(iou_threshold=0.6)


def test_size_bins_are_filled_by_largest_gt_area_ratio():
    acc = BoxAccumulator(iou_thresholds=IOUS, size_bins=(0.0, 0.1, 0.25, 0.5, 1.0))
    small, medium, large = (10, 10, 29, 29), (10, 10, 49, 49), (10, 10, 89, 89)
    acc.add(block_map((100, 100), small), box(*small))  # 400 / 10000 = 0.04
    acc.add(np.zeros((100, 100)), box(*medium))  # 1600 / 10000 = 0.16, missed
    acc.add(block_map((100, 100), large), np.array([small, large]))  # 6400 / 10000 = 0.64
    rows = acc.size_bin_accuracy()
    assert [(lo, hi, n) for lo, hi, n, _ in rows] == [
        (0.0, 0.1, 1),
        (0.1, 0.25, 1),
        (0.25, 0.5, 0),
        (0.5, 1.0, 1),
    ]
    accuracies = [a for *_, a in rows]
    assert accuracies[0] == 100.0 and accuracies[1] == 0.0 and accuracies[3] == 100.0
    assert np.isnan(accuracies[2])
    # the size ratio uses image_size when given: 400 / 1000 = 0.4
    acc.add(block_map((100, 100), small), box(*small), image_size=(10, 100))
    assert acc.size_bin_accuracy()[2][2] == 1


def test_bad_inputs_raise_clear_errors():
    acc = BoxAccumulator()
    with pytest.raises(ValueError, match="scoremap must lie in"):
        acc.add(np.full((4, 4), 1.5), box(0, 0, 1, 1))
    with pytest.raises(ValueError, match="NaN"):
        acc.add(np.full((4, 4), np.nan), box(0, 0, 1, 1))
    with pytest.raises(ValueError, match="x1 >= x0"):
        acc.add(np.zeros((4, 4)), box(3, 0, 1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        acc.add(np.zeros((4, 4)), box(-1, 0, 1, 1))
    with pytest.raises(ValueError, match="cam_thresholds"):
        BoxAccumulator(cam_thresholds=(0.5, 0.2))
    with pytest.raises(ValueError, match="multi_contour"):
        acc.merge(BoxAccumulator(multi_contour=False))
    with pytest.raises(RuntimeError, match="No image"):
        acc.max_box_acc()


# ---------------------------------------------------------------- agreement with the reference


def white_noise_maps(num_maps, size, seed):
    """Bicubic upsampled uniform noise: many peaks, holes and merges (the hard case)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(num_maps):
        cells = int(rng.integers(3, 9))
        maps.append(normalize_scoremap(resize_scoremap(rng.random((cells, cells)), size)))
    return maps


def random_boxes(rng, size, count):
    h, w = size
    x0, x1 = np.sort(rng.integers(0, w, size=(count, 2)), axis=1).T
    y0, y1 = np.sort(rng.integers(0, h, size=(count, 2)), axis=1).T
    return np.stack([x0, y0, x1, y1], axis=1)


def reference_accuracy(maps, gts, cam_thresholds, multi_contour, ious=IOUS):
    hits = sum(
        reference_box_hits(m, g, cam_thresholds, ious, multi_contour) for m, g in zip(maps, gts)
    )
    return hits * 100.0 / float(len(maps))


@pytest.mark.parametrize("step", [0.01, 0.002])
def test_fast_path_equals_reference_protocol_on_random_maps(step):
    rng = np.random.default_rng(7)
    size = (96, 112)
    maps = white_noise_maps(8, size, seed=1)
    cam_maps, cam_gts = cam_like_scoremaps(8, size=112, seed=2)
    maps += [m[:96] for m in cam_maps]
    maps += [np.clip(m + 0.02 * rng.random(size), 0, 1) for m in white_noise_maps(4, size, 3)]
    gts = [random_boxes(rng, size, int(rng.integers(1, 3))) for _ in maps[:8]]
    gts += [np.minimum(g, [111, 95, 111, 95]) for g in cam_gts]
    gts += [random_boxes(rng, size, 1) for _ in range(4)]
    cam_thresholds = np.arange(0, 1, step)
    acc = BoxAccumulator(iou_thresholds=IOUS, cam_thresholds=cam_thresholds)
    for scoremap, gt in zip(maps, gts):
        acc.add(scoremap, gt)
    for multi_contour in (True, False):
        expected = reference_accuracy(maps, gts, cam_thresholds, multi_contour)
        np.testing.assert_array_equal(acc.accuracy(multi_contour=multi_contour), expected)


def test_ties_for_the_largest_contour_follow_opencv_order():
    # single pixels and a 2-pixel line: every contour has area 0, OpenCV's first one wins
    scoremap = np.zeros((40, 40))
    spots = [(30, 5, 1.0), (5, 30, 0.9), (20, 20, 1.0), (10, 10, 0.8), (25, 12, 0.95)]
    for y, x, value in spots:
        scoremap[y, x] = value
    scoremap[35, 30:32] = 0.85
    gts = [box(x - 2, y - 2, x + 2, y + 2) for y, x, _ in spots] + [box(29, 34, 32, 36)]
    cam_thresholds = np.arange(0, 1, 0.01)
    picked = np.zeros(len(cam_thresholds), dtype=int)
    for gt in gts:
        acc = BoxAccumulator(iou_thresholds=(0.1,), cam_thresholds=cam_thresholds)
        acc.add(scoremap, gt)
        hits = reference_box_hits(scoremap, gt, cam_thresholds, (0.1,), multi_contour=False)
        np.testing.assert_array_equal(acc.accuracy(multi_contour=False), hits * 100.0)
        picked += hits[0]
    assert (picked == 1).all()  # at every threshold exactly one spot is the largest contour


def test_levels_are_traced_once_and_only_when_they_can_count(monkeypatch):
    traced = []
    trace = wsol_boxes._traced_box_ious
    monkeypatch.setattr(wsol_boxes, "_traced_box_ious", lambda *a: traced.append(a[1]) or trace(*a))
    scoremap = normalize_scoremap(
        resize_scoremap(np.random.default_rng(0).random((5, 5)), (64, 64))
    )
    gt = box(8, 8, 40, 50)
    # 1000 thresholds, at most 255 distinct integer levels below the maximum, traced in one call
    acc = BoxAccumulator(iou_thresholds=(0.0,), cam_thresholds=np.arange(0, 1, 0.001))
    acc.add(scoremap, gt)
    assert len(traced) == 1 and len(traced[0]) == len(np.unique(traced[0])) <= 255
    # a blob in one corner and the GT box in the other: no level can reach IoU 0.3
    traced.clear()
    acc = BoxAccumulator(iou_thresholds=IOUS)
    acc.add(block_map((64, 64), (0, 0, 9, 9)), box(40, 40, 63, 63))
    assert traced == [] and acc.max_box_acc() == {0.3: 0.0, 0.5: 0.0, 0.7: 0.0}


def test_merge_equals_one_accumulator_over_all_images():
    maps, gts = cam_like_scoremaps(6, size=64, seed=5)
    flags = [True, False, True, True, False, False]
    whole, first, second = (BoxAccumulator(iou_thresholds=IOUS) for _ in range(3))
    for i, (scoremap, gt, flag) in enumerate(zip(maps, gts, flags)):
        whole.add(scoremap, gt, correct_class=flag)
        (first if i < 2 else second).add(scoremap, gt, correct_class=flag)
    first.merge(second)
    assert first.num_images == whole.num_images == 6
    for mode in (True, False):
        np.testing.assert_array_equal(first.accuracy(mode), whole.accuracy(mode))
    assert first.localization_accuracy() == whole.localization_accuracy()
    assert str(first.size_bin_accuracy()) == str(whole.size_bin_accuracy())


def test_benchmark_checks_agreement_and_reports_speed():
    result = benchmark_wsol_metrics(num_maps=3, size=64, num_thresholds=20)
    assert result["num_maps"] == 3 and result["num_thresholds"] == 20
    assert result["maps_per_s"] > 0 and result["reference_maps_per_s"] > 0
    assert result["speedup"] == pytest.approx(result["maps_per_s"] / result["reference_maps_per_s"])
    both = result["maps_per_s"] / result["reference_both_maps_per_s"]
    assert result["speedup_both"] == pytest.approx(both)


# ---------------------------------------------------------------- PxAP


def reference_pxap(scoremaps, masks, cam_thresholds):
    """The reference's histogram route (np.histogram over tau + [1, 2, 3]), written plainly."""
    edges = np.append(cam_thresholds, [1.0, 2.0, 3.0])
    positive = sum(np.histogram(s[m == 1], bins=edges)[0] for s, m in zip(scoremaps, masks))
    negative = sum(np.histogram(s[m == 0], bins=edges)[0] for s, m in zip(scoremaps, masks))
    tp, fp = positive[::-1].cumsum(), negative[::-1].cumsum()
    with np.errstate(invalid="ignore"):
        precision = tp / (tp + fp)
    recall = tp / positive.sum()
    return (precision[1:] * np.diff(recall))[(tp + fp)[1:] != 0].sum() * 100


def test_pxap_equals_reference_histograms_on_random_maps():
    rng = np.random.default_rng(3)
    maps = white_noise_maps(5, (40, 50), seed=4)
    maps[0][:2] = 1.0  # scores exactly at 1 fall in [1, 2)
    masks = [(rng.random((40, 50)) < 0.3).astype(np.uint8) for _ in maps]
    for thresholds in (np.arange(0, 1, 0.01), np.arange(0.05, 1, 0.1)):
        acc = PxAPAccumulator(cam_thresholds=thresholds)
        for scoremap, mask in zip(maps, masks):
            acc.add(scoremap, mask)
        assert acc.pxap() == pytest.approx(reference_pxap(maps, masks, thresholds), rel=1e-12)


def test_pxap_perfect_map_is_100():
    mask = block_map((32, 32), (4, 4, 20, 12)).astype(np.uint8)
    acc = PxAPAccumulator()
    acc.add(mask.astype(np.float64), mask)
    assert acc.pxap() == pytest.approx(100.0)


def test_pxap_hand_computed_with_and_without_ignore():
    scores = np.array([[0.9, 0.6, 0.4, 0.1]])
    mask = np.array([[1, 0, 1, 0]])
    # bins [0, .5), [.5, 1), [1, 2), [2, 3]; from the top: TP 0, 0, 1, 2 and FP 0, 0, 1, 2
    # precision (nan, nan, 1/2, 1/2), recall (0, 0, 1/2, 1): AP = 1/2 * 1/2 + 1/2 * 1/2
    acc = PxAPAccumulator(cam_thresholds=(0.0, 0.5))
    acc.add(scores, mask)
    assert acc.pxap() == pytest.approx(50.0)
    # ignoring the 0.6 background pixel: FP 0, 0, 0, 1, AP = 1 * 1/2 + 2/3 * 1/2
    ignored = PxAPAccumulator(cam_thresholds=(0.0, 0.5))
    ignored.add(scores, mask, ignore_mask=np.array([[1, 1, 0, 0]]))  # foreground wins over ignore
    assert ignored.pxap() == pytest.approx(100 * (0.5 + 1 / 3))
    acc.merge(ignored)
    # TP 0, 0, 2, 4 and FP 0, 0, 1, 3: (2/3) * (1/2) + (4/7) * (1/2)
    assert acc.pxap() == pytest.approx(100 * (1 / 3 + 2 / 7))
    with pytest.raises(RuntimeError, match="foreground"):
        PxAPAccumulator().pxap()
    with pytest.raises(ValueError, match="same shape"):
        PxAPAccumulator().add(scores, mask[:, :2])
