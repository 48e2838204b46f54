"""ContextLocNet contrastive-S MIL head (Kantorov et al., ECCV 2016)."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

from wsod_d2.modeling.wsod.mil import MIL_HEAD_REGISTRY, MILHead


@MIL_HEAD_REGISTRY.register()
class ContextLocNet(MILHead):
    """Contrastive-S: classification fc8c on the box, localisation fc8r shared by the frame and the
    context rings of each proposal.

    L[r, c] = fc8r(frame)[r, c] - fc8r(context)[r, c];
    s[r, c] = fc8c(box)[r, c] * softmax_r(L)[r, c] over the RoIs of one image;
    score[c] = sum_r s[r, c]; loss = mean over images and classes of max(0, margin - y'_c score[c]),
    y' in {-1, +1}.

    The image scores are not squashed (fc8c is raw, as in the paper). The RoI scores returned are,
    with ``roi_scores="raw"``, the same raw s[r, c], which may be negative or exceed 1 (its
    configs set a score threshold that keeps every detection); with ``"softmax"``,
    softmax_c(fc8c)[r, c] * softmax_r(L)[r, c] in [0, 1], what CASD's released code feeds its
    refinement stages as pseudo-label scores (the loss still uses the raw image scores).
    """

    needs_context = True

    @configurable
    def __init__(
        self,
        input_dim: int,
        *,
        num_classes: int,
        margin: float,
        loss_weight: float,
        roi_scores: str = "raw",
    ):
        super().__init__()
        if roi_scores not in ("raw", "softmax"):
            raise ValueError(
                f"MODEL.MIL.CONTEXT_ROI_SCORES must be 'raw' or 'softmax', got {roi_scores!r}"
            )
        self.roi_scores = roi_scores
        # Refinement stages weight their pseudo labels by these scores: they must not be negative.
        self.nonnegative_roi_scores = roi_scores == "softmax"
        self.cls_score = nn.Linear(input_dim, num_classes)  # fc8c
        self.loc_score = nn.Linear(input_dim, num_classes)  # fc8r, shared by frame and context
        for layer in (self.cls_score, self.loc_score):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.margin = margin
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, input_dim):
        return {
            "input_dim": input_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "margin": cfg.MODEL.MIL.HINGE_MARGIN,
            "loss_weight": cfg.MODEL.MIL.LOSS_WEIGHT,
            "roi_scores": cfg.MODEL.MIL.CONTEXT_ROI_SCORES,
        }

    def forward(
        self,
        x: torch.Tensor,
        num_rois: List[int],
        *,
        frame: torch.Tensor,
        context: torch.Tensor,
    ):
        """x, frame, context: (R, D) box-head features of the boxes, frames and contexts of all
        images; num_rois: RoIs per image. Returns roi_scores (R, C) and image_scores (B, C)."""
        # The shared bias cancels in the difference.
        loc_logits = self.loc_score(frame) - self.loc_score(context)
        loc_prob = torch.cat([F.softmax(v, dim=0) for v in loc_logits.split(num_rois)])
        cls_logits = self.cls_score(x)
        raw = cls_logits * loc_prob
        image_scores = torch.stack([s.sum(dim=0) for s in raw.split(num_rois)])
        if self.roi_scores == "softmax":
            return F.softmax(cls_logits, dim=1) * loc_prob, image_scores
        return raw, image_scores

    def loss(self, image_scores: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
        """image_scores, image_labels: (B, C); labels multi-hot -> scalar, unweighted."""
        signs = 2.0 * image_labels - 1.0
        return F.relu(self.margin - signs * image_scores).mean()
