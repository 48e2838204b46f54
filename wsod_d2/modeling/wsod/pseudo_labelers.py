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


IOU_TIE_RULES = ("score", "first")


def build_pseudo_labeler(cfg):
    return PSEUDO_LABELER_REGISTRY.get(cfg.MODEL.REFINEMENT.PSEUDO_LABELER)(cfg)


def tie_to_first(cfg) -> bool:
    """MODEL.REFINEMENT.IOU_TIE as the labellers' flag; ValueError on an unknown value."""
    rule = cfg.MODEL.REFINEMENT.IOU_TIE
    if rule not in IOU_TIE_RULES:
        raise ValueError(f"MODEL.REFINEMENT.IOU_TIE must be one of {IOU_TIE_RULES}, got {rule!r}")
    return rule == "first"


class _IoUAssignedLabeler:
    """Shared by the labellers: RoIs take the class of their max-IoU pseudo-GT (foreground at
    IoU >= fg_iou, ignored below bg_iou; ties by ``tie_to_first``); the loss is the weighted
    cross-entropy of OICR."""

    def __init__(self, *, fg_iou: float, bg_iou: float, tie_to_first: bool = False):
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou
        self.tie_to_first = tie_to_first

    def loss(self, probs: torch.Tensor, pseudo: PseudoLabels) -> torch.Tensor:
        """probs: (R, C+1) softmax of one image's RoIs -> scalar."""
        return oicr_loss(probs, pseudo.labels, pseudo.weights)


@PSEUDO_LABELER_REGISTRY.register()
class OICR(_IoUAssignedLabeler):
    """Top-scoring proposal per positive class; weighted cross-entropy."""

    @configurable
    def __init__(self, *, fg_iou: float, bg_iou: float, tie_to_first: bool = False):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou, tie_to_first=tie_to_first)

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.REFINEMENT
        return {"fg_iou": r.FG_IOU, "bg_iou": r.BG_IOU, "tie_to_first": tie_to_first(cfg)}

    def __call__(self, boxes, scores, image_labels) -> PseudoLabels:
        return oicr_pseudo_labels(
            boxes, scores, image_labels, self.fg_iou, self.bg_iou, self.tie_to_first
        )


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
        released_centres: bool = False,
        tie_to_first: bool = False,
    ):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou, tie_to_first=tie_to_first)
        self.released_centres = released_centres
        self.graph_iou = graph_iou
        self.max_clusters = max_clusters
        self.kmeans_k = kmeans_k
        self.kmeans_iters = kmeans_iters

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.REFINEMENT
        if r.PCL_CENTRES not in ("greedy", "released"):
            raise ValueError(
                "MODEL.REFINEMENT.PCL_CENTRES must be 'greedy' or 'released', got "
                f"{r.PCL_CENTRES!r}"
            )
        return {
            "fg_iou": r.FG_IOU,
            "bg_iou": r.BG_IOU,
            "tie_to_first": tie_to_first(cfg),
            "released_centres": r.PCL_CENTRES == "released",
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
            released_centres=self.released_centres,
            tie_to_first=self.tie_to_first,
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
        tie_to_first: bool = False,
    ):
        super().__init__(fg_iou=fg_iou, bg_iou=bg_iou, tie_to_first=tie_to_first)
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
            "tie_to_first": tie_to_first(cfg),
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
            tie_to_first=self.tie_to_first,
        )
