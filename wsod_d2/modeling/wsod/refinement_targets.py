"""What one refinement stage learns from, per image and view: its pseudo labels, the RoIs'
training labels, the RoIs that receive the loss and the box-regression targets; and the stage's
losses from them.

Two regimes (MODEL.REFINEMENT.SAMPLE.ENABLED):

- the labeller's own (OICR, PCL, MIST): every RoI, its labels and score weights, the labeller's
  loss and the weighted smooth-L1 of refinement_losses.py;
- CASD's release (roi_sampling.py): labels from fixed IoU bands, a fresh sample of RoIs per view,
  plain cross-entropy and smooth-L1 averaged over the sample.

Box targets go to the pseudo-GT box ("pseudo_gt") or to the mean of the proposals around it
("neighbour_mean", CASD's release); they are deltas, which scaling leaves unchanged and a
horizontal flip negates in x.
"""
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.modeling.box_regression import Box2BoxTransform

from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels
from wsod_d2.modeling.wsod.refinement_losses import regression_targets, weighted_smooth_l1_box_loss
from wsod_d2.modeling.wsod.roi_sampling import (
    neighbour_mean_boxes,
    sample_rois,
    sampled_stage_losses,
    sampler_box_targets,
    sampler_labels,
)

__all__ = ["ImageTargets", "RoISupervision", "REG_TARGET_RULES"]

REG_TARGET_RULES = ("pseudo_gt", "neighbour_mean")


@dataclass
class ImageTargets:
    """One image's targets for one stage in one view (R RoIs).

    pseudo: the labeller's output; labels: (R,) long training label of each RoI (0 background,
    c + 1 class c; -1 ignored under the sampler); sample: indices of the RoIs that receive the
    loss (sampler), None for all; box_targets: (R, 4) deltas in the unflipped frame, or None
    without regression.
    """

    pseudo: PseudoLabels
    labels: torch.Tensor
    sample: Optional[torch.Tensor]
    box_targets: Optional[torch.Tensor]


class RoISupervision:
    """Builds :class:`ImageTargets` from pseudo labels and turns a stage's outputs into losses."""

    def __init__(
        self,
        *,
        pseudo_labeler,
        box2box_transform: Box2BoxTransform,
        smooth_l1_beta: float,
        sample: bool,
        num_fg: int,
        num_bg: int,
        fg_iou: float,
        bg_iou: Sequence[float],
        reg_target: str,
        reg_target_iou: float,
    ):
        if reg_target not in REG_TARGET_RULES:
            raise ValueError(
                f"MODEL.REFINEMENT.REG_TARGET must be one of {REG_TARGET_RULES}, got {reg_target!r}"
            )
        if len(bg_iou) != 2 or not 0.0 <= bg_iou[0] <= bg_iou[1] <= fg_iou:
            raise ValueError(
                "MODEL.REFINEMENT.SAMPLE.BG_IOU must be (low, high) with 0 <= low <= high <= "
                f"SAMPLE.FG_IOU={fg_iou}, got {list(bg_iou)}"
            )
        self.pseudo_labeler = pseudo_labeler
        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.sample = sample
        self.num_fg = num_fg
        self.num_bg = num_bg
        self.fg_iou = fg_iou
        self.bg_iou = tuple(bg_iou)
        self.reg_target = reg_target
        self.reg_target_iou = reg_target_iou

    @classmethod
    def from_config(cls, cfg, pseudo_labeler, box2box_transform):
        r = cfg.MODEL.REFINEMENT
        return cls(
            pseudo_labeler=pseudo_labeler,
            box2box_transform=box2box_transform,
            smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            sample=r.SAMPLE.ENABLED,
            num_fg=r.SAMPLE.NUM_FG,
            num_bg=r.SAMPLE.NUM_BG,
            fg_iou=r.SAMPLE.FG_IOU,
            bg_iou=r.SAMPLE.BG_IOU,
            reg_target=r.REG_TARGET,
            reg_target_iou=r.REG_TARGET_IOU,
        )

    def image_targets(
        self, boxes: torch.Tensor, scores: torch.Tensor, image_labels: torch.Tensor, box_reg: bool
    ) -> ImageTargets:
        """Targets of one image from the previous stage's scores (R, C), before any sampling."""
        pseudo = self.pseudo_labeler(boxes, scores, image_labels)
        labels = pseudo.labels
        if self.sample:
            labels = sampler_labels(pseudo, self.fg_iou, self.bg_iou)
        box_targets = None
        if box_reg:
            target_boxes = pseudo.gt_boxes
            if self.reg_target == "neighbour_mean":
                target_boxes = neighbour_mean_boxes(boxes, pseudo, self.reg_target_iou)
            if self.sample:
                box_targets = sampler_box_targets(
                    boxes, pseudo, labels, target_boxes, self.box2box_transform
                )
            else:
                box_targets = regression_targets(
                    boxes, replace(pseudo, gt_boxes=target_boxes), self.box2box_transform
                )
        return ImageTargets(pseudo, labels, None, box_targets)

    def for_view(self, targets: List[ImageTargets]) -> List[ImageTargets]:
        """The targets of one view: under the sampler, with that view's own sample drawn."""
        if not self.sample:
            return targets
        return [replace(t, sample=sample_rois(t.labels, self.num_fg, self.num_bg)) for t in targets]

    def losses(
        self,
        logits: torch.Tensor,
        deltas: Optional[torch.Tensor],
        targets: ImageTargets,
        x_sign: float,
    ):
        """(classification, regression or None) losses of one image in one view, whose x axis
        is mirrored when ``x_sign`` is -1. logits: (R, C+1); deltas: (R, 4(C+1)) or None."""
        box_targets = targets.box_targets
        if box_targets is not None and x_sign < 0:  # a mirrored view's x deltas change sign
            box_targets = torch.cat([-box_targets[:, :1], box_targets[:, 1:]], dim=1)
        if targets.sample is not None:
            return sampled_stage_losses(
                logits, deltas, targets.labels, targets.sample, box_targets, self.smooth_l1_beta
            )
        pseudo = targets.pseudo
        cls_loss = self.pseudo_labeler.loss(F.softmax(logits, dim=1), pseudo)
        if deltas is None:
            return cls_loss, None
        box_loss = weighted_smooth_l1_box_loss(
            deltas, pseudo.labels, box_targets, pseudo.weights, beta=self.smooth_l1_beta
        )
        return cls_loss, box_loss
