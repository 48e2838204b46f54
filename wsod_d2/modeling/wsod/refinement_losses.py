"""Losses of the online refinement stages: OICR, PCL, and the weighted box-regression loss.

All losses of one image are normalised by its number of RoIs R (ignored RoIs included), as in
OICR/PCL: -(1/R) * sum. Inputs come from :mod:`wsod_d2.modeling.wsod.pseudo_labels`.
"""

import torch
import torch.nn.functional as F
from detectron2.modeling.box_regression import Box2BoxTransform

from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels

__all__ = ["oicr_loss", "pcl_loss", "weighted_smooth_l1_box_loss", "regression_targets"]


def _check_rois(probs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> None:
    if probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs: expected shape (R, C+1) with R >= 1, got {tuple(probs.shape)}")
    num_rois = probs.shape[0]
    if labels.shape != (num_rois,):
        raise ValueError(f"labels: expected shape ({num_rois},), got {tuple(labels.shape)}")
    if weights.shape != (num_rois,):
        raise ValueError(f"weights: expected shape ({num_rois},), got {tuple(weights.shape)}")


def oicr_loss(
    probs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Weighted cross-entropy on softmax outputs: -(1/R) sum_r w_r log(p[r, label_r] + eps).

    probs: (R, C+1) softmax output, column 0 = background; labels: (R,) long in [0, C];
    weights: (R,). Returns a scalar.
    """
    _check_rois(probs, labels, weights)
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    return -(weights * torch.log(picked + eps)).sum() / probs.shape[0]


def pcl_loss(
    probs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    clusters: torch.Tensor,
    gt_classes: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Proposal-cluster loss (PCL, TPAMI 2018), normalised by R.

    loss = -(1/R) [ sum_{r: label_r = 0} w_r log(p[r, 0] + eps)
                    + sum_n W_n log(mean_{r in n} p[r, c_n + 1] + eps) ],
    W_n = sum_{r in n} w_r. A RoI belongs to cluster n when clusters[r] = n >= 0; clusters
    without members contribute nothing.

    probs: (R, C+1) softmax output; labels: (R,) long; weights: (R,); clusters: (R,) long index
    into the pseudo-GTs or -1; gt_classes: (G,) long, 0-based real class of each pseudo-GT.
    """
    _check_rois(probs, labels, weights)
    num_rois = probs.shape[0]
    if clusters.shape != (num_rois,):
        raise ValueError(f"clusters: expected shape ({num_rois},), got {tuple(clusters.shape)}")
    if gt_classes.dim() != 1:
        raise ValueError(f"gt_classes: expected shape (G,), got {tuple(gt_classes.shape)}")
    background = (labels == 0).to(probs.dtype)
    loss = -(background * weights * torch.log(probs[:, 0] + eps)).sum()

    num_clusters = gt_classes.shape[0]
    in_cluster = clusters >= 0
    cluster_of = clusters.clamp(min=0)
    # Gathering with a dummy class for RoIs outside any cluster keeps every op vectorised.
    class_of = gt_classes[cluster_of] + 1 if num_clusters else torch.zeros_like(labels)
    member = in_cluster.to(probs.dtype)
    member_probs = probs.gather(1, class_of[:, None]).squeeze(1) * member
    prob_sums = probs.new_zeros(num_clusters).index_add(0, cluster_of, member_probs)
    counts = probs.new_zeros(num_clusters).index_add(0, cluster_of, member)
    cluster_weights = probs.new_zeros(num_clusters).index_add(0, cluster_of, weights * member)
    mean_probs = prob_sums / counts.clamp(min=1)
    loss = loss - (cluster_weights * torch.log(mean_probs + eps) * (counts > 0)).sum()
    return loss / num_rois


def weighted_smooth_l1_box_loss(
    pred_deltas: torch.Tensor,
    labels: torch.Tensor,
    target_deltas: torch.Tensor,
    weights: torch.Tensor,
    beta: float = 1.0,
) -> torch.Tensor:
    """Class-specific Smooth-L1 on foreground RoIs, weighted per RoI, normalised by R.

    loss = (1/R) sum_{r: label_r > 0} w_r sum_{i<4} smooth_l1(pred[r, 4 label_r + i] - t[r, i]).
    The normaliser is R (all RoIs), like the classification losses, so that the box term keeps
    its scale when few RoIs are foreground.

    pred_deltas: (R, 4*(C+1)) class-specific deltas, slice 0 = background (unused);
    labels: (R,) long in [0, C]; target_deltas: (R, 4); weights: (R,). beta = 0 gives L1.
    """
    num_rois = pred_deltas.shape[0]
    if pred_deltas.dim() != 2 or num_rois == 0 or pred_deltas.shape[1] % 4 != 0:
        raise ValueError(
            f"pred_deltas: expected shape (R, 4*(C+1)) with R >= 1, got {tuple(pred_deltas.shape)}"
        )
    if labels.shape != (num_rois,) or weights.shape != (num_rois,):
        raise ValueError(
            f"labels, weights: expected shape ({num_rois},), got {tuple(labels.shape)}, "
            f"{tuple(weights.shape)}"
        )
    if target_deltas.shape != (num_rois, 4):
        raise ValueError(
            f"target_deltas: expected shape ({num_rois}, 4), got {tuple(target_deltas.shape)}"
        )
    columns = labels[:, None] * 4 + torch.arange(4, device=labels.device)
    picked = pred_deltas.gather(1, columns)
    per_roi = F.smooth_l1_loss(picked, target_deltas, reduction="none", beta=beta).sum(dim=1)
    # where, not a product, so a non-finite target on a background RoI cannot leak a NaN.
    per_roi = torch.where(labels > 0, weights * per_roi, torch.zeros_like(per_roi))
    return per_roi.sum() / num_rois


def regression_targets(
    proposal_boxes: torch.Tensor, pseudo: PseudoLabels, box2box_transform: Box2BoxTransform
) -> torch.Tensor:
    """Deltas from each foreground RoI to its pseudo-GT box; zeros for background and ignored.

    proposal_boxes: (R, 4) XYXY, the boxes the pseudo labels were built on; returns (R, 4).
    Foreground RoIs are those with ``pseudo.clusters >= 0`` (IoU >= fg_iou).
    """
    num_rois = proposal_boxes.shape[0]
    if pseudo.clusters.shape != (num_rois,):
        raise ValueError(
            f"proposal_boxes: {num_rois} boxes but pseudo labels for {pseudo.clusters.shape[0]}"
        )
    targets = torch.zeros_like(proposal_boxes)
    if pseudo.gt_boxes.shape[0] == 0:
        return targets
    matched_boxes = pseudo.gt_boxes[pseudo.clusters.clamp(min=0)]
    deltas = box2box_transform.get_deltas(proposal_boxes, matched_boxes)
    return torch.where((pseudo.clusters >= 0)[:, None], deltas, targets)
