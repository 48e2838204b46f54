"""Pseudo labels for online instance refinement, in pure torch: the :class:`PseudoLabels` record,
the IoU assignment of RoIs to pseudo-GTs shared by the labellers, and OICR's labeller (PCL's is in
pcl.py, MIST's in mist.py).

Each labeller reads one image's proposal scores from the previous stage and returns the targets
of the next refinement stage as a :class:`PseudoLabels`. Everything stays on the input device;
there is no loop over proposals (only over the positive classes, PCL's at most ``max_clusters``
centres, PCL's ``kmeans_iters`` and the suppression-chain depth of MIST's NMS).

Conventions shared by the three labellers
-----------------------------------------
- IoU follows detectron2 (no +1; 0 where two boxes do not intersect, so a zero-area box has IoU 0
  with everything, itself included).
- A class is positive when ``image_labels[c] > 0``; positive classes are visited in ascending
  class order. Pseudo-GTs are listed class by class in that order, and within a class in the
  order the labeller picks them.
- Argmax ties over proposals go to the lowest proposal index; sorts are stable.
- Assignment: every RoI takes the pseudo-GT of maximum IoU; on equal maximum IoU the pseudo-GT
  with the higher score wins, then the lower pseudo-GT index; with ``tie_to_first`` the lower
  pseudo-GT index wins outright (the released codes' argmax: wetectron, pcl.pytorch).
  With m = that maximum IoU:
  m >= fg_iou -> foreground, label = class + 1; bg_iou <= m < fg_iou -> background, label 0;
  m < bg_iou -> ignored, label 0 and weight 0. The weight of a foreground or background RoI is the
  score of its pseudo-GT. Thresholds are inclusive at the lower end: m == fg_iou is foreground,
  m == bg_iou is background.
- ``matched_gt`` is that pseudo-GT for foreground and background RoIs (it sets the weight) and -1
  for ignored ones; ``clusters`` is the same index for foreground RoIs only, -1 elsewhere (the
  proposal clusters of PCL, and the RoIs that get box-regression targets).
- No positive class, or no pseudo-GT: every RoI is ignored (label 0, weight 0). An image without
  objects gives no evidence on how much its background should count.
- Outputs carry no gradient.

OICR (Tang et al. 2017)
    For each positive class c, the pseudo-GT is j* = argmax_r scores[r, c] over the rows not yet
    taken by an earlier class, with weight scores[j*, c]; row j* is then taken. With more positive
    classes than proposals, the first R positive classes (ascending index) each take one row and
    the remaining classes get no pseudo-GT.
"""

from dataclasses import dataclass
from typing import List

import torch

__all__ = [
    "PseudoLabels",
    "box_iou",
    "check_labeller_inputs",
    "positive_classes",
    "proposals_as_pseudo_gt",
    "oicr_pseudo_labels",
]


@dataclass
class PseudoLabels:
    """Per-RoI targets of one refinement stage for one image (R RoIs, G pseudo-GTs).

    labels: (R,) long, 0 = background, c + 1 = real class c.
    weights: (R,) float, loss weight per RoI, 0 = ignored.
    matched_gt: (R,) long, index into the pseudo-GTs for foreground and background RoIs, -1 for
        ignored ones.
    clusters: (R,) long, index of the pseudo-GT (proposal cluster) of a foreground RoI, -1 for
        background and ignored RoIs.
    max_iou: (R,) float, IoU of each RoI with its best pseudo-GT (0 when G = 0).
    gt_boxes: (G, 4) XYXY, the pseudo-GT boxes.
    gt_classes: (G,) long, 0-based real class of each pseudo-GT.
    gt_scores: (G,) float, score (weight) of each pseudo-GT.
    gt_proposals: (G,) long, index of the proposal serving as each pseudo-GT.
    """

    labels: torch.Tensor
    weights: torch.Tensor
    matched_gt: torch.Tensor
    clusters: torch.Tensor
    max_iou: torch.Tensor
    gt_boxes: torch.Tensor
    gt_classes: torch.Tensor
    gt_scores: torch.Tensor
    gt_proposals: torch.Tensor


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU, detectron2 convention (no +1, 0 where boxes do not intersect).

    boxes1: (..., N, 4), boxes2: (..., M, 4) XYXY with matching leading dims -> (..., N, M).
    """
    # Per-coordinate (N, M) planes run about twice as fast as broadcast (N, M, 2) corner pairs.
    x1a, y1a, x2a, y2a = (boxes1[..., :, None, i] for i in range(4))
    x1b, y1b, x2b, y2b = (boxes2[..., None, :, i] for i in range(4))
    width = (torch.minimum(x2a, x2b) - torch.maximum(x1a, x1b)).clamp(min=0)
    height = (torch.minimum(y2a, y2b) - torch.maximum(y1a, y1b)).clamp(min=0)
    inter = width * height
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    union = area1[..., :, None] + area2[..., None, :] - inter
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def check_labeller_inputs(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
) -> None:
    """ValueError unless boxes (R, 4) with R >= 1, floating scores (R, C), image_labels (C,) and
    0 <= bg_iou <= fg_iou <= 1: the inputs every labeller takes."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape (R, 4), got {tuple(boxes.shape)}")
    if boxes.shape[0] == 0:
        raise ValueError("boxes: need at least one proposal, got R = 0")
    if scores.dim() != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores: expected shape (R, C) with R = {boxes.shape[0]}, got {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scores: expected a floating tensor, got {scores.dtype}")
    if image_labels.dim() != 1 or image_labels.shape[0] != scores.shape[1]:
        raise ValueError(
            f"image_labels: expected shape (C,) with C = {scores.shape[1]}, "
            f"got {tuple(image_labels.shape)}"
        )
    if not 0.0 <= bg_iou <= fg_iou <= 1.0:
        raise ValueError(f"need 0 <= bg_iou <= fg_iou <= 1, got bg_iou={bg_iou}, fg_iou={fg_iou}")


def positive_classes(image_labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(P,) ascending indices of the classes with ``image_labels[c] > 0``, on ``device``."""
    return torch.nonzero(image_labels.to(device) > 0).squeeze(1)


def _assign(
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_scores: torch.Tensor,
    gt_proposals: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
    tie_to_first: bool = False,
) -> PseudoLabels:
    """Label every RoI from its max-IoU pseudo-GT (rules in the module docstring)."""
    num_rois = boxes.shape[0]
    long_minus_one = torch.full((num_rois,), -1, dtype=torch.long, device=boxes.device)
    if gt_boxes.shape[0] == 0:
        return PseudoLabels(
            labels=torch.zeros(num_rois, dtype=torch.long, device=boxes.device),
            weights=torch.zeros(num_rois, dtype=gt_scores.dtype, device=boxes.device),
            matched_gt=long_minus_one,
            clusters=long_minus_one.clone(),
            max_iou=torch.zeros(num_rois, dtype=boxes.dtype, device=boxes.device),
            gt_boxes=gt_boxes,
            gt_classes=gt_classes,
            gt_scores=gt_scores,
            gt_proposals=gt_proposals,
        )
    iou = box_iou(boxes, gt_boxes)
    max_iou = iou.max(dim=1).values
    best = iou == max_iou[:, None]
    if not tie_to_first:
        tied_scores = gt_scores[None, :].expand_as(iou).masked_fill(~best, float("-inf"))
        best = best & (tied_scores == tied_scores.max(dim=1, keepdim=True).values)
    matched = torch.argmax(best.to(torch.uint8), dim=1)

    foreground = max_iou >= fg_iou
    ignored = max_iou < bg_iou
    return PseudoLabels(
        labels=torch.where(foreground, gt_classes[matched] + 1, torch.zeros_like(matched)),
        weights=torch.where(
            ignored, torch.zeros_like(max_iou, dtype=gt_scores.dtype), gt_scores[matched]
        ),
        matched_gt=torch.where(ignored, long_minus_one, matched),
        clusters=torch.where(foreground, matched, long_minus_one),
        max_iou=max_iou,
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
        gt_scores=gt_scores,
        gt_proposals=gt_proposals,
    )


def proposals_as_pseudo_gt(
    boxes: torch.Tensor,
    proposal_idx: torch.Tensor,
    classes: torch.Tensor,
    gt_scores: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
    tie_to_first: bool = False,
) -> PseudoLabels:
    """Assign RoIs to pseudo-GTs that are proposals: proposal_idx, classes, gt_scores: (G,)."""
    return _assign(
        boxes, boxes[proposal_idx], classes, gt_scores, proposal_idx, fg_iou, bg_iou, tie_to_first
    )


@torch.no_grad()
def oicr_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    tie_to_first: bool = False,
) -> PseudoLabels:
    """OICR: one top-scoring proposal per positive class (see the module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    tie_to_first: the assignment's tie rule (module docstring).
    """
    check_labeller_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    num_rois = boxes.shape[0]
    positive = positive_classes(image_labels, scores.device)
    # Each class takes one new row, so exactly the first R positive classes find a free row.
    positive = positive[:num_rois]
    taken = torch.zeros(num_rois, dtype=torch.bool, device=scores.device)
    picks: List[torch.Tensor] = []
    for c in positive:
        pick = torch.argmax(scores[:, c].masked_fill(taken, float("-inf")))
        taken[pick] = True
        picks.append(pick)
    proposal_idx = torch.stack(picks) if picks else positive.new_zeros(0)
    return proposals_as_pseudo_gt(
        boxes, proposal_idx, positive, scores[proposal_idx, positive], fg_iou, bg_iou, tie_to_first
    )
