"""Photometric (colour) augmentation of training images, CASD's "augmentation" as a mapper option
(INPUT.PHOTOMETRIC). The transforms move no box.

Two styles (INPUT.PHOTOMETRIC.STYLE), each step applied with probability PROB:

- "detectron2": detectron2's multiplicative brightness, contrast (blend with the image mean) and
  saturation (blend with grayscale) factors, in that order; uint8 in, uint8 out (clipped to
  [0, 255]). Not the release's distortion: no hue, brightness multiplies.
- "ssd": CASD's released distortion (its SSDAugmentation; ``ssd_photometric.py``): additive
  brightness (+-BRIGHTNESS_DELTA), contrast (x CONTRAST) before or after an HSV step
  (S x SATURATION, H +-HUE_DELTA degrees), with cv2 on float32 in the channel order of
  INPUT.FORMAT (BGR or RGB). The image goes on as float32, unclipped, as in the release:
  rounding it back to uint8 would clip what brightness and contrast push out of [0, 255] (up to
  (255 + 32) x 1.5 = 430) and so change the release's statistics. The model subtracts
  PIXEL_MEAN in float anyway; the next resize then runs through detectron2's float path
  (torch's bilinear, no antialiasing, as the release's cv2 INTER_LINEAR) instead of PIL's
  (antialiased when shrinking; within one grey level when enlarging, as VOC's images are at
  CASD's scales).

When: the plain mapper distorts each image once; the multi-view mapper once per image before
its views are made (views differ only in geometry) or, with PER_SCALE, once per scale, the
scale's flipped view mirroring the same distorted image (the release). From START_ITER on only
(the training iteration as ``wsod_d2.data.progress`` shares it with the loader's workers; a few
iterations late: see there); the release starts at its iteration
STEP_ITERS - 2 x SNAPSHOT_ITERS = 40000 (branch may30; 45000 on master).
"""
from typing import List

import numpy as np
from detectron2.data import transforms as T

from wsod_d2.data.progress import TrainingProgress, training_progress
from wsod_d2.data.wsod.ssd_photometric import SSDPhotometricDistortion

__all__ = ["FromIteration", "build_photometric_augmentation", "distort"]


class FromIteration(T.Augmentation):
    """``augmentation`` at training iterations >= ``start_iter`` (as ``progress`` holds them);
    before, no transform and no random draw."""

    def __init__(
        self, augmentation: T.Augmentation, *, start_iter: int, progress: TrainingProgress
    ):
        super().__init__()
        self._init(locals())

    def __call__(self, aug_input) -> T.Transform:
        if self.progress.iteration < self.start_iter:
            return T.NoOpTransform()
        return self.augmentation(aug_input)


def _detectron2_style(cfg) -> List[T.Augmentation]:
    p = cfg.INPUT.PHOTOMETRIC
    # detectron2's saturation weights assume RGB; with BGR input it mixes channels slightly off.
    return [
        T.RandomApply(T.RandomBrightness(*p.BRIGHTNESS), prob=p.PROB),
        T.RandomApply(T.RandomContrast(*p.CONTRAST), prob=p.PROB),
        T.RandomApply(T.RandomSaturation(*p.SATURATION), prob=p.PROB),
    ]


def _ssd_style(cfg) -> List[T.Augmentation]:
    p = cfg.INPUT.PHOTOMETRIC
    distortion = SSDPhotometricDistortion(
        brightness_delta=p.BRIGHTNESS_DELTA,
        contrast=tuple(p.CONTRAST),
        saturation=tuple(p.SATURATION),
        hue_delta=p.HUE_DELTA,
        prob=p.PROB,
        image_format=cfg.INPUT.FORMAT,
    )
    return [distortion]


# INPUT.PHOTOMETRIC.STYLE -> builder of its augmentations.
_STYLES = {"detectron2": _detectron2_style, "ssd": _ssd_style}


def build_photometric_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The photometric augmentations of INPUT.PHOTOMETRIC (none at test or when disabled)."""
    p = cfg.INPUT.PHOTOMETRIC
    if not (is_train and cfg.INPUT.PHOTOMETRIC.ENABLED):
        return []
    if p.STYLE not in _STYLES:
        raise ValueError(
            f"INPUT.PHOTOMETRIC.STYLE must be one of {sorted(_STYLES)}, got {p.STYLE!r}"
        )
    if not 0.0 <= p.PROB <= 1.0:
        raise ValueError(f"INPUT.PHOTOMETRIC.PROB must be in [0, 1], got {p.PROB}")
    start_iter = cfg.INPUT.PHOTOMETRIC.START_ITER
    if start_iter < 0:
        raise ValueError(f"INPUT.PHOTOMETRIC.START_ITER must be >= 0, got {start_iter}")
    augmentations = _STYLES[p.STYLE](cfg)
    if start_iter == 0:
        return augmentations
    return [
        FromIteration(
            T.AugmentationList(augmentations), start_iter=start_iter, progress=training_progress()
        )
    ]


def distort(augmentations: T.Augmentation, image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) after ``augmentations`` (photometric: no geometry to follow)."""
    aug_input = T.AugInput(image)
    augmentations(aug_input)
    return aug_input.image
