"""Classification heads that also give per-class localization maps (WSOL_HEAD_REGISTRY).

A head maps the backbone's feature dict to a dict with "logits" (B, C) and whatever it needs to
draw maps; ``class_maps(output, classes)`` then gives one map per image, (B, h, w), for the
requested classes (B,). Maps are raw scores: evaluators and CropCAM normalise them.

- CAMHead (Zhou et al., CVPR 2016; wsolevaluation's VGG-GAP / ResNet50): optional 3x3 conv +
  ReLU layers (VGG-GAP's conv6), global average pooling, a linear classifier. The CAM of class c
  is ``sum_k w_ck f_k`` at each position, so the logit is the spatial mean of the CAM plus the
  bias. wsolevaluation takes the channel mean instead of the sum: the same map up to a factor.
- CSRAHead: :class:`wsod_d2.modeling.wsol.csra.MultiHeadCSRA`; maps are its summed normalised
  scores.
- TSCAMHead (TS-CAM, Gao et al., ICCV 2021): a 3x3 conv turns the patch-token map into the
  semantic map S (B, C, h, w), logits = GAP(S); the coupled map of class c is A * S_c with A the
  backbone's class-token attention map. "semantic" and "attention" are returned for SCM.
"""

from abc import ABCMeta, abstractmethod
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

from wsod_d2.modeling.backbone.deit import CLS_ATTENTION
from wsod_d2.modeling.wsol.csra import MultiHeadCSRA

__all__ = [
    "WSOL_HEAD_REGISTRY",
    "WSOLHead",
    "CAMHead",
    "CSRAHead",
    "TSCAMHead",
    "build_wsol_head",
]

WSOL_HEAD_REGISTRY = Registry("WSOL_HEAD")
WSOL_HEAD_REGISTRY.__doc__ = """
Registry for WSOL classification heads, subclasses of :class:`WSOLHead` (its docstring is the
contract). Built by ``from_config(cfg, input_shape)``.
"""

# torchvision's classifier init for the linear layer.
_FC_INIT_STD = 0.01


def _he_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _feature(features: Dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in features:
        raise KeyError(
            f"MODEL.WSOL.IN_FEATURE {name!r} is not a backbone output; outputs: {sorted(features)}"
        )
    return features[name]


def _gather(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), (B,) -> (B, h, w)."""
    return maps[torch.arange(maps.shape[0], device=maps.device), classes]


def _input_channels(input_shape: Dict[str, ShapeSpec], in_feature: str) -> int:
    if in_feature not in input_shape:
        raise KeyError(
            f"MODEL.WSOL.IN_FEATURE {in_feature!r} is not a backbone output; outputs: "
            f"{sorted(input_shape)}"
        )
    return input_shape[in_feature].channels


class WSOLHead(nn.Module, metaclass=ABCMeta):
    """The contract between a WSOL head and WSOLClassifier.

    - ``forward(features)``: the backbone's feature dict -> {"logits": (B, C), ...} with whatever
      the head needs to draw maps;
    - ``class_maps(output, classes)``: forward's output and (B,) classes -> (B, h, w) raw maps;
    - ``has_semantic_map``: True when forward's output also holds "semantic" (B, C, h, w) and
      "attention" (B, h, w), which SCM refines and the classifier returns at test.
    """

    has_semantic_map: bool = False

    @abstractmethod
    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The backbone's feature dict -> {"logits": (B, C), ...} (see above)."""

    @abstractmethod
    def class_maps(self, output: Dict[str, torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
        """forward's output and (B,) classes -> (B, h, w) raw maps."""


@WSOL_HEAD_REGISTRY.register()
class CAMHead(WSOLHead):
    """Convs (optional) + GAP + linear classifier; CAMs from the classifier weights."""

    @configurable
    def __init__(
        self, *, in_feature: str, in_channels: int, conv_dims: List[int], num_classes: int
    ):
        """
        Args:
            in_feature: backbone output to use.
            in_channels: its channels.
            conv_dims: output channels of 3x3 conv + ReLU layers before the pooling ([1024] is
                VGG-GAP's conv6; [] for ResNet50).
            num_classes: C.
        """
        super().__init__()
        self.in_feature = in_feature
        layers = []
        for dim in conv_dims:
            conv = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
            _he_init(conv)
            layers += [conv, nn.ReLU(inplace=True)]
            in_channels = dim
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=_FC_INIT_STD)
        nn.init.zeros_(self.fc.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.WSOL.IN_FEATURE
        return {
            "in_feature": in_feature,
            "in_channels": _input_channels(input_shape, in_feature),
            "conv_dims": list(cfg.MODEL.WSOL.CONV_DIMS),
            "num_classes": cfg.MODEL.WSOL.NUM_CLASSES,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Returns:
            {"logits": (B, C), "features": (B, K, h, w) the pooled feature map}.
        """
        x = self.convs(_feature(features, self.in_feature))
        return {"logits": self.fc(x.mean(dim=(2, 3))), "features": x}

    def class_maps(self, output: Dict[str, torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
        """CAMs ``sum_k w_ck f_k`` of the given classes: (B, h, w)."""
        return torch.einsum("bkhw,bk->bhw", output["features"], self.fc.weight[classes])


@WSOL_HEAD_REGISTRY.register()
class CSRAHead(WSOLHead):
    """Multi-head CSRA on one backbone feature map."""

    @configurable
    def __init__(
        self, *, in_feature: str, in_channels: int, num_classes: int, num_heads: int, lam: float
    ):
        super().__init__()
        self.in_feature = in_feature
        self.csra = MultiHeadCSRA(in_channels, num_classes, num_heads=num_heads, lam=lam)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.WSOL.IN_FEATURE
        return {
            "in_feature": in_feature,
            "in_channels": _input_channels(input_shape, in_feature),
            "num_classes": cfg.MODEL.WSOL.NUM_CLASSES,
            "num_heads": cfg.MODEL.CSRA.NUM_HEADS,
            "lam": cfg.MODEL.CSRA.LAMBDA,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Returns:
            {"logits": (B, C), "features": (B, D, h, w)}.
        """
        x = _feature(features, self.in_feature)
        return {"logits": self.csra(x), "features": x}

    def class_maps(self, output: Dict[str, torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
        """Summed normalised CSRA scores of the given classes: (B, h, w)."""
        return _gather(self.csra.forward_maps(output["features"]), classes)


@WSOL_HEAD_REGISTRY.register()
class TSCAMHead(WSOLHead):
    """TS-CAM: semantic map from patch tokens, coupled with the class-token attention map."""

    has_semantic_map = True

    @configurable
    def __init__(self, *, in_feature: str, in_channels: int, num_classes: int):
        super().__init__()
        self.in_feature = in_feature
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)
        _he_init(self.conv)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.WSOL.IN_FEATURE
        return {
            "in_feature": in_feature,
            "in_channels": _input_channels(input_shape, in_feature),
            "num_classes": cfg.MODEL.WSOL.NUM_CLASSES,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Returns:
            {"logits": (B, C) = GAP(S), "semantic": S (B, C, h, w), "attention": A (B, h, w)}.
        """
        semantic = self.conv(_feature(features, self.in_feature))
        if CLS_ATTENTION not in features:
            raise KeyError(
                f"TSCAMHead needs the backbone output {CLS_ATTENTION!r} (a ViT backbone such as "
                f"build_vit_wsol_backbone); outputs: {sorted(features)}"
            )
        attention = features[CLS_ATTENTION]
        return {"logits": semantic.mean(dim=(2, 3)), "semantic": semantic, "attention": attention}

    def class_maps(self, output: Dict[str, torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
        """Coupled maps A * S_c of the given classes: (B, h, w)."""
        return output["attention"] * _gather(output["semantic"], classes)


def build_wsol_head(cfg, input_shape: Dict[str, ShapeSpec]) -> WSOLHead:
    """The head named by MODEL.WSOL.HEAD_NAME."""
    return WSOL_HEAD_REGISTRY.get(cfg.MODEL.WSOL.HEAD_NAME)(cfg, input_shape)
