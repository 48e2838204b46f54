"""PCL's pseudo labels (its proposal-cluster loss is in refinement_losses.py); the conventions
shared by the labellers are in pseudo_labels.py.

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
    With ``released_centres`` (pcl.pytorch 0.4.0's ``_get_graph_centers``): the same greedy loop
    runs until at most ``max_clusters`` nodes remain (at least once; the release hard-codes 5
    there and MAX_PC_NUM = 5 below), then the ``max_clusters`` centres of highest score are kept,
    in decreasing score (ties -> the earlier pick), and only those are taken for later classes.
    Remaining difference from the release: sklearn k-means (k-means++, seeded) there; and its
    degree ties follow numpy's argsort, here higher score then lower index.
"""

from typing import Tuple

import torch
import torch.nn.functional as F

from wsod_d2.modeling.wsod.pseudo_labels import (
    PseudoLabels,
    box_iou,
    check_labeller_inputs,
    positive_classes,
    proposals_as_pseudo_gt,
)

__all__ = ["pcl_pseudo_labels"]


def _first_true(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True of a 1-D mask (0 when there is none), without a host sync."""
    return torch.argmax(mask.to(torch.uint8))


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


def _candidate_graph(boxes: torch.Tensor, graph_iou: float) -> torch.Tensor:
    """(M, M) bool: candidates linked when their IoU exceeds ``graph_iou``."""
    eye = torch.eye(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    # The explicit self loop keeps a zero-area box (IoU 0 with itself) in its own neighbourhood.
    return (box_iou(boxes, boxes) > graph_iou) | eye


def _pick_centre(adjacency: torch.Tensor, remaining: torch.Tensor, scores: torch.Tensor):
    """One greedy step: the remaining node of highest degree among the remaining ones (ties to
    the higher score, then the first), the best score in its neighbourhood, and the neighbourhood
    (M,) bool, which leaves the remaining set."""
    degree = (adjacency & remaining[None, :]).sum(dim=1).masked_fill(~remaining, -1)
    top_degree = remaining & (degree == degree.max())
    top_scores = scores.masked_fill(~top_degree, float("-inf"))
    pick = _first_true(top_degree & (top_scores == top_scores.max()))
    neighbours = adjacency[pick] & remaining
    return pick, scores.masked_fill(~neighbours, float("-inf")).max(), neighbours


def _graph_centres(
    boxes: torch.Tensor, scores: torch.Tensor, graph_iou: float, max_clusters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy highest-degree centres of the IoU graph of the candidates, the first
    ``max_clusters`` picks.

    boxes: (M, 4), scores: (M,) -> (N,) candidate indices of the centres and (N,) their scores,
    N <= max_clusters.
    """
    adjacency = _candidate_graph(boxes, graph_iou)
    remaining = torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    picks, centre_scores, found = [], [], []
    for _ in range(max_clusters):
        pick, centre_score, neighbours = _pick_centre(adjacency, remaining, scores)
        picks.append(pick)
        centre_scores.append(centre_score)
        found.append(remaining.any())
        remaining = remaining & ~neighbours
    found_mask = torch.stack(found)
    return torch.stack(picks)[found_mask], torch.stack(centre_scores)[found_mask]


def _released_graph_centres(
    boxes: torch.Tensor, scores: torch.Tensor, graph_iou: float, max_clusters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """pcl.pytorch 0.4.0's centres: greedy highest-degree picks until at most ``max_clusters``
    nodes remain, then the ``max_clusters`` picks of highest centre score.

    boxes: (M, 4), scores: (M,) -> (N,) candidate indices and (N,) scores, N <= max_clusters.
    """
    adjacency = _candidate_graph(boxes, graph_iou)
    remaining = torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    picks, centre_scores = [], []
    while True:
        pick, centre_score, neighbours = _pick_centre(adjacency, remaining, scores)
        picks.append(pick)
        centre_scores.append(centre_score)
        remaining = remaining & ~neighbours
        if int(remaining.sum()) <= max_clusters:
            break
    centre_scores_t = torch.stack(centre_scores)
    order = torch.sort(centre_scores_t, descending=True, stable=True).indices[:max_clusters]
    return torch.stack(picks)[order], centre_scores_t[order]


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
    released_centres: bool = False,
    tie_to_first: bool = False,
) -> PseudoLabels:
    """PCL: k-means candidates, IoU-graph cluster centres (see the module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    ``clusters`` of the result gives each foreground RoI's proposal cluster. released_centres:
    pcl.pytorch 0.4.0's centre rule; tie_to_first: the assignment's tie rule (pseudo_labels.py).
    """
    check_labeller_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    if max_clusters < 1 or kmeans_k < 1 or kmeans_iters < 0:
        raise ValueError(
            f"need max_clusters >= 1, kmeans_k >= 1, kmeans_iters >= 0, got {max_clusters}, "
            f"{kmeans_k}, {kmeans_iters}"
        )
    num_rois = boxes.shape[0]
    taken = torch.zeros(num_rois, dtype=torch.bool, device=scores.device)
    idx_parts, class_parts, score_parts = [], [], []
    for c in positive_classes(image_labels, scores.device):
        if bool(taken.all()):
            break
        class_scores = scores[:, c]
        candidates = _kmeans_top_cluster(class_scores, ~taken, kmeans_k, kmeans_iters)
        candidate_idx = torch.nonzero(candidates).squeeze(1)
        find_centres = _released_graph_centres if released_centres else _graph_centres
        centres, centre_scores = find_centres(
            boxes[candidate_idx], class_scores[candidate_idx], graph_iou, max_clusters
        )
        proposal_idx = candidate_idx[centres]
        taken[proposal_idx] = True
        idx_parts.append(proposal_idx)
        class_parts.append(c.expand(proposal_idx.shape[0]))
        score_parts.append(centre_scores)
    if not idx_parts:
        empty = torch.zeros(0, dtype=torch.long, device=scores.device)
        return proposals_as_pseudo_gt(boxes, empty, empty, scores.new_zeros(0), fg_iou, bg_iou)
    return proposals_as_pseudo_gt(
        boxes,
        torch.cat(idx_parts),
        torch.cat(class_parts),
        torch.cat(score_parts),
        fg_iou,
        bg_iou,
        tie_to_first,
    )
