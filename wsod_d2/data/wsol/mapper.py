"""WSOLDatasetMapper: image and image-level labels for classification-with-maps models.

Training views follow the WSOL recipes: wsolevaluation / TS-CAM resize the image to a square
(INPUT.WSOL.RESIZE_TRAIN, aspect ratio not kept) and take a random crop (INPUT.WSOL.CROP_TRAIN);
CSRA takes a torchvision-style random resized crop (INPUT.WSOL.RESIZED_CROP_SCALE). Both add a
horizontal flip (INPUT.RANDOM_FLIP). Test views are the image resized to a square
(INPUT.WSOL.SIZE_TEST). Ground truth stays in original image coordinates: the model's maps are
resized back to the image by the evaluator, as in wsolevaluation.
"""

import copy
import math
from typing import List, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, TransformList

from wsod_d2.data.common import read_image_checked

__all__ = ["RandomResizedCrop", "build_wsol_augmentations", "WSOLDatasetMapper"]

# Keys holding localization ground truth; training dicts never carry them.
_LOCALIZATION_KEYS = ("annotations", "mask_file_names", "ignore_file_name", "sem_seg_file_name")


class RandomResizedCrop(T.Augmentation):
    """
    torchvision's RandomResizedCrop: a crop whose area is a uniform fraction in ``scale`` of the
    image and whose aspect ratio is log-uniform in ``ratio``, resized to size x size. After
    ``max_tries`` failed draws the central crop of the nearest allowed aspect ratio is taken.
    """

    def __init__(
        self,
        size: int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        max_tries: int = 10,
    ):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.max_tries):
            area = h * w * self._rand_range(*self.scale)
            aspect = math.exp(self._rand_range(*log_ratio))
            crop_w = int(round(math.sqrt(area * aspect)))
            crop_h = int(round(math.sqrt(area / aspect)))
            if 0 < crop_w <= w and 0 < crop_h <= h:
                x0 = int(np.random.randint(0, w - crop_w + 1))
                y0 = int(np.random.randint(0, h - crop_h + 1))
                return self._crop_resize(x0, y0, crop_w, crop_h, h, w)
        aspect = min(max(w / h, self.ratio[0]), self.ratio[1])
        if w / h < aspect:
            crop_w, crop_h = w, int(round(w / aspect))
        else:
            crop_w, crop_h = int(round(h * aspect)), h
        return self._crop_resize((w - crop_w) // 2, (h - crop_h) // 2, crop_w, crop_h, h, w)

    def _crop_resize(self, x0: int, y0: int, crop_w: int, crop_h: int, h: int, w: int):
        resize = T.ResizeTransform(crop_h, crop_w, self.size, self.size)
        return TransformList([CropTransform(x0, y0, crop_w, crop_h, w, h), resize])


def build_wsol_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """The view pipeline of a WSOL config (see the module docstring)."""
    if not is_train:
        size = cfg.INPUT.WSOL.SIZE_TEST
        return [T.Resize((size, size))]
    crop = cfg.INPUT.WSOL.CROP_TRAIN
    if cfg.INPUT.WSOL.RESIZED_CROP_SCALE:
        augs = [RandomResizedCrop(crop, scale=tuple(cfg.INPUT.WSOL.RESIZED_CROP_SCALE))]
    else:
        resize = cfg.INPUT.WSOL.RESIZE_TRAIN
        if resize < crop:
            raise ValueError(
                f"INPUT.WSOL.RESIZE_TRAIN ({resize}) must be >= INPUT.WSOL.CROP_TRAIN ({crop})"
            )
        augs = [T.Resize((resize, resize))]
        if resize > crop:
            augs.append(T.RandomCrop("absolute", (crop, crop)))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augs


class WSOLDatasetMapper:
    """
    Maps a dataset dict with "image_labels" (class ids) to model input: "image" (3, H, W) uint8
    as float, "image_labels" (C,) float multi-hot, and the input's "file_name", "image_id",
    "height", "width" (the original size, read from the image when the dict lacks it). Test
    dicts keep their localization ground truth ("annotations" in original image coordinates,
    mask files) for the evaluators; training dicts drop it.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List, image_format: str, num_classes: int):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_wsol_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.WSOL.NUM_CLASSES,
        }

    def image_labels(self, dataset_dict) -> torch.Tensor:
        labels = list(dataset_dict["image_labels"])
        bad = [c for c in labels if not 0 <= int(c) < self.num_classes]
        if bad:
            raise ValueError(
                f"image {dataset_dict.get('image_id')} ({dataset_dict['file_name']}) has class "
                f"ids {bad} outside [0, MODEL.WSOL.NUM_CLASSES={self.num_classes})"
            )
        multi_hot = torch.zeros(self.num_classes)
        multi_hot[[int(c) for c in labels]] = 1.0
        return multi_hot

    def __call__(self, dataset_dict):
        dataset_dict = copy.copy(dataset_dict)
        image = read_image_checked(dataset_dict, self.image_format)
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        dataset_dict["image"] = torch.as_tensor(
            np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))
        )
        dataset_dict["image_labels"] = self.image_labels(dataset_dict)
        if self.is_train:
            for key in _LOCALIZATION_KEYS:
                dataset_dict.pop(key, None)
        return dataset_dict
