"""Pseudo labellers of the refinement stages (PSEUDO_LABELER_REGISTRY): OICR, PCL and MIST,
each a configured call of its pseudo-label function and the stage loss that goes with it."""
import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry

from wsod_d2.modeling.wsod.mist import mist_pseudo_labels
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels, oicr_pseudo_labels
from wsod_d2.modeling.wsod.refinement_losses import oicr_loss, pcl_loss

__all__ = ["PSEUDO_LABELER_REGISTRY", "build_pseudo_labeler", "OICR", "PCL", "MIST"]

PSEUDO_LABELER_REGISTRY = Registry("PSEUDO_LABELER")
PSEUDO_LABELER_REGISTRY.__doc__ = """
Pseudo labellers of the refinement stages, built with (cfg). Called as
labeller(boxes (R, 4), scores (R, C), image_labels (C,)) -> PseudoLabels of one image;
labeller.loss(probs (R, C+1), pseudo) -> the stage's classification loss of that image.
"""


def build_pseudo_labeler(cfg):
    return PSEUDO_LABELER_REGISTRY.get(cfg.MODEL.REFINEMENT.PSEUDO_LABELER)(cfg)


class _IoUAssignedLabeler:
    """Shared by the labellers: RoIs take the class of their max-IoU pseudo-GT (foreground at
    IoU >= fg_iou, ignored below bg_iou); the loss is the weighted cross-entropy of OICR."""

    def __init__(self, *, fg_iou: float, bg_iou: float):
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou

    def loss(self, probs: torch.Tensor, pseudo: PseudoLabels) -> torch.Tensor:
        """probs: (R, C+1) softmax of one image's RoIs -> scalar."""
        return oicr_loss(probs, pseudo.labels, pseudo.weights)


@PSEUDO_LABELER_REGISTRY.register()
class OICR(_IoUAssignedLabeler):
    """Top-scoring proposal per positive class; weighted cross-entropy."""

    @configurable
    def __init__(self, *, fg_iou: float, bg_iou: float):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou)

    @classmethod
    def from_config(cls, cfg):
        return {"fg_iou": cfg.MODEL.REFINEMENT.FG_IOU, "bg_iou": cfg.MODEL.REFINEMENT.BG_IOU}

    def __call__(self, boxes, scores, image_labels) -> PseudoLabels:
        return oicr_pseudo_labels(boxes, scores, image_labels, self.fg_iou, self.bg_iou)


@PSEUDO_LABELER_REGISTRY.register()
class PCL(_IoUAssignedLabeler):
    """Proposal clusters from k-means candidates and an IoU graph; proposal-cluster loss."""

    @configurable
    def __init__(
        self,
        *,
        fg_iou: float,
        bg_iou: float,
        graph_iou: float,
        max_clusters: int,
        kmeans_k: int,
        kmeans_iters: int,
    ):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou)
        self.graph_iou = graph_iou
        self.max_clusters = max_clusters
        self.kmeans_k = kmeans_k
        self.kmeans_iters = kmeans_iters

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.REFINEMENT
        return {
            "fg_iou": r.FG_IOU,
            "bg_iou": r.BG_IOU,
            "graph_iou": r.PCL_GRAPH_IOU,
            "max_clusters": r.PCL_MAX_CLUSTERS,
            "kmeans_k": r.PCL_KMEANS_K,
            "kmeans_iters": r.PCL_KMEANS_ITERS,
        }

    def __call__(self, boxes, scores, image_labels) -> PseudoLabels:
        return pcl_pseudo_labels(
            boxes,
            scores,
            image_labels,
            fg_iou=self.fg_iou,
            bg_iou=self.bg_iou,
            graph_iou=self.graph_iou,
            max_clusters=self.max_clusters,
            kmeans_k=self.kmeans_k,
            kmeans_iters=self.kmeans_iters,
        )

    def loss(self, probs: torch.Tensor, pseudo: PseudoLabels) -> torch.Tensor:
        """probs: (R, C+1) softmax of one image's RoIs -> scalar."""
        return pcl_loss(probs, pseudo.labels, pseudo.weights, pseudo.clusters, pseudo.gt_classes)


@PSEUDO_LABELER_REGISTRY.register()
class MIST(_IoUAssignedLabeler):
    """NMS over the top-scoring proposals of each positive class; weighted cross-entropy."""

    @configurable
    def __init__(
        self,
        *,
        fg_iou: float,
        bg_iou: float,
        top_ratio: float,
        nms_iou: float,
        compare_all_higher_ranked: bool,
    ):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou)
        self.top_ratio = top_ratio
        self.nms_iou = nms_iou
        self.compare_all_higher_ranked = compare_all_higher_ranked

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.REFINEMENT
        return {
            "fg_iou": r.FG_IOU,
            "bg_iou": r.BG_IOU,
            "top_ratio": r.MIST_TOP_RATIO,
            "nms_iou": r.MIST_NMS_IOU,
            "compare_all_higher_ranked": r.MIST_COMPARE_ALL_HIGHER_RANKED,
        }

    def __call__(self, boxes, scores, image_labels) -> PseudoLabels:
        return mist_pseudo_labels(
            boxes,
            scores,
            image_labels,
            top_ratio=self.top_ratio,
            nms_iou=self.nms_iou,
            fg_iou=self.fg_iou,
            bg_iou=self.bg_iou,
            compare_all_higher_ranked=self.compare_all_higher_ranked,
        )
