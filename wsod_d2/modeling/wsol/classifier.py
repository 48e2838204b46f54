"""WSOLClassifier: image classification whose head also gives per-class localization maps.

backbone (ADL layers inserted at MODEL.ADL.POSITIONS) -> head (WSOL_HEAD_REGISTRY) -> logits.
Training returns the classification loss: cross-entropy (single-label WSOL) or BCE (multi-label,
CSRA), or, with CropCAM from MODEL.CROPCAM.START_ITER on, the CropCAM losses. With SCM (TS-CAM
heads only) the training logits are GAP of SCM's refined semantic map; SCM is never run at test,
where TS-CAM's own logits and maps are used (the paper; the released SCM code still runs its
blocks at test, taking the logits from the last one and the map from the second).

Test returns per image {"image_scores": (C,) softmax (CE) or sigmoid (BCE) scores, "cam": (h, w)
map of "cam_class", "cam_class": int}, plus "attention" and "semantic" (h, w) for TS-CAM heads.
The class is the input's "cam_class" if given, else its first label when MODEL.WSOL.TEST_CAM_CLASS
is "gt" (wsolevaluation's GT-known protocol) and the input has labels, else the top-1 class.
With CropCAM, the map of an image whose crop box covers less than nu of it is the zoomed map
pasted into the upsampled CAM, at input resolution.

The model also loads public ImageNet files of its backbone as they are (torchvision or caffe
VGG16, torchvision ResNet, DeiT / timm ViT; the ImageNet classifier left out): a load_state_dict
pre-hook renames them with :meth:`WSOLClassifier.imagenet_state_dict`, as WSODCheckpointer does.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage
from torch import nn

from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone, imagenet_model_state_dict
from wsod_d2.modeling.wsol.adl import insert_adl
from wsod_d2.modeling.wsol.cropcam import (
    background_map,
    cam_crop_boxes,
    crop_and_zoom,
    cropcam_loss,
    normalize_cam,
    paste_back,
    use_zoomed_map,
)
from wsod_d2.modeling.wsol.heads import WSOLHead, build_wsol_head
from wsod_d2.modeling.wsol.scm import SCM

__all__ = ["CropCAMOptions", "WSOLClassifier"]

LOSSES = ("ce", "bce")
CAM_CLASS_RULES = ("gt", "top1")


@dataclass(frozen=True)
class CropCAMOptions:
    """CropCAM hyper-parameters (symbols of wsod_d2.modeling.wsol.cropcam)."""

    tau: float  # crop threshold, fraction of the CAM maximum
    nu: float  # test: zoomed map when the crop covers less than this of the image
    lam: float  # classification vs. attention consistency (lambda_3)
    l_pos: float  # pull toward the pasted map (lambda_1)
    l_neg: float  # push from the background map (lambda_2)
    start_iter: int  # plain classification before this iteration


@META_ARCH_REGISTRY.register()
class WSOLClassifier(nn.Module):
    """Classification with maps; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        backbone: ImageNetBackbone,
        head: WSOLHead,
        pixel_mean: List[float],
        pixel_std: List[float],
        loss: str,
        test_cam_class: str,
        scm: Optional[SCM] = None,
        cropcam: Optional[CropCAMOptions] = None,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"MODEL.WSOL.LOSS must be one of {LOSSES}, got {loss!r}")
        if test_cam_class not in CAM_CLASS_RULES:
            raise ValueError(
                f"MODEL.WSOL.TEST_CAM_CLASS must be one of {CAM_CLASS_RULES}, "
                f"got {test_cam_class!r}"
            )
        if scm is not None and not head.has_semantic_map:
            raise ValueError(
                f"SCM needs a head with a semantic map (TSCAMHead), got {type(head).__name__}"
            )
        if cropcam is not None and loss != "ce":
            raise ValueError(
                "CropCAM trains with single-label cross-entropy: set MODEL.WSOL.LOSS ce"
            )
        self.backbone = backbone
        self.head = head
        self.scm = scm
        self.cropcam = cropcam
        self.loss = loss
        self.test_cam_class = test_cam_class
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_load_state_dict_pre_hook(_adopt_imagenet_weights)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        if cfg.MODEL.ADL.POSITIONS:
            insert_adl(
                backbone,
                list(cfg.MODEL.ADL.POSITIONS),
                drop_rate=cfg.MODEL.ADL.DROP_RATE,
                threshold=cfg.MODEL.ADL.THRESHOLD,
            )
        shape = backbone.output_shape()
        scm = None
        if cfg.MODEL.SCM.ENABLED:
            stride = shape[cfg.MODEL.WSOL.IN_FEATURE].stride
            crop = cfg.INPUT.WSOL.CROP_TRAIN
            if crop % stride:
                raise ValueError(
                    f"SCM: INPUT.WSOL.CROP_TRAIN ({crop}) must be a multiple of the feature "
                    f"stride ({stride})"
                )
            scm = SCM(
                grid_size=(crop // stride, crop // stride),
                num_blocks=cfg.MODEL.SCM.NUM_BLOCKS,
                lam_init=cfg.MODEL.SCM.LAMBDA_INIT,
                beta_init=cfg.MODEL.SCM.BETA_INIT,
                alpha=cfg.MODEL.SCM.ALPHA,
                iterations=cfg.MODEL.SCM.ITERATIONS,
                residual=cfg.MODEL.SCM.RESIDUAL,
                normalize=cfg.MODEL.SCM.NORMALIZE,
            )
        cropcam = None
        if cfg.MODEL.CROPCAM.ENABLED:
            cropcam = CropCAMOptions(
                tau=cfg.MODEL.CROPCAM.TAU,
                nu=cfg.MODEL.CROPCAM.NU,
                lam=cfg.MODEL.CROPCAM.LAMBDA,
                l_pos=cfg.MODEL.CROPCAM.LAMBDA_POS,
                l_neg=cfg.MODEL.CROPCAM.LAMBDA_NEG,
                start_iter=cfg.MODEL.CROPCAM.START_ITER,
            )
        return {
            "backbone": backbone,
            "head": build_wsol_head(cfg, shape),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "loss": cfg.MODEL.WSOL.LOSS,
            "test_cam_class": cfg.MODEL.WSOL.TEST_CAM_CLASS,
            "scm": scm,
            "cropcam": cropcam,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """An ImageNet file of the backbone as this model's state dict (the file's classifier
        left out: the head has its own classes), or None if ``state`` is not one."""
        return imagenet_model_state_dict(self.backbone, state)

    def preprocess_image(self, batched_inputs: List[Dict]) -> torch.Tensor:
        """Normalised images stacked to (B, 3, H, W); every view must have the same size."""
        sizes = {tuple(x["image"].shape[-2:]) for x in batched_inputs}
        if len(sizes) != 1:
            ids = [x.get("image_id") for x in batched_inputs]
            raise ValueError(f"WSOL batches need views of one size, got sizes {sizes} for {ids}")
        images = torch.stack([x["image"].to(self.device) for x in batched_inputs])
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        if self.training:
            labels = torch.stack([x["image_labels"] for x in batched_inputs]).to(self.device)
            return self.losses(images, labels, [x.get("image_id") for x in batched_inputs])
        return self.inference(images, batched_inputs)

    def _train_logits(self, output: Dict[str, torch.Tensor]) -> torch.Tensor:
        if self.scm is None:
            return output["logits"]
        return self.scm(output["semantic"], output["attention"]).mean(dim=(2, 3))

    def losses(
        self, images: torch.Tensor, labels: torch.Tensor, image_ids: List
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: (B, 3, H, W) normalised.
            labels: (B, C) multi-hot.
        """
        output = self.head(self.backbone(images))
        logits = self._train_logits(output)
        if self.loss == "bce":
            return {"loss_cls": F.binary_cross_entropy_with_logits(logits, labels)}
        counts = labels.sum(dim=1)
        if not torch.all(counts == 1):
            bad = [i for i, n in zip(image_ids, counts.tolist()) if n != 1]
            raise ValueError(
                f"MODEL.WSOL.LOSS ce needs exactly one label per image; images {bad} have "
                "another number (use bce for multi-label data)"
            )
        targets = labels.argmax(dim=1)
        storage = get_event_storage()
        storage.put_scalar(
            "wsol_classifier/cls_accuracy", (logits.argmax(dim=1) == targets).float().mean()
        )
        if self.cropcam is not None and storage.iter >= self.cropcam.start_iter:
            return self._cropcam_losses(images, targets, logits, output)
        return {"loss_cls": F.cross_entropy(logits, targets)}

    def _cropcam_losses(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        logits: torch.Tensor,
        output: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Second pass on the zoomed crops of the GT-class CAMs; CropCAM's two losses."""
        opts, image_hw = self.cropcam, tuple(images.shape[-2:])
        cam = normalize_cam(self.head.class_maps(output, targets))
        boxes = cam_crop_boxes(cam.detach(), tau=opts.tau, image_hw=image_hw)
        zoomed_output = self.head(self.backbone(_zoom(images, boxes)))
        zoomed_cam = self.head.class_maps(zoomed_output, targets)
        m_zoom = paste_back(cam[:, None], zoomed_cam[:, None], boxes, image_hw)
        return cropcam_loss(
            logits,
            self._train_logits(zoomed_output),
            targets,
            cam[:, None],
            m_zoom,
            background_map(m_zoom),
            lam=opts.lam,
            l_pos=opts.l_pos,
            l_neg=opts.l_neg,
        )

    def _cam_class(self, inp: Dict, scores: torch.Tensor) -> int:
        if "cam_class" in inp:
            return int(inp["cam_class"])
        labels = inp.get("image_labels")
        if self.test_cam_class == "gt" and labels is not None and bool(labels.any()):
            return int(torch.nonzero(labels)[0])
        return int(scores.argmax())

    def inference(self, images: torch.Tensor, batched_inputs: List[Dict]) -> List[Dict]:
        output = self.head(self.backbone(images))
        logits = output["logits"]
        scores = logits.softmax(dim=1) if self.loss == "ce" else logits.sigmoid()
        classes = torch.tensor(
            [self._cam_class(inp, s) for inp, s in zip(batched_inputs, scores)],
            device=self.device,
        )
        cams = self.head.class_maps(output, classes)
        if self.cropcam is not None:
            cams = self._cropcam_maps(images, cams, classes)
        results = []
        for i, cam in enumerate(cams):
            result = {"image_scores": scores[i], "cam": cam, "cam_class": int(classes[i])}
            if self.head.has_semantic_map:
                result["attention"] = output["attention"][i]
                result["semantic"] = output["semantic"][i, classes[i]]
            results.append(result)
        return results

    def _cropcam_maps(
        self, images: torch.Tensor, cams: torch.Tensor, classes: torch.Tensor
    ) -> List[torch.Tensor]:
        """CropCAM's test rule: zoomed maps pasted at input resolution where the crop is small."""
        opts, image_hw = self.cropcam, tuple(images.shape[-2:])
        boxes = cam_crop_boxes(cams, tau=opts.tau, image_hw=image_hw)
        zoom = [i for i, box in enumerate(boxes) if use_zoomed_map(box, image_hw, opts.nu)]
        maps = list(cams)
        if not zoom:
            return maps
        zoom_output = self.head(self.backbone(_zoom(images[zoom], boxes[zoom])))
        zoomed = self.head.class_maps(zoom_output, classes[zoom])
        upsampled = F.interpolate(cams[zoom, None], size=image_hw, mode="bicubic")
        pasted = paste_back(normalize_cam(upsampled), zoomed[:, None], boxes[zoom], image_hw)
        for j, i in enumerate(zoom):
            maps[i] = pasted[j, 0]
        return maps


def _zoom(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crops of (B, 3, S, S) images resized to S x S (CropCAM zooms to the input size)."""
    height, width = images.shape[-2:]
    if height != width:
        raise ValueError(f"CropCAM needs square inputs, got {height}x{width}")
    return crop_and_zoom(images, boxes, height)


def _adopt_imagenet_weights(module: WSOLClassifier, state_dict, prefix: str, *args) -> None:
    """Rename a public ImageNet file of the backbone (bare backbone keys) to model keys."""
    if any(key.startswith(prefix + "backbone.") for key in state_dict):
        return
    bare = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    mapped = module.imagenet_state_dict(bare)
    if mapped is None:
        return
    for key in list(state_dict):
        if key.startswith(prefix):
            del state_dict[key]
    state_dict.update({prefix + k: v for k, v in mapped.items()})
