"""VGG backbones for WSOD: VGG16 with pool4 removed and conv5 dilated (stride 8), and the same
network with fewer channels and convs for CPU runs (set by MODEL.VGG.CHANNELS/CONVS_PER_STAGE).
ImageNet VGG16 files (torchvision or caffe names) load by name through
:meth:`VGG.imagenet_state_dict`."""
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from detectron2.layers import get_norm
from detectron2.modeling import BACKBONE_REGISTRY

from wsod_d2.modeling.backbone.imagenet import IMAGENET_CLASSIFIER, ImageNetBackbone

NUM_STAGES = 5

# torchvision vgg16: conv layers of features.<i>; fc6 = classifier.0, fc7 = classifier.3.
_TV_CONV_INDEX = {
    f"conv{s}_{c}": i
    for (s, c), i in zip(
        [(s, c) for s, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)],
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    )
}
_TV_FC = {"classifier.0": "fc6", "classifier.3": "fc7"}
_CAFFE_KEY = re.compile(r"(conv\d_\d|fc[67])_([wb])")


def _caffe_to_torchvision(state):
    """Caffe blob names (conv1_1_w, fc6_b, ...) -> torchvision vgg16 names."""
    out = {}
    for key, value in state.items():
        m = _CAFFE_KEY.fullmatch(key)
        if not m:
            continue
        name, kind = m.groups()
        suffix = "weight" if kind == "w" else "bias"
        prefix = (
            f"features.{_TV_CONV_INDEX[name]}"
            if name.startswith("conv")
            else ("classifier.0" if name == "fc6" else "classifier.3")
        )
        out[f"{prefix}.{suffix}"] = torch.as_tensor(value)
    return out


class VGG(ImageNetBackbone):
    """Five conv stages; max-pool after stages 1-3 (and 4 if ``pool4``); the last stage dilated.

    Module names follow torchvision's ``vgg16().features`` (``vgg16_bn`` with ``norm="BN"``), so
    its ImageNet weights load by name. Output: {name: (N, channels, H / stride, W / stride)} for
    each name in ``out_features`` ("conv1".."conv5": a stage's output after its last conv + ReLU,
    before its max-pool).
    """

    imagenet_architecture = "VGG16"

    def __init__(
        self,
        *,
        channels: List[int],
        convs_per_stage: List[int],
        conv5_dilation: int,
        pool4: bool,
        norm: str,
        freeze_at: int,
        out_features: List[str] = ("conv5",),
    ):
        super().__init__()
        if len(channels) != NUM_STAGES or len(convs_per_stage) != NUM_STAGES:
            raise ValueError(
                f"MODEL.VGG.CHANNELS and MODEL.VGG.CONVS_PER_STAGE need {NUM_STAGES} entries, got "
                f"{list(channels)} and {list(convs_per_stage)}"
            )
        stage_names = [f"conv{i + 1}" for i in range(NUM_STAGES)]
        unknown = [f for f in out_features if f not in stage_names]
        if unknown or not out_features:
            raise ValueError(
                f"MODEL.VGG.OUT_FEATURES must be a non-empty subset of {stage_names}, got "
                f"{list(out_features)}"
            )
        layers, stage_ends, strides = [], [], []
        in_ch, stride = 3, 1
        for stage, (out_ch, n_convs) in enumerate(zip(channels, convs_per_stage)):
            dilation = conv5_dilation if stage == NUM_STAGES - 1 else 1
            for _ in range(n_convs):
                conv = nn.Conv2d(
                    in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=not norm
                )
                # torchvision's VGG init, so that training from scratch starts well scaled.
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
                layers.append(conv)
                if norm:
                    layers.append(get_norm(norm, out_ch))
                layers.append(nn.ReLU(inplace=True))
                in_ch = out_ch
            stage_ends.append(len(layers))
            strides.append(stride)
            if stage < 3 or (stage == 3 and pool4):
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                stride *= 2
            elif stage == 3:
                # Keeps torchvision's layer indices for conv5 when pool4 is dropped.
                layers.append(nn.Identity())
        self.features = nn.Sequential(*layers)
        self._out_features = list(out_features)
        self._out_feature_channels = dict(zip(stage_names, channels))
        self._out_feature_strides = dict(zip(stage_names, strides))
        # Layer index after which each requested stage output is read.
        self._taps = {stage_ends[stage_names.index(f)] - 1: f for f in out_features}
        # Fast R-CNN practice: the first stages keep their ImageNet filters.
        for layer in self.features[: stage_ends[freeze_at - 1] if freeze_at > 0 else 0]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def forward(self, x):
        outputs = {}
        for index, layer in enumerate(self.features[: max(self._taps) + 1]):
            x = layer(x)
            if index in self._taps:
                outputs[self._taps[index]] = x
        return outputs

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """
        An ImageNet VGG16 state dict (torchvision names, or caffe blob names conv1_1_w, fc6_b,
        ...) with this backbone's names ("features.<i>"), its fc6 / fc7 as
        ``IMAGENET_CLASSIFIER + "fc6.weight"`` etc. (fc8 left out), or None if ``state`` is not
        one.
        """
        if any(_CAFFE_KEY.fullmatch(k) for k in state):
            state = _caffe_to_torchvision(state)
        if not any(k.startswith("features.") for k in state):
            return None
        out = {}
        for key, value in state.items():
            if key.startswith("features."):
                out[key] = value
            elif key.rsplit(".", 1)[0] in _TV_FC:
                layer, suffix = key.rsplit(".", 1)
                out[f"{IMAGENET_CLASSIFIER}{_TV_FC[layer]}.{suffix}"] = value
        return out


@BACKBONE_REGISTRY.register()
def build_vgg_backbone(cfg, input_shape):
    return VGG(
        channels=cfg.MODEL.VGG.CHANNELS,
        convs_per_stage=cfg.MODEL.VGG.CONVS_PER_STAGE,
        conv5_dilation=cfg.MODEL.VGG.CONV5_DILATION,
        pool4=cfg.MODEL.VGG.POOL4,
        norm=cfg.MODEL.VGG.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        out_features=cfg.MODEL.VGG.OUT_FEATURES,
    )
