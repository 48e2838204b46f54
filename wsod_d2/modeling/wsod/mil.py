"""Multiple-instance (stage-0) heads: image labels -> per-RoI class scores."""
from abc import ABCMeta, abstractmethod
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.utils.registry import Registry

MIL_HEAD_REGISTRY = Registry("MIL_HEAD")
MIL_HEAD_REGISTRY.__doc__ = """
Multiple-instance heads, subclasses of :class:`MILHead` (its docstring is the contract), built
with (cfg, input_dim).
"""


class MILHead(nn.Module, metaclass=ABCMeta):
    """The contract between a MIL head and the ROI heads that call it.

    - ``forward(features, num_rois)`` with the box-head features (R, D) of all proposals and the
      proposals per image (sums to R) returns (roi_scores (R, C), image_scores (B, C)), in [0, 1]
      unless the head documents otherwise;
    - ``loss(image_scores, image_labels)`` with (B, C) scores and multi-hot labels returns the
      unweighted scalar loss, which the ROI heads weight by ``loss_weight``;
    - ``needs_context``: when True, forward is called as
      ``forward(features, num_rois, frame=..., context=...)`` with the box-head features (R, D)
      of each proposal's frame and context rings as well (see context_pooling.py);
    - ``nonnegative_roi_scores``: False when the RoI scores may be negative; refinement stages,
      whose pseudo-label weights are these scores, then refuse the head.
    - ``class_image_scores(image_scores)``: the (B, C) real-class part of what forward returned as
      image scores; a head may return more columns for its loss (WSDDN's background column).
    """

    needs_context: bool = False
    nonnegative_roi_scores: bool = True
    loss_weight: float

    def class_image_scores(self, image_scores: torch.Tensor) -> torch.Tensor:
        return image_scores

    @abstractmethod
    def forward(self, x: torch.Tensor, num_rois: List[int], **context: torch.Tensor):
        """(roi_scores (R, C), image_scores (B, C')) of the RoIs of each image (see above)."""

    @abstractmethod
    def loss(self, image_scores: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
        """The unweighted scalar loss of forward's image scores against (B, C) labels."""


def build_mil_head(cfg, input_dim: int):
    return MIL_HEAD_REGISTRY.get(cfg.MODEL.MIL.NAME)(cfg, input_dim)


@MIL_HEAD_REGISTRY.register()
class WSDDN(MILHead):
    """WSDDN (Bilen & Vedaldi, CVPR 2016): two-stream MIL head.

    s[r, c] = softmax_c(x_cls)[r, c] * softmax_r(x_det / T)[r, c] (RoIs of one image);
    phi[c] = sum_r s[r, c]; loss = BCE(clamp(phi, eps, 1 - eps), y).

    With ``background_column`` (wetectron's 21-way head on VOC) both streams have C+1 columns,
    column 0 = background with image label 0; the BCE runs over the C+1 entries; the RoI scores
    are s[:, 1:] and forward's image scores keep column 0 ((B, C+1); see class_image_scores).
    """

    @configurable
    def __init__(
        self,
        input_dim: int,
        *,
        num_classes: int,
        det_temperature: float,
        eps: float,
        loss_reduction: str,
        loss_weight: float,
        init_std: float = 0.01,
        background_column: bool = False,
    ):
        super().__init__()
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(
                f"MODEL.MIL.LOSS_REDUCTION must be 'mean' or 'sum', got {loss_reduction!r}"
            )
        self.background_column = background_column
        num_columns = num_classes + 1 if background_column else num_classes
        self.cls_score = nn.Linear(input_dim, num_columns)
        self.det_score = nn.Linear(input_dim, num_columns)
        for layer in (self.cls_score, self.det_score):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)
        self.det_temperature = det_temperature
        self.eps = eps
        self.loss_reduction = loss_reduction
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, input_dim):
        return {
            "input_dim": input_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "det_temperature": cfg.MODEL.MIL.DET_TEMPERATURE,
            "eps": cfg.MODEL.MIL.EPS,
            "loss_reduction": cfg.MODEL.MIL.LOSS_REDUCTION,
            "loss_weight": cfg.MODEL.MIL.LOSS_WEIGHT,
            "init_std": cfg.MODEL.MIL.INIT_STD,
            "background_column": cfg.MODEL.MIL.BACKGROUND_COLUMN,
        }

    def forward(self, x: torch.Tensor, num_rois: List[int]):
        """x: (R, D) RoI features of all images; num_rois: RoIs per image (sums to R).

        Returns roi_scores (R, C) and image_scores (B, C), or (B, C+1) with the background column.
        """
        cls_prob = F.softmax(self.cls_score(x), dim=1)
        det_logits = self.det_score(x) / self.det_temperature
        det_prob = torch.cat([F.softmax(d, dim=0) for d in det_logits.split(num_rois)])
        scores = cls_prob * det_prob
        image_scores = torch.stack([s.sum(dim=0) for s in scores.split(num_rois)])
        return (scores[:, 1:] if self.background_column else scores), image_scores

    def class_image_scores(self, image_scores: torch.Tensor) -> torch.Tensor:
        return image_scores[:, 1:] if self.background_column else image_scores

    def loss(self, image_scores: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
        """image_scores: forward's (B, C) or (B, C+1); image_labels: (B, C) multi-hot -> scalar,
        unweighted."""
        if self.background_column:
            image_labels = F.pad(image_labels, (1, 0))
        phi = image_scores.clamp(self.eps, 1.0 - self.eps)
        loss = F.binary_cross_entropy(phi, image_labels, reduction="none").sum(dim=0)
        loss = loss.mean() if self.loss_reduction == "mean" else loss.sum()
        return loss / image_scores.shape[0]
