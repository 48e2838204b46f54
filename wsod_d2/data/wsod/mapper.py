"""WSODDatasetMapper: image, image-level labels and precomputed proposals for WSOD."""
import copy
import logging
from typing import List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from wsod_d2.data.common import read_image_checked
from wsod_d2.data.proposals.references import STORE_KEY, image_proposals
from wsod_d2.data.wsod.gt_leak import gt_leak_from_config, prepend_leaked_gt
from wsod_d2.data.wsod.photometric import build_photometric_augmentation
from wsod_d2.data.wsod.ssd_photometric import SSDPhotometricTransform

logger = logging.getLogger(__name__)


# Transforms that map x and y independently (x' from x, y' from y): the image of a box under
# them is spanned by the images of its two corners (x1, y1) and (x2, y2).
AXIS_SEPARABLE_TRANSFORMS = (
    T.ResizeTransform,
    T.HFlipTransform,
    T.VFlipTransform,
    T.NoOpTransform,
    T.BlendTransform,
    T.CropTransform,
    T.ColorTransform,
    T.PILColorTransform,
    SSDPhotometricTransform,
)


def dedup_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Indices (in original order) of the first of each group of boxes equal after
    ``round(box * scale)``; OICR's DEDUP_BOXES. boxes: (N, 4)."""
    if scale <= 0 or len(boxes) == 0:
        return np.arange(len(boxes))
    keys = np.round(boxes * scale).astype(np.int64)
    # lexsort is stable, so each run of equal rows starts with its first occurrence.
    order = np.lexsort(keys.T[::-1])
    sorted_keys = keys[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    return np.sort(order[first])


def transform_boxes(boxes: np.ndarray, transforms: T.TransformList) -> np.ndarray:
    """``transforms.apply_box(boxes)``, the same values, in one pass over the boxes' two corners
    when every transform is in AXIS_SEPARABLE_TRANSFORMS (apply_box maps all four corners
    through each transform in turn). boxes: (N, 4) XYXY."""
    separable = [type(t) in AXIS_SEPARABLE_TRANSFORMS for t in transforms.transforms]
    if not separable or not all(separable):  # an empty list returns the boxes as they are
        return transforms.apply_box(boxes)
    corners = transforms.apply_coords(np.array(boxes).reshape(-1, 2)).reshape(-1, 2, 2)
    low = np.minimum(corners[:, 0], corners[:, 1])
    high = np.maximum(corners[:, 0], corners[:, 1])
    return np.concatenate([low, high], axis=1)


class WSODDatasetMapper(DatasetMapper):
    """Maps a WSOD dataset dict (with "proposal_boxes" or a "proposal_store" reference, and
    "image_labels") to model input.

    The proposal subset is chosen once per image in original coordinates (min size,
    de-duplication, top-k by objectness), then transformed with the image, so several views of
    one image (scales x flips) can share it: see :meth:`select_proposals` and :meth:`map_view`.
    Output: "image" (3, H, W), "proposals" (Instances with proposal_boxes, objectness_logits),
    "image_labels" (C,) float multi-hot, plus the input's "file_name", "image_id", "height" and
    "width".
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List,
        image_format: str,
        num_classes: int,
        proposal_topk: Optional[int],
        proposal_min_size: float,
        proposal_dedup_scale: float,
        gt_leak: bool = False,
    ):
        super().__init__(
            is_train,
            augmentations=augmentations,
            image_format=image_format,
            precomputed_proposal_topk=proposal_topk,
        )
        self.num_classes = num_classes
        self.proposal_min_size = proposal_min_size
        self.proposal_dedup_scale = proposal_dedup_scale
        # TEST.CASD_RELEASE_GT_LEAK: GT boxes in front of the proposals (data/wsod/gt_leak.py).
        self.gt_leak = gt_leak

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        topk = (
            cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN
            if is_train
            else cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST
        )
        return {
            "is_train": is_train,
            "augmentations": build_photometric_augmentation(cfg, is_train)
            + utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "proposal_topk": topk,
            "proposal_min_size": cfg.INPUT.PROPOSAL_MIN_SIZE,
            "proposal_dedup_scale": cfg.INPUT.PROPOSAL_DEDUP_SCALE,
            "gt_leak": gt_leak_from_config(cfg, is_train),
        }

    def select_proposals(self, dataset_dict):
        """(boxes (N, 4), logits (N,)) kept for this image, in original image coordinates; the
        proposals are the dict's own (a pickle) or read now from its proposal store."""
        boxes, logits = image_proposals(dataset_dict)
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = np.nonzero((wh >= self.proposal_min_size).all(axis=1))[0]
        keep = keep[dedup_boxes(boxes[keep], self.proposal_dedup_scale)]
        if self.proposal_topk is not None:
            keep = keep[np.argsort(-logits[keep], kind="stable")[: self.proposal_topk]]
        if len(keep) == 0:
            raise ValueError(
                f"image {dataset_dict.get('image_id')} ({dataset_dict['file_name']}) has no "
                f"proposal with both sides >= INPUT.PROPOSAL_MIN_SIZE={self.proposal_min_size}"
            )
        return boxes[keep], logits[keep]

    def map_view(self, image, boxes, logits, augmentations):
        """Apply ``augmentations`` to the image and the proposals: ("image", "proposals")."""
        aug_input = T.AugInput(image)
        transforms = augmentations(aug_input)
        return self.view(aug_input.image, transform_boxes(boxes, transforms), logits)

    @staticmethod
    def view(image, boxes, logits):
        """Model input of a transformed image (H, W, C) and its proposals: ("image" (C, H, W),
        "proposals" with the boxes clipped to the image)."""
        h, w = image.shape[:2]
        clipped = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        clipped.clip((h, w))
        proposals = Instances((h, w))
        proposals.proposal_boxes = clipped
        proposals.objectness_logits = torch.as_tensor(logits)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return tensor, proposals

    def image_labels(self, dataset_dict) -> torch.Tensor:
        labels = torch.zeros(self.num_classes)
        labels[list(dataset_dict["image_labels"])] = 1.0
        return labels

    def __call__(self, dataset_dict):
        dataset_dict = copy.copy(dataset_dict)
        image = read_image_checked(dataset_dict, self.image_format)
        boxes, logits = self.select_proposals(dataset_dict)
        if self.gt_leak:
            boxes, logits = prepend_leaked_gt(dataset_dict, boxes, logits)
        dataset_dict["image"], dataset_dict["proposals"] = self.map_view(
            image, boxes, logits, self.augmentations
        )
        return self.finish(dataset_dict)

    def finish(self, dataset_dict):
        """Add "image_labels" and drop the keys the model does not read."""
        dataset_dict["image_labels"] = self.image_labels(dataset_dict)
        for key in (
            "annotations",
            "proposal_boxes",
            "proposal_objectness_logits",
            "proposal_bbox_mode",
            STORE_KEY,
        ):
            dataset_dict.pop(key, None)
        return dataset_dict
