"""Synthetic WSOL dataset in the wsolevaluation metadata format, one object per image.

Every image holds exactly one object on a noisy gradient background with a few textured
distractor fragments. The object is a textured body plus a small part, drawn with the shared
renderer :mod:`wsod_d2.data.synthetic.render`; its class is the pair (body texture family, part
shape and colour), so the part alone identifies a class among the first 20 and the body family is
needed beyond. A classifier can therefore succeed by looking at the part only, and its CAM then
boxes a fraction of the object: the localization gap WSOL methods try to close.

Object sizes are stratified: image ``index`` of a split has class ``index % C`` and its box area
(as a fraction of the image) drawn uniformly inside size bin ``(index // C) % num_bins`` of
``size_bins``, so every class has objects from tiny to large and the size-bin accuracies of the
WSOL evaluator are all populated. Images are rendered independently from a numpy Generator seeded
by ``(seed, split, index)``.

Layout written under ``root`` (wsolevaluation's, image ids relative to ``root/images``):

    images/{train,val,test}/<index>.jpg
    metadata/{train,val,test}/image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt
    .synthwsol_spec.json   (written last: marks a complete dataset made with this spec)

Boxes are 0-based inclusive pixel corners ``x0,y0,x1,y1`` of the object's pixels.
"""

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from wsod_d2.data.synthetic.generated import DatasetRecipe, ensure_generated
from wsod_d2.data.synthetic.render import (
    FAMILIES,
    PART_ANGLE_JITTER,
    PART_COLOUR_JITTER,
    PART_COLOURS,
    PART_INSET,
    PART_SHAPES,
    background,
    body_outline,
    class_part,
    family_texture,
    fill_polygon,
    mask_box,
    part_polygon,
)

__all__ = [
    "SPLITS",
    "SyntheticWSOLSpec",
    "SyntheticWSOLImage",
    "synthetic_wsol_class_names",
    "render_synthetic_wsol_image",
    "ensure_synthetic_wsol",
]

GENERATOR_VERSION = 1
MARKER_NAME = ".synthwsol_spec.json"
SPLITS = ("train", "val", "test")
_SPLIT_TAGS = {"train": 0, "val": 1, "test": 2}
_NUM_PARTS = len(PART_SHAPES) * len(PART_COLOURS)
_MAX_CLASSES = _NUM_PARTS * len(FAMILIES)
_COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta")  # the order of PART_COLOURS
_MAX_EXTENT = 0.95  # the object's box spans at most this fraction of each image side
_PLACEMENT_TRIES = 20  # attempts at an object in its size stratum, a distractor off it


@dataclass(frozen=True)
class SyntheticWSOLSpec:
    """Everything that determines the generated dataset; two equal specs give identical files."""

    num_classes: int = 20  # at most 100 (5 body families x 20 parts)
    train_per_class: int = 30
    val_per_class: int = 5
    test_per_class: int = 10
    seed: int = 0
    min_size: int = 112  # each image side lies in [min_size, max_size] pixels
    max_size: int = 144
    size_bins: Tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.85)  # box area / image area strata
    min_area_ratio: float = 0.01  # the lowest stratum starts here instead of at size_bins[0]
    body_aspect: float = 1.6  # body width / height in [1 / a, a] where the image allows it
    part_frac: Tuple[float, float] = (0.18, 0.26)  # part side / sqrt(body box area)
    min_part_px: int = 4
    num_distractors: Tuple[int, int] = (0, 3)  # inclusive range of part-less texture fragments
    distractor_frac: Tuple[float, float] = (0.08, 0.2)  # fragment side / short image side
    colour_jitter: float = 12.0  # std of per-image body colour jitter
    noise_std: float = 4.0  # per-pixel Gaussian noise
    jpeg_quality: int = 90

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

        def check(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticWSOLSpec.{name}={getattr(self, name)!r}: {rule}")

        check(1 <= self.num_classes <= _MAX_CLASSES, "num_classes", f"in [1, {_MAX_CLASSES}]")
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.seed >= 0, "seed", "must be >= 0")
        check(32 <= self.min_size <= self.max_size, "min_size", "need 32 <= min_size <= max_size")
        bins = self.size_bins
        check(
            len(bins) >= 2 and all(a < b for a, b in zip(bins, bins[1:])),
            "size_bins",
            "needs >= 2 increasing edges",
        )
        # A box of this area still fits in _MAX_EXTENT of both sides of any image.
        check(0 <= bins[0] and bins[-1] <= _MAX_EXTENT**2, "size_bins", "must lie in [0, 0.9025]")
        check(0 < self.min_area_ratio < bins[1], "min_area_ratio", "must lie in (0, size_bins[1])")
        check(self.body_aspect >= 1.0, "body_aspect", "must be >= 1")
        lo, hi = self.part_frac
        check(0 < lo <= hi <= 0.5, "part_frac", "needs 0 < low <= high <= 0.5")
        check(self.min_part_px >= 1, "min_part_px", "must be >= 1")
        lo, hi = self.num_distractors
        check(0 <= lo <= hi, "num_distractors", "needs 0 <= low <= high")
        lo, hi = self.distractor_frac
        check(0 < lo <= hi <= 0.5, "distractor_frac", "needs 0 < low <= high <= 0.5")
        check(self.colour_jitter >= 0, "colour_jitter", "must be >= 0")
        check(self.noise_std >= 0, "noise_std", "must be >= 0")
        check(1 <= self.jpeg_quality <= 100, "jpeg_quality", "must be in [1, 100]")

    def split_size(self, split: str) -> int:
        if split not in _SPLIT_TAGS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        return self.num_classes * getattr(self, f"{split}_per_class")

    def to_json_dict(self) -> Dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass(frozen=True)
class SyntheticWSOLImage:
    """image (H, W, 3) uint8 RGB; mask (H, W) bool object pixels; box inclusive (x0, y0, x1, y1)."""

    image_id: str
    image: np.ndarray
    mask: np.ndarray
    class_id: int
    box: Tuple[int, int, int, int]


def _class_look(class_id: int) -> Tuple[int, int]:
    """(body family, part id): for a fixed part the families of its classes are all distinct."""
    part = class_id % _NUM_PARTS
    return (part + class_id // _NUM_PARTS) % len(FAMILIES), part


def synthetic_wsol_class_names(num_classes: int) -> List[str]:
    """Descriptive names "<texture>_<part colour>_<part shape>" of the first classes."""
    names = []
    for c in range(num_classes):
        family, part = _class_look(c)
        shape, colour, _ = class_part(part)
        names.append(f"{FAMILIES[family][0]}_{_COLOUR_NAMES[PART_COLOURS.index(colour)]}_{shape}")
    return names


def _image_size(rng: np.random.Generator, spec: SyntheticWSOLSpec) -> Tuple[int, int]:
    """(h, w), each side in [min_size, max_size]."""
    h, w = rng.integers(spec.min_size, spec.max_size + 1, size=2)
    return int(h), int(w)


def _box_size(
    rng: np.random.Generator, spec: SyntheticWSOLSpec, h: int, w: int, size_bin: int
) -> Tuple[float, float]:
    """Body box (height, width) in pixels whose area ratio lies inside the size stratum."""
    lo = max(spec.size_bins[size_bin], spec.min_area_ratio)
    ratio = rng.uniform(lo, spec.size_bins[size_bin + 1])
    area = ratio * h * w
    # Aspects keeping both sides within _MAX_EXTENT of the image win over body_aspect.
    fit_low, fit_high = area / (_MAX_EXTENT * h) ** 2, (_MAX_EXTENT * w) ** 2 / area
    low = min(max(1.0 / spec.body_aspect, fit_low), fit_high)
    high = max(min(spec.body_aspect, fit_high), low)
    aspect = math.exp(rng.uniform(math.log(low), math.log(high)))
    return math.sqrt(area / aspect), math.sqrt(area * aspect)


def _object_polygons(
    rng: np.random.Generator, spec: SyntheticWSOLSpec, h: int, w: int, class_id: int, size_bin: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Body outline (P, 2) filling its box exactly, and part polygon (Q, 2), image coordinates."""
    box_h, box_w = _box_size(rng, spec, h, w, size_bin)
    raw, point = body_outline(rng, 0.5 * box_w, 0.5 * box_h)
    lo, hi = raw.min(axis=0), raw.max(axis=0)
    scale = np.array([box_w, box_h]) / np.maximum(hi - lo, 1e-6)
    body = (raw - lo) * scale

    _, part = _class_look(class_id)
    shape, _, direction = class_part(part)
    direction += rng.normal(0.0, PART_ANGLE_JITTER)
    side = max(rng.uniform(*spec.part_frac) * math.sqrt(box_h * box_w), spec.min_part_px)
    radius = 0.5 * min(side, 0.5 * min(box_h, box_w))
    origin = -lo * scale
    offset = (point(np.array(direction)) - lo) * scale - origin
    dist = float(np.hypot(*offset))
    centre = origin + offset * max(dist - PART_INSET * radius, 0.0) / max(dist, 1e-6)
    part_poly = centre + part_polygon(shape, radius, direction)

    # The object lies fully inside the image, anywhere.
    points = np.concatenate([body, part_poly])
    lo, hi = points.min(axis=0), points.max(axis=0)
    shift = np.array([rng.uniform(-lo[0], w - 1 - hi[0]), rng.uniform(-lo[1], h - 1 - hi[1])])
    return body + shift, part_poly + shift


def _paint(image: np.ndarray, mask: np.ndarray, texture: np.ndarray, box) -> None:
    x0, y0, x1, y1 = box
    region = image[y0 : y1 + 1, x0 : x1 + 1]
    inside = mask[y0 : y1 + 1, x0 : x1 + 1]
    region[inside] = texture[inside]


def _image_id(split: str, index: int) -> str:
    return f"{split}/{index:05d}.jpg"


def render_synthetic_wsol_image(
    spec: SyntheticWSOLSpec, split: str, index: int
) -> SyntheticWSOLImage:
    """Render image ``index`` (0-based) of ``split`` exactly as it is written to disk."""
    size = spec.split_size(split)
    if not 0 <= index < size:
        raise ValueError(f"index={index} out of range for split {split!r} with {size} images")
    rng = np.random.default_rng([spec.seed, _SPLIT_TAGS[split], index])
    class_id = index % spec.num_classes
    size_bin = (index // spec.num_classes) % (len(spec.size_bins) - 1)
    h, w = _image_size(rng, spec)
    image = background(rng, h, w)
    lo, hi = spec.size_bins[size_bin : size_bin + 2]
    for _ in range(_PLACEMENT_TRIES):
        body, part = _object_polygons(rng, spec, h, w, class_id, size_bin)
        part_mask = fill_polygon((h, w), part)
        mask = fill_polygon((h, w), body) | part_mask
        box = mask_box(mask)
        # Rasterising and the part's overhang can push the box just past the stratum: redraw.
        if lo < (box[2] - box[0] + 1) * (box[3] - box[1] + 1) / (h * w) <= hi:
            break

    # Distractors: body textures without a part, kept off the object's box.
    x0, y0, x1, y1 = box
    lo, hi = spec.num_distractors
    families = len(FAMILIES)
    for _ in range(int(rng.integers(lo, hi + 1))):
        side = rng.uniform(*spec.distractor_frac) * min(h, w)
        outline, _ = body_outline(rng, 0.5 * side, 0.5 * side * rng.uniform(0.6, 1.0))
        for _ in range(_PLACEMENT_TRIES):
            fragment = fill_polygon((h, w), outline + rng.uniform((0, 0), (w - 1, h - 1)))
            if fragment.any() and not fragment[y0 : y1 + 1, x0 : x1 + 1].any():
                texture = family_texture(rng, int(rng.integers(families)), h, w, spec.colour_jitter)
                _paint(image, fragment, texture, (0, 0, w - 1, h - 1))
                break

    family, part_id = _class_look(class_id)
    texture = family_texture(rng, family, y1 - y0 + 1, x1 - x0 + 1, spec.colour_jitter)
    region = image[y0 : y1 + 1, x0 : x1 + 1]
    region[mask[y0 : y1 + 1, x0 : x1 + 1]] = texture[mask[y0 : y1 + 1, x0 : x1 + 1]]
    _, colour, _ = class_part(part_id)
    jitter = rng.normal(0.0, PART_COLOUR_JITTER, 3).astype(np.float32)
    image[part_mask] = np.asarray(colour, np.float32) + jitter
    if spec.noise_std > 0:
        image += spec.noise_std * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return SyntheticWSOLImage(_image_id(split, index), image, mask, class_id, box)


def _write_split(directory: str, spec: SyntheticWSOLSpec, split: str) -> None:
    os.makedirs(os.path.join(directory, "images", split))
    meta = os.path.join(directory, "metadata", split)
    os.makedirs(meta)
    lines: Dict[str, List[str]] = {k: [] for k in ("ids", "labels", "sizes", "boxes")}
    for index in range(spec.split_size(split)):
        item = render_synthetic_wsol_image(spec, split, index)
        bgr = np.ascontiguousarray(item.image[:, :, ::-1])
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for synthetic image {item.image_id}")
        with open(os.path.join(directory, "images", item.image_id), "wb") as f:
            f.write(jpeg.tobytes())
        h, w = item.mask.shape
        lines["ids"].append(f"{item.image_id}\n")
        lines["labels"].append(f"{item.image_id},{item.class_id}\n")
        lines["sizes"].append(f"{item.image_id},{w},{h}\n")
        lines["boxes"].append(f"{item.image_id},{','.join(str(v) for v in item.box)}\n")
    files = {
        "ids": "image_ids.txt",
        "labels": "class_labels.txt",
        "sizes": "image_sizes.txt",
        "boxes": "localization.txt",
    }
    for key, name in files.items():
        with open(os.path.join(meta, name), "w") as f:
            f.writelines(lines[key])


def _write_dataset(directory: str, spec: SyntheticWSOLSpec) -> None:
    for split in SPLITS:
        _write_split(directory, spec, split)


def ensure_synthetic_wsol(root: str, spec: SyntheticWSOLSpec) -> bool:
    """
    Generate the dataset at ``root`` unless it already holds it; safe from several processes.

    Returns True if this call generated it. Raises ValueError if ``root`` holds a synthetic WSOL
    dataset of another spec, or is a non-empty folder without the marker.
    """
    sizes = ", ".join(f"{spec.split_size(s)} {s}" for s in SPLITS)
    recipe = DatasetRecipe(
        marker=dict(spec.to_json_dict(), generator_version=GENERATOR_VERSION),
        write=lambda directory: _write_dataset(directory, spec),
        marker_name=MARKER_NAME,
        kind="synthetic WSOL",
        summary=f"{sizes}; {spec.num_classes} classes",
    )
    return ensure_generated(root, recipe)
