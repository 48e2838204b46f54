"""ROI heads of a WSOD detector: pool the precomputed proposals, fc6/fc7, a MIL head."""
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, build_box_head
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances

from wsod_d2.modeling.wsod.concrete_dropblock import ConcreteDropBlock
from wsod_d2.modeling.wsod.context_pooling import RingPooler
from wsod_d2.modeling.wsod.loss_bookkeeping import put_loss
from wsod_d2.modeling.wsod.mil import MILHead, build_mil_head


@dataclass
class MILOutputs:
    """What the box head and the MIL head compute for the proposals of a batch (R in all)."""

    pooled: torch.Tensor  # (R, D, P, P) pooled RoI features
    x: torch.Tensor  # (R, fc_dim) box-head (fc7) features
    roi_scores: torch.Tensor  # (R, C)
    image_scores: torch.Tensor  # (B, C)


@ROI_HEADS_REGISTRY.register()
class WSODROIHeads(nn.Module):
    """Trained from image labels only: returns the MIL loss in training, and per-class
    detections (scores of the MIL head, boxes = proposals, class-wise NMS) at test.

    A MIL head with ``needs_context = True`` also gets the fc7 features of each proposal's frame
    and context rings (``frame_pooler``, ``context_pooler``), through the shared box head.

    ``dropblock`` (MODEL.CDB.ENABLED): Concrete DropBlock on the pooled RoI features before the
    box head, in training. ``adversary`` is that module (None without it): the contract with the
    trainer, which excludes its parameters from the main optimizer and trains them with their own
    (wsod_d2.engine.adversarial).
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        box_pooler: ROIPooler,
        box_head: nn.Module,
        mil_head: MILHead,
        test_score_thresh: float,
        test_nms_thresh: float,
        test_topk_per_image: int,
        frame_pooler: Optional[RingPooler] = None,
        context_pooler: Optional[RingPooler] = None,
        dropblock: Optional[ConcreteDropBlock] = None,
    ):
        super().__init__()
        if mil_head.needs_context and (frame_pooler is None or context_pooler is None):
            raise ValueError(
                f"MIL head {type(mil_head).__name__} needs context features: give WSODROIHeads "
                "a frame_pooler and a context_pooler"
            )
        self.in_features = in_features
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.mil_head = mil_head
        self.frame_pooler = frame_pooler
        self.context_pooler = context_pooler
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.dropblock = dropblock

    @property
    def adversary(self) -> Optional[nn.Module]:
        """The module trained adversarially by its own optimizer, or None."""
        return self.dropblock

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        box_pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[f].stride for f in in_features),
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        )
        channels = input_shape[in_features[0]].channels
        box_head = build_box_head(
            cfg, ShapeSpec(channels=channels, height=resolution, width=resolution)
        )
        mil_head = build_mil_head(cfg, box_head.output_shape.channels)
        ret = {
            "in_features": in_features,
            "box_pooler": box_pooler,
            "box_head": box_head,
            "mil_head": mil_head,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }
        if cfg.MODEL.CDB.ENABLED:
            ret["dropblock"] = ConcreteDropBlock(cfg, channels)
        if mil_head.needs_context:
            scale = cfg.MODEL.MIL.CONTEXT_SCALE
            ret["frame_pooler"] = RingPooler(box_pooler, outer_scale=1.0, inner_scale=1.0 / scale)
            ret["context_pooler"] = RingPooler(box_pooler, outer_scale=scale, inner_scale=1.0)
        return ret

    def roi_features(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Pooled (R, D, P, P) and box-head (R, fc_dim) features of all proposals; in training
        with Concrete DropBlock, the pooled features are the masked ones."""
        pooled = self.box_pooler(
            [features[f] for f in self.in_features], [p.proposal_boxes for p in proposals]
        )
        if self.dropblock is not None:
            pooled = self.dropblock(pooled)
        return pooled, self.box_head(pooled)

    def mil_outputs(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> MILOutputs:
        """Pooled and box-head features of the proposals and the MIL head's scores."""
        pooled, x = self.roi_features(features, proposals)
        num_rois = [len(p) for p in proposals]
        if self.frame_pooler is None:
            return MILOutputs(pooled, x, *self.mil_head(x, num_rois))
        maps = [features[f] for f in self.in_features]
        boxes = [p.proposal_boxes for p in proposals]
        frame = self.box_head(self.frame_pooler(maps, boxes))
        context = self.box_head(self.context_pooler(maps, boxes))
        return MILOutputs(pooled, x, *self.mil_head(x, num_rois, frame=frame, context=context))

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        image_labels: Optional[torch.Tensor] = None,
    ):
        """proposals: per image, Instances with proposal_boxes; image_labels: (B, C) multi-hot.

        Training: dict of losses. Test: (list of Instances, image_scores (B, C)).
        """
        if self.training:
            return self.losses(features, proposals, image_labels)
        boxes, scores, image_scores = self.predict(features, proposals)
        return self.detections(boxes, scores, proposals), image_scores

    def losses(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        image_labels: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """image_labels: (B, C) multi-hot -> {"loss_mil"}."""
        losses = {}
        image_scores = self.mil_outputs(features, proposals).image_scores
        put_loss(
            losses,
            "loss_mil",
            self.mil_head.loss(image_scores, image_labels),
            self.mil_head.loss_weight,
        )
        return losses

    def predict(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Per-proposal outputs before NMS, in the coordinates of ``proposals``.

        Returns boxes: per image (R, 4) or class-specific (R, 4C); scores: per image (R, C);
        image_scores: (B, C).
        """
        out = self.mil_outputs(features, proposals)
        boxes = [p.proposal_boxes.tensor for p in proposals]
        roi_scores = list(out.roi_scores.split([len(p) for p in proposals]))
        return boxes, roi_scores, self.mil_head.class_image_scores(out.image_scores)

    def detections(self, boxes, scores, proposals: List[Instances]) -> List[Instances]:
        """boxes: per image (R, 4) or class-specific (R, 4C); scores: per image (R, C)."""
        # detectron2's inference expects a background column last; it is dropped there.
        scores = [torch.cat([s, s.new_zeros(len(s), 1)], dim=1) for s in scores]
        instances, _ = fast_rcnn_inference(
            boxes,
            scores,
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )
        return instances
