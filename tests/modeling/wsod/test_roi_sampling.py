"""CASD's released refinement supervision (roi_sampling.py, refinement_targets.py): hand cases."""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling.box_regression import Box2BoxTransform

from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels
from wsod_d2.modeling.wsod.roi_sampling import (
    neighbour_mean_boxes,
    sample_rois,
    sampled_stage_losses,
    sampler_box_targets,
    sampler_labels,
)


def pseudo_with(max_iou, matched_gt, gt_classes, gt_boxes=None):
    """PseudoLabels carrying only what the sampler reads (max IoU, matched pseudo-GT, classes)."""
    n = len(max_iou)
    g = len(gt_classes)
    return PseudoLabels(
        labels=torch.zeros(n, dtype=torch.long),
        weights=torch.ones(n),
        matched_gt=torch.tensor(matched_gt),
        clusters=torch.full((n,), -1),
        max_iou=torch.tensor(max_iou),
        gt_boxes=torch.zeros(g, 4) if gt_boxes is None else gt_boxes,
        gt_classes=torch.tensor(gt_classes),
        gt_scores=torch.ones(g),
        gt_proposals=torch.arange(g),
    )


def test_sampler_labels_at_the_iou_boundaries():
    # m: 0.6 exactly is ignored (foreground is strictly above), 0.4 exactly ignored (background
    # is below it), 0.1 exactly background, below 0.1 ignored; no pseudo-GT: background or ignored
    iou = [0.95, 0.6000001, 0.6, 0.5, 0.4, 0.39999, 0.1, 0.09999, 0.0, 0.3]
    matched = [1, 0, 0, 1, 0, 1, 0, 1, -1, -1]
    pseudo = pseudo_with(iou, matched, gt_classes=[2, 5])
    labels = sampler_labels(pseudo, 0.6, (0.1, 0.4))
    assert labels.tolist() == [6, 3, -1, -1, -1, 0, 0, -1, -1, 0]


def test_sample_counts_and_no_ignored_rois():
    labels = torch.tensor([3] * 50 + [0] * 200 + [-1] * 30)
    torch.manual_seed(0)
    sample = sample_rois(labels, 32, 96)
    assert len(sample) == 128 and len(set(sample.tolist())) == 128
    assert (labels[sample[:32]] > 0).all() and (labels[sample[32:]] == 0).all()
    # fewer than asked: all of them
    small = torch.tensor([1] * 5 + [0] * 7 + [-1] * 3)
    assert sorted(sample_rois(small, 32, 96).tolist()) == list(range(12))
    # each call draws afresh (one sample per view)
    assert not torch.equal(sample_rois(labels, 32, 96), sample_rois(labels, 32, 96))
    g = torch.Generator().manual_seed(3)
    h = torch.Generator().manual_seed(3)
    assert torch.equal(sample_rois(labels, 32, 96, g), sample_rois(labels, 32, 96, h))


def test_unweighted_cross_entropy_and_box_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.0, 0.0]])
    labels = torch.tensor([2, 1, -1, 0])
    sample = torch.tensor([0, 1, 3])
    deltas = torch.zeros(4, 12)
    deltas[0, 8:12] = torch.tensor([0.5, 0.0, 2.0, 0.0])  # class 2's slice of RoI 0
    targets = torch.zeros(4, 4)
    targets[1] = torch.tensor([0.0, 0.3, 0.0, 0.0])
    cls, box = sampled_stage_losses(logits, deltas, labels, sample, targets, beta=1.0)
    expect = (
        -(
            math.log(math.e / (math.e**2 + 1 + math.e))
            + math.log(math.e**3 / (2 + math.e**3))
            + math.log(math.exp(0.5) / (math.exp(0.5) + 2))
        )
        / 3
    )
    assert cls.item() == pytest.approx(expect, rel=1e-6)
    # foreground RoIs 0 and 1, 8 coordinates: 0.5 * 0.5^2 + (2 - 0.5) + 0.5 * 0.3^2, over 8
    assert box.item() == pytest.approx((0.125 + 1.5 + 0.045) / 8, rel=1e-6)
    # the ignored RoI 2 never counts, whatever its logits
    logits2 = logits.clone()
    logits2[2] = torch.tensor([-9.0, 9.0, 0.0])
    assert torch.equal(sampled_stage_losses(logits2, None, labels, sample, None, 1.0)[0], cls)
    # unweighted: the mean cross-entropy of the sample, as F.cross_entropy
    assert torch.allclose(cls, F.cross_entropy(logits[sample], labels[sample]))


def test_neighbour_mean_targets_by_hand():
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [0.0, 0.0, 10.0, 20.0], [30, 30, 40, 40]]
    )
    # pseudo-GT = proposal 0; proposal 1 has IoU 10/11 > 0.6, proposal 2 has 0.5
    pseudo = pseudo_with([1.0, 10 / 11, 0.5, 0.0], [0, 0, 0, -1], [4], gt_boxes=boxes[:1])
    target = neighbour_mean_boxes(boxes, pseudo, 0.6)
    assert target.tolist() == [[0.0, 0.0, 10.0, 10.5]]
    # at 0.45 proposal 2 joins: mean of the three
    wide = neighbour_mean_boxes(boxes, pseudo, 0.45)
    assert torch.allclose(wide, torch.tensor([[0.0, 0.0, 10.0, 41 / 3]]))
    labels = sampler_labels(pseudo, 0.6, (0.1, 0.4))
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    deltas = sampler_box_targets(boxes, pseudo, labels, target, transform)
    assert torch.allclose(deltas[0], transform.get_deltas(boxes[:1], target)[0])
    assert torch.allclose(deltas[1], transform.get_deltas(boxes[1:2], target)[0])
    assert (deltas[2:] == 0).all()
    # with stds (0.1, 0.1, 0.2, 0.2): dh of RoI 0 = log(10.5 / 10) / 0.2
    assert deltas[0, 3].item() == pytest.approx(math.log(1.05) / 0.2, rel=1e-5)
