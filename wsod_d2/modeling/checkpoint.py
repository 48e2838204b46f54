"""Loading ImageNet VGG16 weights (torchvision or caffe format) into a WSOD model by name."""
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer

# torchvision vgg16: conv layers of features.<i>; fc6 = classifier.0, fc7 = classifier.3.
_TV_CONV_INDEX = {
    f"conv{s}_{c}": i
    for (s, c), i in zip(
        [(s, c) for s, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)],
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    )
}
_TV_FC = {"classifier.0": "roi_heads.box_head.fc6", "classifier.3": "roi_heads.box_head.fc7"}
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


def vgg16_imagenet_to_wsod(state):
    """Map an ImageNet VGG16 state dict (torchvision or caffe names) to wsod_d2 model names.

    Returns None when ``state`` is not such a checkpoint (then detectron2's loader handles it).
    """
    if any(_CAFFE_KEY.fullmatch(k) for k in state):
        state = _caffe_to_torchvision(state)
    if not any(k.startswith("features.") for k in state):
        return None
    out = {}
    for key, value in state.items():
        if key.startswith("features."):
            out["backbone." + key] = value
        elif key.rsplit(".", 1)[0] in _TV_FC:
            head, suffix = key.rsplit(".", 1)
            out[f"{_TV_FC[head]}.{suffix}"] = value
    return out


class WSODCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that also reads ImageNet VGG16 weight files (torchvision or caffe)."""

    def _load_file(self, filename):
        loaded = super()._load_file(filename)
        mapped = vgg16_imagenet_to_wsod(loaded.get("model", {}))
        if mapped is None:
            return loaded
        self.logger.info(f"{filename}: ImageNet VGG16 weights, {len(mapped)} tensors by name")
        return {"model": mapped, "__author__": "wsod_d2", "matching_heuristics": False}
