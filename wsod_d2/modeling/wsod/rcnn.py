"""WSOD R-CNN: backbone + ROI heads over precomputed proposals, trained from image labels."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import ImageList

from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone, imagenet_model_state_dict


@META_ARCH_REGISTRY.register()
class WSODRCNN(nn.Module):
    """No RPN: every input dict carries "proposals" (Instances with proposal_boxes) and, in
    training, "image_labels" (C,) multi-hot, as produced by WSODDatasetMapper.

    Training returns the losses; test returns per image {"instances": detections in the
    original image size, "image_scores": (C,)}.

    ``trains_on_views``: whether training inputs are several views of each image (multi-view
    mapper, INPUT.VIEWS.NUM_SCALES >= 1) rather than one; the trainer checks the config against it.
    ``adversary``: the ROI heads' module trained adversarially with its own optimizer (Concrete
    DropBlock) or None; the trainer keeps it out of the main optimizer.
    """

    trains_on_views = False

    @configurable
    def __init__(
        self,
        *,
        backbone: ImageNetBackbone,
        roi_heads: nn.Module,
        pixel_mean: List[float],
        pixel_std: List[float],
    ):
        super().__init__()
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "roi_heads": build_roi_heads(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def adversary(self) -> Optional[nn.Module]:
        return self.roi_heads.adversary

    @property
    def device(self):
        return self.pixel_mean.device

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """An ImageNet file of the backbone as this model's state dict, or None if ``state`` is
        not one. The file's classifier layers go to the box head (VGG16's fc6 / fc7 to
        VGGFCHead's layers of those names)."""
        return imagenet_model_state_dict(
            self.backbone, state, classifier_prefix="roi_heads.box_head."
        )

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals = [x["proposals"].to(self.device) for x in batched_inputs]
        if self.training:
            labels = torch.stack([x["image_labels"] for x in batched_inputs]).to(self.device)
            return self.roi_heads(features, proposals, labels)
        instances, image_scores = self.roi_heads(features, proposals)
        results = []
        for inst, scores, inp, size in zip(
            instances, image_scores, batched_inputs, images.image_sizes
        ):
            height, width = inp.get("height", size[0]), inp.get("width", size[1])
            results.append(
                {"instances": detector_postprocess(inst, height, width), "image_scores": scores}
            )
        return results
