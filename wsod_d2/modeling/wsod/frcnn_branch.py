"""pcl.pytorch's Fast R-CNN branch (MODEL.WITH_FRCNN on its master branch): a fourth head on fc7,
Linear(D, C+1) class logits and Linear(D, 4(C+1)) class-specific deltas, trained on OICR pseudo
labels built from the last refinement stage's scores (lib/modeling/fast_rcnn_heads.py there).

Training (one image, R RoIs, pseudo labels from OICR's top-1 proposal per positive class with
the fg / ignore thresholds of the stages):
    cls = -(1/R) sum_r w_r log_softmax(logits)[r, label_r]
    box = (1/N) sum_{r: label_r > 0} w_r sum_i smooth_l1(deltas[r, 4 label_r + i] - t[r, i]),
          N = number of RoIs with w_r > 0 (at least 1)
Test: scores = (stage score + softmax(logits)) / 2, where the stage score is the mean of the
stages' softmaxes (background dropped after); boxes = the proposals moved by the branch's deltas.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels

__all__ = ["FastRCNNBranch", "frcnn_branch_losses", "combine_with_branch"]


class FastRCNNBranch(nn.Module):
    """forward(x (R, D)) -> (logits (R, C+1), deltas (R, 4(C+1))); column / slice 0 =
    background. Init as pcl.pytorch: class layer normal(std=cls_init_std), box layer std 0.001."""

    def __init__(self, input_dim: int, num_classes: int, *, cls_init_std: float):
        super().__init__()
        self.cls_score = nn.Linear(input_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(input_dim, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=cls_init_std)
        # Fast R-CNN's box init: small deltas at the start keep the boxes on the proposals.
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def frcnn_branch_losses(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    pseudo: PseudoLabels,
    target_deltas: torch.Tensor,
    beta: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The branch's (classification, box) losses of one image (module docstring).

    logits: (R, C+1); deltas: (R, 4(C+1)); target_deltas: (R, 4), used on foreground RoIs only.
    """
    num_rois = logits.shape[0]
    if logits.dim() != 2 or num_rois == 0 or deltas.shape != (num_rois, 4 * logits.shape[1]):
        raise ValueError(
            f"logits (R, C+1) and deltas (R, 4(C+1)) with R >= 1 expected, got "
            f"{tuple(logits.shape)} and {tuple(deltas.shape)}"
        )
    labels, weights = pseudo.labels, pseudo.weights
    picked = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    cls_loss = -(picked * weights).mean()
    columns = labels[:, None] * 4 + torch.arange(4, device=labels.device)
    per_roi = F.smooth_l1_loss(
        deltas.gather(1, columns), target_deltas, reduction="none", beta=beta
    ).sum(dim=1)
    per_roi = torch.where(labels > 0, weights * per_roi, torch.zeros_like(per_roi))
    box_loss = per_roi.sum() / (weights > 0).sum().clamp(min=1)
    return cls_loss, box_loss


def combine_with_branch(stage_scores: torch.Tensor, branch_logits: torch.Tensor) -> torch.Tensor:
    """stage_scores: (R, C) mean stage score; branch_logits: (R, C+1) -> (R, C), the 1:1 mean with
    the branch's softmax (background dropped)."""
    return (stage_scores + F.softmax(branch_logits, dim=1)[:, 1:]) / 2
