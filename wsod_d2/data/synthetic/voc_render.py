"""Rendering one image of the synthetic VOC dataset, with its annotations.

Classes are sampled with imbalanced weights, objects are placed so that none covers another's
part (some across the image border, truncated), then drawn with the shared renderer
:mod:`wsod_d2.data.synthetic.render`. Images are rendered independently: image ``index`` of split
``split`` draws from a numpy Generator seeded by ``(seed, split, index)``, so its content does not
depend on the other images.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

from wsod_d2.data.synthetic.render import (
    PART_ANGLE_JITTER,
    PART_COLOUR_JITTER,
    PART_INSET,
    background,
    body_outline,
    class_part,
    fill_polygon,
    mask_box,
    paint_family,
    part_polygon,
)
from wsod_d2.data.synthetic.voc import (
    SPLITS,
    SyntheticImage,
    SyntheticObject,
    SyntheticVOCSpec,
    synthetic_image_id,
)

__all__ = ["render_synthetic_image"]

_SPLIT_TAGS = {"trainval": 0, "test": 1}
_CLASS_WEIGHT_TAG = 2

_PART_CLEARANCE = 2  # pixels kept free of other objects around every part
_MAX_EXTENT = 0.95  # an object spans at most this fraction of the image side
_MIN_VISIBLE_BOX = 0.5  # truncated objects keep at least this fraction of their box area
_TRUNCATION_CUT = (0.05, 0.5)  # fraction of a truncated object's extent outside the image


@dataclass
class _Candidate:
    class_id: int
    body: np.ndarray  # (P, 2) outline points, image coordinates
    mask: np.ndarray  # (H, W) bool, body and part, clipped to the image
    part_mask: np.ndarray  # (H, W) bool
    box: Tuple[int, int, int, int]
    part_box: Tuple[int, int, int, int]
    truncated: bool


def _class_weights(spec: SyntheticVOCSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, _CLASS_WEIGHT_TAG, spec.num_classes])
    weights = np.exp(spec.class_imbalance * rng.standard_normal(spec.num_classes))
    return weights / weights.sum()


def _image_size(rng: np.random.Generator, spec: SyntheticVOCSpec) -> Tuple[int, int]:
    long_side = int(rng.integers(spec.min_size, spec.max_size + 1))
    short_side = int(round(long_side / rng.uniform(1.0, spec.max_aspect)))
    short_side = min(max(short_side, spec.min_size), long_side)
    if rng.random() < spec.landscape_prob:
        return long_side, short_side
    return short_side, long_side


def _box_area(box: Tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)


def _box_iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    inter = _box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / (_box_area(a) + _box_area(b) - inter)


def _sample_candidate(
    rng: np.random.Generator,
    spec: SyntheticVOCSpec,
    w: int,
    h: int,
    class_id: int,
    *,
    min_frac: float,
    inside: bool,
) -> Optional[_Candidate]:
    """One random placement of an object of class_id; None if it breaks the truncation rules."""
    short = min(w, h)
    frac = min_frac * (spec.max_object_frac / min_frac) ** (rng.random() ** spec.size_power)
    side = frac * short
    aspect = math.exp(rng.uniform(-math.log(spec.body_aspect), math.log(spec.body_aspect)))
    half_w, half_h = 0.5 * side * math.sqrt(aspect), 0.5 * side / math.sqrt(aspect)
    grow = max(1.0, 0.5 * spec.min_body_px / min(half_w, half_h))
    half_w, half_h = grow * half_w, grow * half_h
    body, point = body_outline(rng, half_w, half_h)

    shape, _, direction = class_part(class_id)
    direction += rng.normal(0.0, PART_ANGLE_JITTER)
    part_side = rng.uniform(*spec.part_frac) * side
    part_side = min(max(part_side, spec.min_part_px), spec.max_part_frac * 2 * min(half_w, half_h))
    part_radius = 0.5 * part_side
    anchor = point(np.array(direction))
    dist = float(np.hypot(*anchor))
    centre = anchor * max(dist - PART_INSET * part_radius, 0.0) / max(dist, 1e-6)
    part = centre + part_polygon(shape, part_radius, direction)

    points = np.concatenate([body, part])
    extent = points.max(axis=0) - points.min(axis=0)
    scale = min(1.0, _MAX_EXTENT * w / extent[0], _MAX_EXTENT * h / extent[1])
    body, part, points = body * scale, part * scale, points * scale
    lo, hi = points.min(axis=0), points.max(axis=0)
    offset = np.array([rng.uniform(-lo[0], w - 1 - hi[0]), rng.uniform(-lo[1], h - 1 - hi[1])])
    if not inside:
        # Push the object across one random image border by a random part of its extent.
        axis, side = int(rng.integers(2)), int(rng.integers(2))
        cut = rng.uniform(*_TRUNCATION_CUT) * (hi[axis] - lo[axis])
        offset[axis] = -lo[axis] - cut if side == 0 else (w, h)[axis] - 1 - hi[axis] + cut
    body, part = body + offset, part + offset
    full = np.round(np.concatenate([body, part]))
    part_lo, part_hi = np.round(part).min(axis=0), np.round(part).max(axis=0)
    if part_lo.min() < 0 or part_hi[0] > w - 1 or part_hi[1] > h - 1:
        return None
    mask = fill_polygon((h, w), body) | fill_polygon((h, w), part)
    part_mask = fill_polygon((h, w), part)
    box = mask_box(mask)
    full_lo, full_hi = full.min(axis=0), full.max(axis=0)
    if _box_area(box) < _MIN_VISIBLE_BOX * _box_area((*full_lo, *full_hi)):
        return None
    truncated = bool(full_lo.min() < 0 or full_hi[0] > w - 1 or full_hi[1] > h - 1)
    return _Candidate(class_id, body, mask, part_mask, box, mask_box(part_mask), truncated)


def _place_objects(
    rng: np.random.Generator, spec: SyntheticVOCSpec, w: int, h: int, guaranteed: Optional[int]
) -> List[_Candidate]:
    """Sample classes and placements; no object ever covers another object's part."""
    probs = np.asarray(spec.object_count_probs, np.float64)
    count = 1 + int(rng.choice(len(probs), p=probs / probs.sum()))
    weights = _class_weights(spec)
    classes = [int(rng.choice(spec.num_classes, p=weights)) for _ in range(count)]
    if guaranteed is not None:
        classes[0] = guaranteed
    if count >= 2 and rng.random() < spec.repeat_prob:
        classes[1] = classes[0]

    placed: List[_Candidate] = []
    taken = np.zeros((h, w), bool)  # pixels of placed objects
    part_zone = np.zeros((h, w), bool)  # pixels near placed parts
    kernel = np.ones((2 * _PART_CLEARANCE + 1,) * 2, np.uint8)
    for k, class_id in enumerate(classes):
        is_guaranteed = guaranteed is not None and k == 0
        min_frac = spec.guaranteed_min_frac if is_guaranteed else spec.min_object_frac
        for attempt in range(spec.max_tries):
            # The first object always fits: its last attempt lies fully inside the image.
            inside = rng.random() >= spec.truncation_prob or is_guaranteed
            inside |= k == 0 and attempt == spec.max_tries - 1
            cand = _sample_candidate(rng, spec, w, h, class_id, min_frac=min_frac, inside=inside)
            if cand is None:
                continue
            zone = cv2.dilate(cand.part_mask.astype(np.uint8), kernel).astype(bool)
            if (cand.mask & part_zone).any() or (zone & taken).any():
                continue
            if any(_box_iou(cand.box, other.box) > spec.max_box_iou for other in placed):
                continue
            placed.append(cand)
            taken |= cand.mask
            part_zone |= zone
            break
    return placed


def render_synthetic_image(spec: SyntheticVOCSpec, split: str, index: int) -> SyntheticImage:
    """Render image `index` (0-based) of `split` ("trainval" or "test") exactly as it is written
    to disk, together with its annotations."""
    if split not in _SPLIT_TAGS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    size = spec.num_trainval if split == "trainval" else spec.num_test
    if not 0 <= index < size:
        raise ValueError(f"index={index} out of range for split {split!r} with {size} images")
    rng = np.random.default_rng([spec.seed, _SPLIT_TAGS[split], index])
    w, h = _image_size(rng, spec)
    image = background(rng, h, w)

    # Distractors reuse body textures but carry no part, so texture alone never means "object".
    lo, hi = spec.num_distractors
    for _ in range(int(rng.integers(lo, hi + 1))):
        side = rng.uniform(*spec.distractor_frac) * min(w, h)
        aspect = math.exp(rng.uniform(-math.log(spec.body_aspect), math.log(spec.body_aspect)))
        half_w, half_h = 0.5 * side * math.sqrt(aspect), 0.5 * side / math.sqrt(aspect)
        outline, _ = body_outline(rng, half_w, half_h)
        mask = fill_polygon((h, w), outline + rng.uniform((0, 0), (w - 1, h - 1)))
        paint_family(rng, image, mask, int(rng.integers(spec.num_families)), spec.colour_jitter)

    guaranteed = index if index < spec.num_classes else None
    placed = _place_objects(rng, spec, w, h, guaranteed)
    # Larger bodies go behind smaller ones; the class-guaranteeing object is drawn on top.
    order = sorted(
        range(len(placed)),
        key=lambda k: (k == 0 and guaranteed is not None, -int(placed[k].mask.sum())),
    )
    instance_map = np.full((h, w), -1, np.int16)
    for k in order:
        cand = placed[k]
        body = fill_polygon((h, w), cand.body)
        paint_family(rng, image, body, cand.class_id % spec.num_families, spec.colour_jitter)
        _, colour, _ = class_part(cand.class_id)
        jitter = rng.normal(0.0, PART_COLOUR_JITTER, 3)
        image[cand.part_mask] = np.asarray(colour, np.float32) + jitter.astype(np.float32)
        instance_map[cand.mask] = k

    if spec.noise_std > 0:
        image += spec.noise_std * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    objects = []
    for k, cand in enumerate(placed):
        body_area = max(cv2.contourArea(cand.body.astype(np.float32)), 1.0)
        visible = float((instance_map == k).sum()) / body_area
        small = math.sqrt(_box_area(cand.box)) < spec.difficult_size_frac * min(w, h)
        objects.append(
            SyntheticObject(
                class_id=cand.class_id,
                box=cand.box,
                part_box=cand.part_box,
                truncated=cand.truncated,
                difficult=small or visible < spec.difficult_min_visible,
                visible_frac=min(visible, 1.0),
            )
        )
    return SyntheticImage(
        synthetic_image_id(spec, split, index), image, instance_map, tuple(objects)
    )
