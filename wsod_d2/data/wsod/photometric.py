"""Photometric (colour) augmentation of training images, CASD's "augmentation" as a mapper option.

CASD's released data layer distorts brightness (additive, +-32), contrast, saturation and hue and
permutes channels, each with probability 1/2. Here: detectron2's multiplicative brightness,
contrast and saturation factors, each applied with probability 1/2 (ranges from
INPUT.PHOTOMETRIC); hue shifts and channel permutations are left out. The transforms move no box.
"""
from typing import List

from detectron2.data import transforms as T

__all__ = ["build_photometric_augmentation"]


def build_photometric_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The photometric augmentations of INPUT.PHOTOMETRIC (none at test or when disabled)."""
    p = cfg.INPUT.PHOTOMETRIC
    if not (is_train and cfg.INPUT.PHOTOMETRIC.ENABLED):
        return []
    # detectron2's saturation weights assume RGB; with BGR input it mixes channels slightly off.
    return [
        T.RandomApply(T.RandomBrightness(*p.BRIGHTNESS), prob=0.5),
        T.RandomApply(T.RandomContrast(*p.CONTRAST), prob=0.5),
        T.RandomApply(T.RandomSaturation(*p.SATURATION), prob=0.5),
    ]
