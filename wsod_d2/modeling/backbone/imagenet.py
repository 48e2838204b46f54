"""The contract by which a backbone reads public ImageNet files of its architecture.

Each wsod_d2 backbone is an :class:`ImageNetBackbone` and owns its conversion (torchvision or
caffe VGG16 in vgg.py, torchvision ResNet in resnet.py, DeiT / timm ViT in deit.py). A
meta-architecture turns the converted dict into its own keys with
:func:`imagenet_model_state_dict`, deciding where the file's classifier layers go; WSODCheckpointer
and WSOLClassifier's load_state_dict pre-hook call the meta-architecture.
"""

from typing import Dict, Optional

import torch
from detectron2.modeling import Backbone

__all__ = ["IMAGENET_CLASSIFIER", "ImageNetBackbone", "imagenet_model_state_dict"]

# Key prefix of the ImageNet classifier layers a conversion passes on, e.g.
# "imagenet_classifier.fc6.weight" (VGG16's fc6); the meta-architecture maps or drops them.
IMAGENET_CLASSIFIER = "imagenet_classifier."


class ImageNetBackbone(Backbone):
    """A detectron2 Backbone that can read the public ImageNet files of its architecture."""

    # Named in WSODCheckpointer's log ("ImageNet VGG16 weights, ...").
    imagenet_architecture: str = "ImageNet"

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """
        Args:
            state: a weight file's state dict, names as published.

        Returns:
            The file's backbone tensors under this backbone's names (no "backbone." prefix), and
            those of its classifier layers that a head may adopt under
            ``IMAGENET_CLASSIFIER + <layer>.<weight|bias>``; or None when ``state`` is not such a
            file (the default: the backbone reads none).
        """
        return None


def imagenet_model_state_dict(
    backbone: ImageNetBackbone,
    state: Dict[str, torch.Tensor],
    classifier_prefix: Optional[str] = None,
) -> Optional[Dict[str, torch.Tensor]]:
    """A model's state dict from an ImageNet file of its backbone, or None if ``state`` is not one.

    Backbone tensors go under "backbone." (detectron2's meta-architecture layout); the classifier
    layers under ``classifier_prefix`` (e.g. "roi_heads.box_head."), or are dropped when it is
    None.
    """
    converted = backbone.imagenet_state_dict(state)
    if converted is None:
        return None
    out = {}
    for key, value in converted.items():
        if not key.startswith(IMAGENET_CLASSIFIER):
            out["backbone." + key] = value
        elif classifier_prefix is not None:
            out[classifier_prefix + key[len(IMAGENET_CLASSIFIER) :]] = value
    return out
