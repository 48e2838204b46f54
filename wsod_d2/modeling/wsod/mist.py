"""MIST's pseudo labels; the conventions shared by the labellers are in pseudo_labels.py.

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

import torch

from wsod_d2.modeling.wsod.pseudo_labels import (
    PseudoLabels,
    box_iou,
    check_labeller_inputs,
    positive_classes,
    proposals_as_pseudo_gt,
)

__all__ = ["mist_pseudo_labels"]


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
    tie_to_first: bool = False,
) -> PseudoLabels:
    """MIST: NMS over the top-scoring proposals of each positive class (see module docstring).

    boxes: (R, 4) XYXY absolute; scores: (R, C) real classes only; image_labels: (C,) multi-hot.
    compare_all_higher_ranked: False = the paper's greedy NMS against kept boxes; True = the
        released code's test against every higher-ranked box of the top set.
    tie_to_first: the assignment's tie rule (pseudo_labels.py); True = wetectron's.
    """
    check_labeller_inputs(boxes, scores, image_labels, fg_iou, bg_iou)
    if not 0.0 < top_ratio <= 1.0:
        raise ValueError(f"top_ratio: expected 0 < top_ratio <= 1, got {top_ratio}")
    num_rois = boxes.shape[0]
    positive = positive_classes(image_labels, scores.device)
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
    return proposals_as_pseudo_gt(
        boxes, top_idx[keep], classes[keep], top_scores[keep], fg_iou, bg_iou, tie_to_first
    )
