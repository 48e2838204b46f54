"""torchvision ResNets for WSOL: the stem and four stages, layer3 / layer4 strides configurable.

wsolevaluation's ResNet50 keeps layer4 at stride 1 and, with its "large feature map" option, also
layer3 (plain stride-1 convolutions, no dilation): output stride 8, a 28 x 28 map at 224 pixels.
Built with ``weights=None`` (nothing is downloaded); module names are torchvision's, so its
ImageNet files load by name through :meth:`ResNetWSOL.imagenet_state_dict`.
"""

from typing import Dict, Optional

import torch
import torchvision
from detectron2.modeling import BACKBONE_REGISTRY
from torch import nn

from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone

__all__ = ["ResNetWSOL", "build_resnet_wsol_backbone"]

DEPTHS = (18, 34, 50, 101, 152)
_STEM_STRIDE = 4  # conv1 and maxpool
_LAYER2_STRIDE = 2
_MODULES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _set_first_block_stride(layer: nn.Sequential, stride: int) -> None:
    """Stride of a ResNet stage = its first block's strided conv and shortcut (torchvision v1.5)."""
    block = layer[0]
    strided = (
        block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    )
    strided.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


class ResNetWSOL(ImageNetBackbone):
    """
    Output: {"res5": (N, 512 * expansion, H / stride, W / stride)}, stride = 8 * s3 * s4.
    Modules ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` are torchvision's (ADL positions such as
    "layer3.0" name its blocks).
    """

    def __init__(self, *, depth: int, layer3_stride: int, layer4_stride: int):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"MODEL.RESNET_WSOL.DEPTH must be one of {DEPTHS}, got {depth}")
        for name, stride in (("LAYER3_STRIDE", layer3_stride), ("LAYER4_STRIDE", layer4_stride)):
            if stride not in (1, 2):
                raise ValueError(f"MODEL.RESNET_WSOL.{name} must be 1 or 2, got {stride}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        for name in _MODULES:
            self.add_module(name, getattr(net, name))
        _set_first_block_stride(self.layer3, layer3_stride)
        _set_first_block_stride(self.layer4, layer4_stride)
        self._out_features = ["res5"]
        self._out_feature_channels = {"res5": net.fc.in_features}
        self._out_feature_strides = {
            "res5": _STEM_STRIDE * _LAYER2_STRIDE * layer3_stride * layer4_stride
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        for name in _MODULES:
            x = getattr(self, name)(x)
        return {"res5": x}

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """
        A torchvision ImageNet ResNet state dict with this backbone's names (its classifier
        ``fc`` left out), or None if ``state`` is not one.
        """
        if "layer1.0.conv1.weight" not in state or "conv1.weight" not in state:
            return None
        return {k: v for k, v in state.items() if not k.startswith("fc.")}


@BACKBONE_REGISTRY.register()
def build_resnet_wsol_backbone(cfg, input_shape):
    return ResNetWSOL(
        depth=cfg.MODEL.RESNET_WSOL.DEPTH,
        layer3_stride=cfg.MODEL.RESNET_WSOL.LAYER3_STRIDE,
        layer4_stride=cfg.MODEL.RESNET_WSOL.LAYER4_STRIDE,
    )
