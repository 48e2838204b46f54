"""Fast R-CNN-style supervision of the refinement stages, as CASD's released code trains them
(DeLightCMU/CASD, branch may30, lib/nets/network.py: ``get_refine_supervision_ac4_IA`` builds the
labels, the sample and the box targets; ``Network._add_losses`` the losses).

Any labeller's pseudo-GTs are kept (CASD: PCL's graph centres, pcl.pytorch 0.4.0's rule); what
changes is how the RoIs learn from them:

- labels from each RoI's max IoU m with the pseudo-GTs (its pseudo-GT as the labeller assigned
  it): foreground, the pseudo-GT's class, when m > ``fg_iou`` (strictly: 0.6); background when
  ``bg_iou[0] <= m < bg_iou[1]`` ([0.1, 0.4)); ignored otherwise (the band [0.4, 0.6] too);
- each view draws its own sample of at most ``num_fg`` foreground and ``num_bg`` background RoIs
  (32 + 96), uniformly without replacement; only the sample receives the losses;
- classification: plain cross-entropy averaged over the sample (no pseudo-GT score weights);
- regression: smooth-L1 averaged over the sampled foreground RoIs and their 4 coordinates,
  towards the box of their pseudo-GT or, with ``neighbour_mean_boxes``, towards the mean of the
  proposals whose IoU with that pseudo-GT exceeds a threshold (0.6), the release's rule.

IoUs are detectron2's (continuous coordinates, no +1), computed in the frame where the pseudo
labels are built; the release computes them with +1 widths on its first view's boxes.
"""
from dataclasses import replace
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.modeling.box_regression import Box2BoxTransform

from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels, box_iou
from wsod_d2.modeling.wsod.refinement_losses import regression_targets

__all__ = [
    "sampler_labels",
    "sample_rois",
    "neighbour_mean_boxes",
    "sampler_box_targets",
    "sampled_stage_losses",
]


def sampler_labels(pseudo: PseudoLabels, fg_iou: float, bg_iou: Sequence[float]) -> torch.Tensor:
    """(R,) long: class + 1 for foreground RoIs (IoU > fg_iou), 0 for background ones
    (bg_iou[0] <= IoU < bg_iou[1]), -1 for ignored ones. A RoI without a pseudo-GT (``matched_gt``
    -1: below the labeller's own background threshold) can only be background or ignored."""
    lo, hi = bg_iou
    m = pseudo.max_iou
    labels = torch.full_like(pseudo.labels, -1)
    labels[(m >= lo) & (m < hi)] = 0
    fg = (m > fg_iou) & (pseudo.matched_gt >= 0)
    labels[fg] = pseudo.gt_classes[pseudo.matched_gt[fg]] + 1
    return labels


def sample_rois(
    labels: torch.Tensor,
    num_fg: int,
    num_bg: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Indices of at most ``num_fg`` foreground (label > 0) and ``num_bg`` background (label 0)
    RoIs, drawn uniformly without replacement, foreground first. labels: (R,) from
    :func:`sampler_labels`."""
    # Drawn on the generator's device (CPU without one): one seed, one sample on any device.
    device = "cpu" if generator is None else generator.device
    picks = []
    for group, limit in ((labels > 0, num_fg), (labels == 0, num_bg)):
        index = group.nonzero()[:, 0]
        order = torch.randperm(len(index), generator=generator, device=device)
        picks.append(index[order[:limit].to(index.device)])
    return torch.cat(picks)


def neighbour_mean_boxes(
    proposal_boxes: torch.Tensor, pseudo: PseudoLabels, iou_threshold: float
) -> torch.Tensor:
    """(G, 4): for each pseudo-GT, the mean of the proposals whose IoU with its box is above
    ``iou_threshold`` (strictly); a pseudo-GT that is itself a proposal always has one (itself).
    proposal_boxes: (R, 4) XYXY, the boxes the pseudo labels were built on."""
    if pseudo.gt_boxes.shape[0] == 0:
        return pseudo.gt_boxes
    near = (box_iou(pseudo.gt_boxes, proposal_boxes) > iou_threshold).to(proposal_boxes.dtype)
    counts = near.sum(dim=1, keepdim=True)
    # A pseudo-GT with no neighbour (a box that is not a proposal) keeps its own box.
    means = (near @ proposal_boxes) / counts.clamp(min=1)
    return torch.where(counts > 0, means, pseudo.gt_boxes)


def sampler_box_targets(
    proposal_boxes: torch.Tensor,
    pseudo: PseudoLabels,
    labels: torch.Tensor,
    target_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
) -> torch.Tensor:
    """(R, 4) deltas from each foreground RoI (labels > 0) to the target box of its pseudo-GT
    (target_boxes: (G, 4), the pseudo-GT boxes or :func:`neighbour_mean_boxes`); zeros
    elsewhere: :func:`regression_targets` with the sampler's foreground as the clusters."""
    clusters = torch.where(labels > 0, pseudo.matched_gt, torch.full_like(labels, -1))
    sampled = replace(pseudo, gt_boxes=target_boxes, clusters=clusters)
    return regression_targets(proposal_boxes, sampled, box2box_transform)


def sampled_stage_losses(
    logits: torch.Tensor,
    deltas: Optional[torch.Tensor],
    labels: torch.Tensor,
    sample: torch.Tensor,
    target_deltas: Optional[torch.Tensor],
    beta: float,
):
    """(classification, regression or None) losses of one image in one view.

    logits: (R, C+1); deltas: (R, 4(C+1)) class-specific or None; labels: (R,) from
    :func:`sampler_labels`; sample: indices from :func:`sample_rois`; target_deltas: (R, 4) per
    RoI towards its pseudo-GT's target box (read at the sampled foreground RoIs only).
    An empty sample (no foreground or background RoI at all) gives zero losses.
    """
    y = labels[sample]
    if len(sample) > 0:
        cls_loss = F.cross_entropy(logits[sample], y)
    else:
        cls_loss = logits.sum() * 0.0
    if deltas is None:
        return cls_loss, None
    fg = sample[y > 0]
    if len(fg) == 0:
        return cls_loss, deltas.sum() * 0.0
    columns = labels[fg, None] * 4 + torch.arange(4, device=labels.device)
    picked = deltas[fg].gather(1, columns)
    return cls_loss, F.smooth_l1_loss(picked, target_deltas[fg], beta=beta)
