"""Pseudo labels for online instance refinement: OICR, PCL and MIST, in pure torch.

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
  with the higher score wins, then the lower pseudo-GT index. With m = that maximum IoU:
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

PCL (Tang et al. 2018)
    For each positive class c, over the rows not taken as a centre by an earlier class:
    1-D k-means on scores[:, c] with ``kmeans_k`` centres initialised evenly from the minimum to
    the maximum score and ``kmeans_iters`` Lloyd steps (each point goes to its nearest centre,
    ties to the higher centre; an empty cluster keeps its centre). The candidates are the members
    of the non-empty cluster with the highest centre. Graph: candidates are nodes, edges where
    IoU > graph_iou, plus a self loop on every node. Up to ``max_clusters`` times: the remaining
    node of highest degree (degree counted among remaining nodes; ties -> higher score, then
    lower index) becomes a centre; its pseudo-GT score is the maximum score among its remaining
    neighbours (itself included); it and its neighbours are removed. Stops early when no node is
    left. Centres are listed in the order they are picked and are taken for later classes.
    Differences from the released code (pcl.pytorch): sklearn k-means (k-means++, random seed)
    there; the greedy loop there runs until at most 5 nodes remain and then keeps the 5 centres
    of highest score, whereas here the first ``max_clusters`` centres by degree are kept.

MIST (Ren et al. 2020)
    For each positive class c: the top k = max(1, int(top_ratio * R)) proposals by scores[:, c]
    (int floors; the guard gives k = 1 when top_ratio * R < 1), ranked by score, ties -> lower
    index. Greedy NMS down the ranking, as in the paper's algorithm: a box is kept iff its IoU with
    every higher-ranked *kept* box is < nms_iou (the top box is always kept). With
    ``compare_all_higher_ranked=True`` the rule of the released code (wetectron) is used instead:
    a box is kept iff its IoU with every higher-ranked box of the top set, kept or not, is
    < nms_iou. Each kept box is a pseudo-GT with weight = its score. Classes do not take rows from
    each other: one proposal may be a pseudo-GT of two classes, and the assignment then gives its
    RoIs the class of higher score.
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "PseudoLabels",
    "box_iou",
    "oicr_pseudo_labels",
    "pcl_pseudo_labels",
    "mist_pseudo_labels",
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


def _check_inputs(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
) -> None:
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


def _positive_classes(image_labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.nonzero(image_labels.to(device) > 0).squeeze(1)


def _first_true(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True of a 1-D mask (0 when there is none), without a host sync."""
    return torch.argmax(mask.to(torch.uint8))


def _assign(
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_scores: torch.Tensor,
    gt_proposals: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
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
    tied = iou == max_iou[:, None]
    tied_scores = gt_scores[None, :].expand_as(iou).masked_fill(~tied, float("-inf"))
    best = tied & (tied_scores == tied_scores.max(dim=1, keepdim=True).values)
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


def _from_proposals(
    boxes: torch.Tensor,
    proposal_idx: torch.Tensor,
    classes: torch.Tensor,
    gt_scores: torch.Tensor,
    fg_iou: float,
    bg_iou: float,
) -> PseudoLabels:
    """Assign RoIs to pseudo-GTs that are proposals: proposal_idx, classes, gt_scores: (G,)."""
    return _assign(boxes, boxes[proposal_idx], classes, gt_scores, proposal_idx, fg_iou, bg_iou)


@torch.no_grad()
def oicr_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
) -> PseudoLabels:
    """OICR: one top-scoring proposal per positive class (see the module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    """
    _check_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    num_rois = boxes.shape[0]
    positive = _positive_classes(image_labels, scores.device)
    # Each class takes one new row, so exactly the first R positive classes find a free row.
    positive = positive[:num_rois]
    taken = torch.zeros(num_rois, dtype=torch.bool, device=scores.device)
    picks: List[torch.Tensor] = []
    for c in positive:
        pick = torch.argmax(scores[:, c].masked_fill(taken, float("-inf")))
        taken[pick] = True
        picks.append(pick)
    proposal_idx = torch.stack(picks) if picks else positive.new_zeros(0)
    return _from_proposals(
        boxes, proposal_idx, positive, scores[proposal_idx, positive], fg_iou, bg_iou
    )


def _nearest_centre(values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """values: (R,), centres: (K,) -> (R,) index of the nearest centre, ties to the higher one."""
    dist = (values[:, None] - centres[None, :]).abs()
    return centres.shape[0] - 1 - torch.argmin(dist.flip(1), dim=1)


def _kmeans_top_cluster(
    values: torch.Tensor, valid: torch.Tensor, num_clusters: int, iters: int
) -> torch.Tensor:
    """1-D k-means over values[valid]; returns the (R,) mask of the top non-empty cluster.

    values: (R,) float; valid: (R,) bool, at least one True.
    """
    low = values.masked_fill(~valid, float("inf")).min()
    high = values.masked_fill(~valid, float("-inf")).max()
    steps = torch.linspace(0.0, 1.0, num_clusters, dtype=values.dtype, device=values.device)
    centres = low + (high - low) * steps
    valid_f = valid.to(values.dtype)[:, None]
    for _ in range(iters):
        members = F.one_hot(_nearest_centre(values, centres), num_clusters).to(values.dtype)
        members = members * valid_f
        counts = members.sum(dim=0)
        sums = (members * values[:, None]).sum(dim=0)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    assignment = _nearest_centre(values, centres)
    members = F.one_hot(assignment, num_clusters).to(values.dtype) * valid_f
    non_empty = members.sum(dim=0) > 0
    top = torch.argmax(centres.masked_fill(~non_empty, float("-inf")))
    return valid & (assignment == top)


def _graph_centres(
    boxes: torch.Tensor, scores: torch.Tensor, graph_iou: float, max_clusters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy highest-degree centres of the IoU graph of the candidates.

    boxes: (M, 4), scores: (M,) -> (N,) candidate indices of the centres and (N,) their scores,
    N <= max_clusters.
    """
    num = boxes.shape[0]
    eye = torch.eye(num, dtype=torch.bool, device=boxes.device)
    # The explicit self loop keeps a zero-area box (IoU 0 with itself) in its own neighbourhood.
    adjacency = (box_iou(boxes, boxes) > graph_iou) | eye
    remaining = torch.ones(num, dtype=torch.bool, device=boxes.device)
    picks, centre_scores, found = [], [], []
    for _ in range(max_clusters):
        degree = (adjacency & remaining[None, :]).sum(dim=1).masked_fill(~remaining, -1)
        top_degree = remaining & (degree == degree.max())
        top_scores = scores.masked_fill(~top_degree, float("-inf"))
        pick = _first_true(top_degree & (top_scores == top_scores.max()))
        neighbours = adjacency[pick] & remaining
        picks.append(pick)
        centre_scores.append(scores.masked_fill(~neighbours, float("-inf")).max())
        found.append(remaining.any())
        remaining = remaining & ~neighbours
    found_mask = torch.stack(found)
    return torch.stack(picks)[found_mask], torch.stack(centre_scores)[found_mask]


@torch.no_grad()
def pcl_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    graph_iou: float = 0.4,
    max_clusters: int = 5,
    kmeans_k: int = 3,
    kmeans_iters: int = 10,
) -> PseudoLabels:
    """PCL: k-means candidates, IoU-graph cluster centres (see the module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    ``clusters`` of the result gives each foreground RoI's proposal cluster.
    """
    _check_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    if max_clusters < 1 or kmeans_k < 1 or kmeans_iters < 0:
        raise ValueError(
            f"need max_clusters >= 1, kmeans_k >= 1, kmeans_iters >= 0, got {max_clusters}, "
            f"{kmeans_k}, {kmeans_iters}"
        )
    num_rois = boxes.shape[0]
    taken = torch.zeros(num_rois, dtype=torch.bool, device=scores.device)
    idx_parts, class_parts, score_parts = [], [], []
    for c in _positive_classes(image_labels, scores.device):
        if bool(taken.all()):
            break
        class_scores = scores[:, c]
        candidates = _kmeans_top_cluster(class_scores, ~taken, kmeans_k, kmeans_iters)
        candidate_idx = torch.nonzero(candidates).squeeze(1)
        centres, centre_scores = _graph_centres(
            boxes[candidate_idx], class_scores[candidate_idx], graph_iou, max_clusters
        )
        proposal_idx = candidate_idx[centres]
        taken[proposal_idx] = True
        idx_parts.append(proposal_idx)
        class_parts.append(c.expand(proposal_idx.shape[0]))
        score_parts.append(centre_scores)
    if not idx_parts:
        empty = torch.zeros(0, dtype=torch.long, device=scores.device)
        return _from_proposals(boxes, empty, empty, scores.new_zeros(0), fg_iou, bg_iou)
    return _from_proposals(
        boxes,
        torch.cat(idx_parts),
        torch.cat(class_parts),
        torch.cat(score_parts),
        fg_iou,
        bg_iou,
    )


def _greedy_nms_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """Exact greedy NMS from a suppression matrix, batched.

    suppresses: (P, k, k) bool, [p, j, i] = box j outranks box i and would suppress it.
    Returns keep: (P, k) bool. Fixed-point iteration of keep_i = no kept j suppresses i; entry i
    is final once every box of a suppression chain above it is, so the loop runs the longest
    chain's length, not k.
    """
    keep = torch.ones(suppresses.shape[:2], dtype=torch.bool, device=suppresses.device)
    while True:
        new_keep = ~(suppresses & keep[:, :, None]).any(dim=1)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


@torch.no_grad()
def mist_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    top_ratio: float = 0.15,
    nms_iou: float = 0.2,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    compare_all_higher_ranked: bool = False,
) -> PseudoLabels:
    """MIST: NMS over the top-scoring proposals of each positive class (see module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    compare_all_higher_ranked: False = the paper's greedy NMS against kept boxes; True = the
        released code's test against every higher-ranked box of the top set.
    """
    _check_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    if not 0.0 < top_ratio <= 1.0:
        raise ValueError(f"top_ratio: expected 0 < top_ratio <= 1, got {top_ratio}")
    num_rois = boxes.shape[0]
    positive = _positive_classes(image_labels, scores.device)
    num_top = max(1, int(top_ratio * num_rois))
    top_scores, top_idx = scores[:, positive].sort(dim=0, descending=True, stable=True)
    top_scores, top_idx = top_scores[:num_top].t(), top_idx[:num_top].t()
    top_boxes = boxes[top_idx]
    outranks = torch.ones(num_top, num_top, dtype=torch.bool, device=boxes.device).triu(1)
    suppresses = (box_iou(top_boxes, top_boxes) >= nms_iou) & outranks
    if compare_all_higher_ranked:
        keep = ~suppresses.any(dim=1)
    else:
        keep = _greedy_nms_keep(suppresses)
    classes = positive[:, None].expand_as(top_idx)
    return _from_proposals(boxes, top_idx[keep], classes[keep], top_scores[keep], fg_iou, bg_iou)
