"""Synthetic dataset in the PASCAL VOC2007 layout with part-dominated objects.

Every object is a large textured body plus a small part. The body's texture and colour come from
a "family" shared by several classes, so the body alone says little about the class; the part
(a class-unique shape and colour at a class-typical spot on the body's outline) identifies the
class exactly. A detector that boxes only the most discriminative region therefore misses the
ground-truth box (IoU < 0.5), which is the central difficulty of weakly supervised detection.
Backgrounds are smooth colour gradients with noise and distractor fragments that reuse body
textures but never carry a part.

Images are rendered independently: image ``index`` of split ``split`` draws from a numpy
Generator seeded by ``(seed, split, index)``, so its content does not depend on the other images.
Besides trainval and test, ImageSets/Main has VOC's train and val, which halve trainval.
"""

import dataclasses
import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from wsod_d2.data.synthetic.generated import DatasetRecipe, ensure_generated, generate

__all__ = [
    "CLASS_NAMES",
    "SyntheticVOCSpec",
    "SyntheticObject",
    "SyntheticImage",
    "split_image_ids",
    "render_synthetic_image",
    "generate_synthetic_voc",
    "ensure_synthetic_voc",
]

# fmt: off
CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# fmt: on

# Bumped whenever rendering changes, so a dataset made by older code is not silently reused.
GENERATOR_VERSION = 1
MARKER_NAME = ".synthvoc_spec.json"
SPLITS = ("trainval", "test")
_SPLIT_TAGS = {"trainval": 0, "test": 1}
_CLASS_WEIGHT_TAG = 2

# Body families: (texture, dark colour, light colour); muted so no body matches a part colour.
_FAMILIES = (
    ("stripes", (118, 84, 54), (186, 152, 108)),
    ("checker", (88, 98, 112), (160, 166, 172)),
    ("spots", (108, 118, 58), (172, 170, 118)),
    ("mottled", (150, 92, 72), (204, 162, 140)),
    ("rings", (68, 108, 106), (142, 172, 160)),
)
# Saturated part colours (red, green, blue, yellow, magenta) and part shapes.
_PART_COLOURS = ((228, 26, 28), (30, 190, 60), (40, 80, 235), (245, 210, 0), (210, 40, 210))
_PART_SHAPES = ("circle", "triangle", "square", "star")
_PART_DIRECTIONS = 8
# Body outlines: (superellipse exponent, max amplitude of each wobble harmonic).
_BODY_SHAPES = ((2.0, 0.0), (4.0, 0.0), (16.0, 0.0), (2.5, 0.1))
_BODY_HARMONICS = (2, 3, 4)
_OUTLINE_POINTS = 64
_PART_INSET = 0.8  # part centre sits this many part radii inside the body's outline
_PART_ANGLE_JITTER = 0.25  # radians around the class-typical direction
_PART_CLEARANCE = 2  # pixels kept free of other objects around every part
_MAX_EXTENT = 0.95  # an object spans at most this fraction of the image side
_MIN_VISIBLE_BOX = 0.5  # truncated objects keep at least this fraction of their box area
_TRUNCATION_CUT = (0.05, 0.5)  # fraction of a truncated object's extent outside the image
_TEXTURE_PERIOD = (5.0, 12.0)  # pixels
_SHADING = 0.15  # bodies are lit by a ramp from 1 - s to 1 + s
_BACKGROUND_RANGE = (40.0, 215.0)
_BACKGROUND_SATURATION = 0.6
_BACKGROUND_NOISE = 14.0
_BACKGROUND_CHROMA_NOISE = 5.0
_BACKGROUND_NOISE_CELL = 24  # pixels per cell of the smooth background noise
_PART_COLOUR_JITTER = 8.0


@dataclass(frozen=True)
class SyntheticVOCSpec:
    """Everything that determines the generated dataset; two equal specs give identical files."""

    num_trainval: int = 500
    num_test: int = 300
    num_classes: int = 20  # the first N of CLASS_NAMES
    seed: int = 0
    min_size: int = 224  # each image side lies in [min_size, max_size] pixels
    max_size: int = 320
    max_aspect: float = 1.5  # long side / short side at most this
    landscape_prob: float = 0.7
    object_count_probs: Tuple[float, ...] = (0.4, 0.33, 0.2, 0.07)  # P(1, 2, 3, 4 objects)
    repeat_prob: float = 0.4  # P(second object repeats the first one's class)
    class_imbalance: float = 0.4  # std of log class weights
    classes_per_family: int = 4  # classes sharing one body texture/colour family
    min_object_frac: float = 0.05  # sqrt(body area) / short image side, lower bound
    max_object_frac: float = 0.8
    size_power: float = 0.75  # frac = min * (max / min) ** (u ** p); p < 1 favours large objects
    guaranteed_min_frac: float = 0.25  # lower size bound of the object that guarantees its class
    body_aspect: float = 2.0  # body width / height in [1 / a, a]
    min_body_px: int = 10  # shorter body side at least this, so the part stays much smaller
    part_frac: Tuple[float, float] = (0.12, 0.2)  # part side / sqrt(body area)
    max_part_frac: float = 0.3  # part side / shorter body side, upper bound
    min_part_px: int = 4
    max_box_iou: float = 0.3  # between ground-truth boxes of one image
    truncation_prob: float = 0.35  # P(an object is placed across the image border)
    colour_jitter: float = 12.0  # std of per-instance body colour jitter
    num_distractors: Tuple[int, int] = (2, 6)  # inclusive range of distractor fragments
    distractor_frac: Tuple[float, float] = (0.04, 0.15)  # distractor size / short image side
    difficult_size_frac: float = 0.08  # sqrt(box area) / short side below this: difficult
    difficult_min_visible: float = 0.4  # visible fraction of the body below this: difficult
    noise_std: float = 4.0  # per-pixel Gaussian noise
    jpeg_quality: int = 90
    max_tries: int = 30  # placement attempts per object

    def __post_init__(self):
        # Config systems hand over lists; tuples keep the spec hashable and comparable.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

        def check(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticVOCSpec.{name}={getattr(self, name)!r}: {rule}")

        check(self.num_trainval >= 1, "num_trainval", "must be >= 1")
        check(self.num_test >= 1, "num_test", "must be >= 1")
        check(self.num_trainval + self.num_test <= 999999, "num_test", "ids have 6 digits")
        check(1 <= self.num_classes <= len(CLASS_NAMES), "num_classes", "must be in [1, 20]")
        check(self.seed >= 0, "seed", "must be >= 0")
        check(32 <= self.min_size <= self.max_size, "min_size", "need 32 <= min_size <= max_size")
        check(self.max_aspect >= 1.0, "max_aspect", "must be >= 1")
        check(0.0 <= self.landscape_prob <= 1.0, "landscape_prob", "must be in [0, 1]")
        probs = self.object_count_probs
        check(
            len(probs) >= 1 and min(probs) >= 0 and sum(probs) > 0,
            "object_count_probs",
            "needs non-negative entries with a positive sum",
        )
        check(0.0 <= self.repeat_prob <= 1.0, "repeat_prob", "must be in [0, 1]")
        check(self.class_imbalance >= 0.0, "class_imbalance", "must be >= 0")
        check(self.classes_per_family >= 1, "classes_per_family", "must be >= 1")
        check(
            0.0 < self.min_object_frac <= self.max_object_frac <= 1.0,
            "min_object_frac",
            "need 0 < min_object_frac <= max_object_frac <= 1",
        )
        check(
            self.min_object_frac <= self.guaranteed_min_frac <= self.max_object_frac,
            "guaranteed_min_frac",
            "must lie in [min_object_frac, max_object_frac]",
        )
        check(self.size_power > 0.0, "size_power", "must be > 0")
        check(self.body_aspect >= 1.0, "body_aspect", "must be >= 1")
        check(
            len(self.part_frac) == 2 and 0.0 < self.part_frac[0] <= self.part_frac[1],
            "part_frac",
            "needs (low, high) with 0 < low <= high",
        )
        # Part area <= max_part_frac**2 of the body box keeps its IoU with the GT box under 0.5.
        check(0.0 < self.max_part_frac <= 0.5, "max_part_frac", "must be in (0, 0.5]")
        check(self.min_part_px >= 1, "min_part_px", "must be >= 1")
        check(4 <= self.min_body_px <= self.min_size // 2, "min_body_px", "in [4, min_size / 2]")
        check(0.0 <= self.max_box_iou <= 1.0, "max_box_iou", "must be in [0, 1]")
        check(0.0 <= self.truncation_prob <= 1.0, "truncation_prob", "must be in [0, 1]")
        check(self.colour_jitter >= 0.0, "colour_jitter", "must be >= 0")
        lo, hi = self.num_distractors
        check(0 <= lo <= hi, "num_distractors", "needs (low, high) with 0 <= low <= high")
        lo, hi = self.distractor_frac
        check(0.0 < lo <= hi <= 1.0, "distractor_frac", "needs 0 < low <= high <= 1")
        check(self.difficult_size_frac >= 0.0, "difficult_size_frac", "must be >= 0")
        check(0.0 <= self.difficult_min_visible <= 1.0, "difficult_min_visible", "in [0, 1]")
        check(self.noise_std >= 0.0, "noise_std", "must be >= 0")
        check(1 <= self.jpeg_quality <= 100, "jpeg_quality", "must be in [1, 100]")
        check(self.max_tries >= 1, "max_tries", "must be >= 1")

    @property
    def class_names(self) -> Tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]

    @property
    def num_families(self) -> int:
        return min(len(_FAMILIES), math.ceil(self.num_classes / self.classes_per_family))

    def to_json_dict(self) -> Dict:
        """The spec as plain JSON types (tuples become lists), as stored in the marker file."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass(frozen=True)
class SyntheticObject:
    """One annotated object. Boxes are 0-based inclusive pixel indices (x0, y0, x1, y1)."""

    class_id: int
    box: Tuple[int, int, int, int]  # tight box of body and part, clipped to the image
    part_box: Tuple[int, int, int, int]  # tight box of the class-discriminative part
    truncated: bool
    difficult: bool
    visible_frac: float  # visible body pixels / unclipped body area


@dataclass(frozen=True)
class SyntheticImage:
    """A rendered image: image (H, W, 3) uint8 RGB; instance_map (H, W) int16, the index into
    objects of the object visible at each pixel, -1 elsewhere."""

    image_id: str
    image: np.ndarray
    instance_map: np.ndarray
    objects: Tuple[SyntheticObject, ...]


@dataclass
class _Candidate:
    class_id: int
    body: np.ndarray  # (P, 2) outline points, image coordinates
    mask: np.ndarray  # (H, W) bool, body and part, clipped to the image
    part_mask: np.ndarray  # (H, W) bool
    box: Tuple[int, int, int, int]
    part_box: Tuple[int, int, int, int]
    truncated: bool


def _image_id(spec: SyntheticVOCSpec, split: str, index: int) -> str:
    # VOC-style 6-digit ids: trainval images come first, then test; the two never overlap.
    return f"{index + 1 + (spec.num_trainval if split == 'test' else 0):06d}"


def split_image_ids(spec: SyntheticVOCSpec) -> Dict[str, List[str]]:
    """Image ids of every split: {"trainval": [...], "test": [...]}."""
    sizes = {"trainval": spec.num_trainval, "test": spec.num_test}
    return {split: [_image_id(spec, split, i) for i in range(n)] for split, n in sizes.items()}


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


def _mixing_map(rng: np.random.Generator, texture: str, h: int, w: int) -> np.ndarray:
    """Texture pattern in [0, 1]: (h, w) float32."""
    period = rng.uniform(*_TEXTURE_PERIOD)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0.0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = -xs * np.sin(angle) + ys * np.cos(angle)
    if texture == "stripes":
        return 0.5 + 0.5 * np.tanh(2.5 * np.sin(2 * np.pi * u / period))
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if texture == "spots":
        wave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        return np.clip((wave - 0.3) * 4.0, 0.0, 1.0)
    if texture == "mottled":
        cells = rng.standard_normal((int(h / period) + 2, int(w / period) + 2)).astype(np.float32)
        smooth = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(0.5 + 0.35 * smooth, 0.0, 1.0)
    if texture == "rings":
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = np.hypot(xs - cx, ys - cy)
        return 0.5 + 0.5 * np.tanh(2.5 * np.sin(2 * np.pi * radius / period))
    raise ValueError(f"unknown texture {texture!r}")


def _texture(rng: np.random.Generator, family: int, h: int, w: int, jitter: float) -> np.ndarray:
    """A family's textured colour field with per-instance colour jitter and shading: (h, w, 3)."""
    name, dark, light = _FAMILIES[family]
    dark = np.asarray(dark, np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)
    light = np.asarray(light, np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)
    t = _mixing_map(rng, name, h, w)[..., None]
    angle = rng.uniform(0.0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(h, w, 1)
    shade = 1.0 + _SHADING * (2.0 * (ramp - ramp.mean()))
    return (dark * (1.0 - t) + light * t) * shade[..., None]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth two-colour gradient plus smooth noise: (h, w, 3) float32."""
    colours = rng.uniform(*_BACKGROUND_RANGE, size=(2, 3)).astype(np.float32)
    grey = colours.mean(axis=1, keepdims=True)
    colours = grey + _BACKGROUND_SATURATION * (colours - grey)
    angle = rng.uniform(0.0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    t = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0))[..., None]
    cells = (h // _BACKGROUND_NOISE_CELL + 2, w // _BACKGROUND_NOISE_CELL + 2)
    noise = rng.standard_normal((2, *cells, 3)).astype(np.float32)
    # Mostly brightness noise: strong colour blotches would mimic the saturated parts.
    noise = _BACKGROUND_NOISE * noise[0, ..., :1] + _BACKGROUND_CHROMA_NOISE * noise[1]
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return colours[0] * (1.0 - t) + colours[1] * t + noise


def _outline(
    rng: np.random.Generator, half_w: float, half_h: float
) -> Tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A random body outline around the origin: (P, 2) points, and a function mapping an angle
    to the outline point in that direction."""
    exponent, wobble = _BODY_SHAPES[int(rng.integers(len(_BODY_SHAPES)))]
    amps = rng.uniform(0.0, wobble, len(_BODY_HARMONICS))
    phases = rng.uniform(0.0, 2 * np.pi, len(_BODY_HARMONICS))

    def point(t: np.ndarray) -> np.ndarray:
        radius = 1.0 + sum(a * np.cos(k * t + p) for k, a, p in zip(_BODY_HARMONICS, amps, phases))
        c, s = np.cos(t), np.sin(t)
        x = half_w * radius * np.sign(c) * np.abs(c) ** (2.0 / exponent)
        y = half_h * radius * np.sign(s) * np.abs(s) ** (2.0 / exponent)
        return np.stack([x, y], axis=-1)

    return point(np.linspace(0.0, 2 * np.pi, _OUTLINE_POINTS, endpoint=False)), point


def _part_polygon(shape: str, radius: float, angle: float) -> np.ndarray:
    """Part outline of circumradius `radius` around the origin, rotated by angle: (Q, 2)."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
        r = np.ones_like(t)
    elif shape == "triangle":
        t = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
        r = np.ones_like(t)
    elif shape == "square":
        t = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        r = np.ones_like(t)
    elif shape == "star":
        t = np.linspace(0.0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    else:
        raise ValueError(f"unknown part shape {shape!r}")
    t = t + angle
    return radius * np.stack([r * np.cos(t), r * np.sin(t)], axis=-1)


def _class_part(class_id: int) -> Tuple[str, Tuple[int, int, int], float]:
    """Class-unique (shape, colour) pair and class-typical direction on the body outline."""
    shape = _PART_SHAPES[class_id // len(_PART_COLOURS)]
    colour = _PART_COLOURS[(class_id + class_id // len(_PART_COLOURS)) % len(_PART_COLOURS)]
    return shape, colour, 2 * np.pi * (class_id % _PART_DIRECTIONS) / _PART_DIRECTIONS


def _fill(hw: Tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(hw, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def _mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _paint(
    rng: np.random.Generator,
    spec: SyntheticVOCSpec,
    image: np.ndarray,
    mask: np.ndarray,
    family: int,
) -> None:
    """Fill mask (H, W) of image (H, W, 3) with a fresh instance of a body family's texture."""
    box = _mask_box(mask)
    if box is None:
        return
    x0, y0, x1, y1 = box
    region, inside = image[y0 : y1 + 1, x0 : x1 + 1], mask[y0 : y1 + 1, x0 : x1 + 1]
    texture = _texture(rng, family, y1 - y0 + 1, x1 - x0 + 1, spec.colour_jitter)
    region[inside] = texture[inside]


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
    body, point = _outline(rng, half_w, half_h)

    shape, _, direction = _class_part(class_id)
    direction += rng.normal(0.0, _PART_ANGLE_JITTER)
    part_side = rng.uniform(*spec.part_frac) * side
    part_side = min(max(part_side, spec.min_part_px), spec.max_part_frac * 2 * min(half_w, half_h))
    part_radius = 0.5 * part_side
    anchor = point(np.array(direction))
    dist = float(np.hypot(*anchor))
    centre = anchor * max(dist - _PART_INSET * part_radius, 0.0) / max(dist, 1e-6)
    part = centre + _part_polygon(shape, part_radius, direction)

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
    mask = _fill((h, w), body) | _fill((h, w), part)
    part_mask = _fill((h, w), part)
    box = _mask_box(mask)
    full_lo, full_hi = full.min(axis=0), full.max(axis=0)
    if _box_area(box) < _MIN_VISIBLE_BOX * _box_area((*full_lo, *full_hi)):
        return None
    truncated = bool(full_lo.min() < 0 or full_hi[0] > w - 1 or full_hi[1] > h - 1)
    return _Candidate(class_id, body, mask, part_mask, box, _mask_box(part_mask), truncated)


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
    image = _background(rng, h, w)

    # Distractors reuse body textures but carry no part, so texture alone never means "object".
    lo, hi = spec.num_distractors
    for _ in range(int(rng.integers(lo, hi + 1))):
        side = rng.uniform(*spec.distractor_frac) * min(w, h)
        aspect = math.exp(rng.uniform(-math.log(spec.body_aspect), math.log(spec.body_aspect)))
        outline, _ = _outline(rng, 0.5 * side * math.sqrt(aspect), 0.5 * side / math.sqrt(aspect))
        mask = _fill((h, w), outline + rng.uniform((0, 0), (w - 1, h - 1)))
        _paint(rng, spec, image, mask, int(rng.integers(spec.num_families)))

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
        _paint(rng, spec, image, _fill((h, w), cand.body), cand.class_id % spec.num_families)
        _, colour, _ = _class_part(cand.class_id)
        jitter = rng.normal(0.0, _PART_COLOUR_JITTER, 3)
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
    return SyntheticImage(_image_id(spec, split, index), image, instance_map, tuple(objects))


def _annotation_xml(folder: str, image: SyntheticImage, class_names: Tuple[str, ...]) -> bytes:
    """VOC XML; boxes in VOC's 1-based inclusive convention (a full-image box is 1..W)."""

    def add(parent: ET.Element, tag: str, text: Optional[object] = None) -> ET.Element:
        element = ET.SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    h, w = image.image.shape[:2]
    root = ET.Element("annotation")
    add(root, "folder", folder)
    add(root, "filename", f"{image.image_id}.jpg")
    source = add(root, "source")
    add(source, "database", "wsod_d2 synthetic VOC")
    add(source, "annotation", "wsod_d2 synthetic VOC")
    add(source, "image", "rendered")
    size = add(root, "size")
    add(size, "width", w)
    add(size, "height", h)
    add(size, "depth", 3)
    add(root, "segmented", 0)
    for obj in image.objects:
        element = add(root, "object")
        add(element, "name", class_names[obj.class_id])
        add(element, "pose", "Unspecified")
        add(element, "truncated", int(obj.truncated))
        add(element, "difficult", int(obj.difficult))
        bndbox = add(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            add(bndbox, tag, value + 1)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _write_image_sets(
    directory: str,
    split_objects: Dict[str, List[Tuple[str, Tuple[SyntheticObject, ...]]]],
    class_names: Tuple[str, ...],
) -> None:
    """<split>.txt and VOC's per-class <cls>_<split>.txt ("1" present, "0" only difficult,
    "-1" absent). train/val halve trainval alternately, as VOC ships them too."""
    trainval = split_objects["trainval"]
    splits = dict(split_objects, train=trainval[0::2], val=trainval[1::2])
    os.makedirs(directory)
    for split, items in splits.items():
        with open(os.path.join(directory, f"{split}.txt"), "w") as f:
            f.writelines(f"{image_id}\n" for image_id, _ in items)
        for class_id, name in enumerate(class_names):
            lines = []
            for image_id, objects in items:
                flags = [obj.difficult for obj in objects if obj.class_id == class_id]
                label = -1 if not flags else (0 if all(flags) else 1)
                lines.append(f"{image_id} {label:2d}\n")
            with open(os.path.join(directory, f"{name}_{split}.txt"), "w") as f:
                f.writelines(lines)


def _write_dataset(directory: str, folder: str, spec: SyntheticVOCSpec) -> None:
    """Write the full dataset but its marker into the empty or missing `directory`."""
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    split_objects: Dict[str, List[Tuple[str, Tuple[SyntheticObject, ...]]]] = {}
    for split in SPLITS:
        size = spec.num_trainval if split == "trainval" else spec.num_test
        split_objects[split] = []
        for index in range(size):
            image = render_synthetic_image(spec, split, index)
            bgr = np.ascontiguousarray(image.image[:, :, ::-1])
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for synthetic image {image.image_id}")
            with open(os.path.join(directory, "JPEGImages", f"{image.image_id}.jpg"), "wb") as f:
                f.write(jpeg.tobytes())
            xml = _annotation_xml(folder, image, spec.class_names)
            with open(os.path.join(directory, "Annotations", f"{image.image_id}.xml"), "wb") as f:
                f.write(xml)
            split_objects[split].append((image.image_id, image.objects))
    _write_image_sets(os.path.join(directory, "ImageSets", "Main"), split_objects, spec.class_names)


def _recipe(root: str, spec: SyntheticVOCSpec) -> DatasetRecipe:
    folder = os.path.basename(os.path.abspath(os.path.expanduser(root)))
    return DatasetRecipe(
        marker=dict(spec.to_json_dict(), generator_version=GENERATOR_VERSION),
        write=lambda directory: _write_dataset(directory, folder, spec),
        marker_name=MARKER_NAME,
        kind="synthetic VOC",
        summary=f"{spec.num_trainval} trainval + {spec.num_test} test images, "
        f"{spec.num_classes} classes, seed {spec.seed}",
    )


def generate_synthetic_voc(root: str, spec: SyntheticVOCSpec) -> None:
    """(Re)generate the dataset at root (e.g. $DETECTRON2_DATASETS/synthvoc/VOC2007), replacing
    an earlier synthetic dataset there. Writes JPEGImages/, Annotations/, ImageSets/Main/ and,
    last, the marker file .synthvoc_spec.json."""
    generate(root, _recipe(root, spec))


def ensure_synthetic_voc(root: str, spec: SyntheticVOCSpec) -> bool:
    """Generate the dataset at root unless it already exists with this spec; safe to call from
    several processes at once. Returns True if this call generated it.

    Raises ValueError if root holds a synthetic dataset made with a different spec."""
    return ensure_generated(root, _recipe(root, spec))
