"""MultiViewWSODDatasetMapper: several views (scales x flips) of one training image that share one
proposal subset, the input of CASDRCNN."""
from typing import List

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from wsod_d2.data.common import read_image_checked
from wsod_d2.data.wsod.mapper import WSODDatasetMapper, transform_boxes
from wsod_d2.data.wsod.photometric import build_photometric_augmentation, distort

__all__ = ["MultiViewWSODDatasetMapper"]


class MultiViewWSODDatasetMapper(WSODDatasetMapper):
    """Training mapper: per image, ``num_scales`` short sides drawn without replacement from
    ``scales``, each view also mirrored when ``flip``; views are ordered (scale 1, scale 1
    flipped, scale 2, ...), so view v is flipped or not in every image of a batch.

    The proposal subset (:meth:`select_proposals`, then ``num_proposals`` drawn uniformly at
    random) is chosen once; the photometric distortion too, before the views are made, so views
    differ only in geometry. Each scale is resized once; its flipped view mirrors the resized
    image. Output: "views", a list of {"image" (3, H_v, W_v), "proposals"
    (Instances in view v), "flipped" bool}; "proposals", the same RoIs in original image
    coordinates (where the pseudo labels are built); "image_labels"; "file_name", "image_id",
    "height", "width". With ``photometric_per_scale`` the distortion is drawn once per scale
    instead, and the scale's flipped view mirrors the same distorted image (CASD's release).
    """

    @configurable
    def __init__(
        self,
        *,
        scales: List[int],
        max_size: int,
        num_scales: int,
        flip: bool,
        num_proposals: int,
        photometric: List[T.Augmentation],
        photometric_per_scale: bool,
        **kwargs,
    ):
        super().__init__(True, augmentations=[], **kwargs)
        if not 1 <= num_scales <= len(scales):
            raise ValueError(
                f"INPUT.VIEWS.NUM_SCALES must be in [1, {len(scales)}] (the number of "
                f"INPUT.MIN_SIZE_TRAIN scales), got {num_scales}"
            )
        if num_proposals < 0:
            raise ValueError(f"INPUT.VIEWS.NUM_PROPOSALS must be >= 0, got {num_proposals}")
        self.scales = list(scales)
        self.resizes = {s: T.ResizeShortestEdge(int(s), max_size) for s in self.scales}
        self.num_scales = num_scales
        self.flips = (False, True) if flip else (False,)
        # Always mirrors; it draws one number per flipped view, which seeded runs rely on.
        self.mirror = T.RandomFlip(prob=1.0)
        self.num_proposals = num_proposals
        self.photometric = T.AugmentationList(photometric)
        self.photometric_per_scale = photometric_per_scale

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg, True)
        for key in ("is_train", "augmentations"):
            ret.pop(key)
        v = cfg.INPUT.VIEWS
        ret.update(
            scales=cfg.INPUT.MIN_SIZE_TRAIN,
            max_size=cfg.INPUT.MAX_SIZE_TRAIN,
            num_scales=v.NUM_SCALES,
            flip=v.FLIP,
            num_proposals=v.NUM_PROPOSALS,
            photometric=build_photometric_augmentation(cfg, True),
            photometric_per_scale=cfg.INPUT.PHOTOMETRIC.PER_SCALE,
        )
        return ret

    @staticmethod
    def apply(augmentation, image, boxes):
        """(image, boxes) after the transform ``augmentation`` draws for ``image``."""
        transform = augmentation.get_transform(image)
        return transform.apply_image(image), transform_boxes(boxes, T.TransformList([transform]))

    def __call__(self, dataset_dict):
        dataset_dict = dict(dataset_dict)
        image = read_image_checked(dataset_dict, self.image_format)
        if not self.photometric_per_scale:
            image = distort(self.photometric, image)
        boxes, logits = self.select_proposals(dataset_dict)
        if 0 < self.num_proposals < len(boxes):
            keep = np.sort(np.random.choice(len(boxes), self.num_proposals, replace=False))
            boxes, logits = boxes[keep], logits[keep]
        views = []
        for scale in np.random.choice(self.scales, self.num_scales, replace=False):
            scale_image = distort(self.photometric, image) if self.photometric_per_scale else image
            view_image, view_boxes = self.apply(self.resizes[scale], scale_image, boxes)
            for flipped in self.flips:
                if flipped:  # mirror the resized view rather than resize again
                    view_image, view_boxes = self.apply(self.mirror, view_image, view_boxes)
                tensor, proposals = self.view(view_image, view_boxes, logits)
                views.append({"image": tensor, "proposals": proposals, "flipped": flipped})
        dataset_dict["views"] = views
        original = Instances(image.shape[:2])
        original.proposal_boxes = Boxes(torch.as_tensor(boxes))
        original.objectness_logits = torch.as_tensor(logits)
        dataset_dict["proposals"] = original
        return self.finish(dataset_dict)
