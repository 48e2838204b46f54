"""WSODCheckpointer: detectron2's checkpointer that also reads public ImageNet files of the
model's backbone (VGG16 in torchvision or caffe names, torchvision ResNet, DeiT / timm ViT)."""
from detectron2.checkpoint import DetectionCheckpointer


class WSODCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer for wsod_d2's meta-architectures (WSODRCNN, CASDRCNN,
    WSOLClassifier): a file that ``model.imagenet_state_dict(state)`` recognises as an ImageNet
    file of the backbone (see :class:`wsod_d2.modeling.backbone.imagenet.ImageNetBackbone`) is
    loaded under the names it returns, without detectron2's name-matching heuristics."""

    def _load_file(self, filename):
        loaded = super()._load_file(filename)
        mapped = self.model.imagenet_state_dict(loaded.get("model", {}))
        if mapped is None:
            return loaded
        architecture = self.model.backbone.imagenet_architecture
        self.logger.info(
            f"{filename}: ImageNet {architecture} weights, {len(mapped)} tensors by name"
        )
        return {"model": mapped, "__author__": "wsod_d2", "matching_heuristics": False}
