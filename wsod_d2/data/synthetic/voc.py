"""The synthetic dataset in the PASCAL VOC2007 layout: its spec, annotations and image ids.

Every object is a large textured body plus a small part. The body's texture and colour come from
a "family" shared by several classes, so the body alone says little about the class; the part
(a class-unique shape and colour at a class-typical spot on the body's outline) identifies the
class exactly. A detector that boxes only the most discriminative region therefore misses the
ground-truth box (IoU < 0.5), which is the central difficulty of weakly supervised detection.
Backgrounds are smooth colour gradients with noise and distractor fragments that reuse body
textures but never carry a part.

An image is rendered by :mod:`wsod_d2.data.synthetic.voc_render` and the dataset is written to
disk by :mod:`wsod_d2.data.synthetic.voc_writer`.
"""

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from wsod_d2.data.synthetic.render import FAMILIES

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "SyntheticVOCSpec",
    "SyntheticObject",
    "SyntheticImage",
    "synthetic_image_id",
    "split_image_ids",
]

# fmt: off
CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# fmt: on

SPLITS = ("trainval", "test")


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
        return min(len(FAMILIES), math.ceil(self.num_classes / self.classes_per_family))

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


def synthetic_image_id(spec: SyntheticVOCSpec, split: str, index: int) -> str:
    # VOC-style 6-digit ids: trainval images come first, then test; the two never overlap.
    return f"{index + 1 + (spec.num_trainval if split == 'test' else 0):06d}"


def split_image_ids(spec: SyntheticVOCSpec) -> Dict[str, List[str]]:
    """Image ids of every split: {"trainval": [...], "test": [...]}."""
    sizes = {"trainval": spec.num_trainval, "test": spec.num_test}
    return {
        split: [synthetic_image_id(spec, split, i) for i in range(n)] for split, n in sizes.items()
    }
