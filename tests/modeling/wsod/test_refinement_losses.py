"""Hand computations for the refinement losses and regression targets."""

import math

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform

from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import oicr_pseudo_labels
from wsod_d2.modeling.wsod.refinement_losses import (
    oicr_loss,
    pcl_loss,
    regression_targets,
    weighted_smooth_l1_box_loss,
)

EPS = 1e-6
PROBS = [
    [0.7, 0.2, 0.1],
    [0.1, 0.3, 0.6],
    [0.2, 0.5, 0.3],
    [0.3, 0.4, 0.3],
    [0.5, 0.25, 0.25],
]


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def test_oicr_loss_hand_computed():
    probs = t(PROBS[:3])
    loss = oicr_loss(probs, torch.tensor([0, 2, 1]), t([0.5, 1.0, 0.0]))
    expected = -(0.5 * math.log(0.7 + EPS) + 1.0 * math.log(0.6 + EPS)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_pcl_loss_hand_computed():
    probs = t(PROBS)
    labels = torch.tensor([0, 1, 1, 2, 0])
    weights = t([0.4, 0.9, 0.9, 0.7, 0.0])
    clusters = torch.tensor([-1, 0, 0, 1, -1])
    # Pseudo-GT 2 has no member and must not count.
    gt_classes = torch.tensor([0, 1, 0])
    loss = pcl_loss(probs, labels, weights, clusters, gt_classes)
    expected = (
        -(
            0.4 * math.log(0.7 + EPS)
            + 0.0 * math.log(0.5 + EPS)
            + (0.9 + 0.9) * math.log((0.3 + 0.5) / 2 + EPS)
            + 0.7 * math.log(0.3 + EPS)
        )
        / 5
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_pcl_loss_equals_oicr_loss_for_singleton_clusters():
    probs = t(PROBS)
    labels = torch.tensor([0, 1, 2, 2, 0])
    weights = t([0.4, 0.9, 0.8, 0.7, 0.3])
    clusters = torch.tensor([-1, 0, 1, 2, -1])
    gt_classes = torch.tensor([0, 1, 1])
    torch.testing.assert_close(
        pcl_loss(probs, labels, weights, clusters, gt_classes), oicr_loss(probs, labels, weights)
    )


def test_pcl_loss_gradcheck():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 4, generator=generator, dtype=torch.float64).softmax(dim=1)
    labels = torch.tensor([0, 1, 1, 3, 0, 1])
    weights = torch.rand(6, generator=generator, dtype=torch.float64)
    clusters = torch.tensor([-1, 0, 0, 1, -1, 2])
    gt_classes = torch.tensor([0, 2, 0, 1])

    def loss_of(p):
        return pcl_loss(p, labels, weights, clusters, gt_classes)

    assert torch.autograd.gradcheck(loss_of, (probs.requires_grad_(),))
    # Cluster members share the gradient -W_n / (R * n_n * (mean_n + eps)).
    (grad,) = torch.autograd.grad(loss_of(probs), probs)
    mean_0 = (probs[1, 1] + probs[2, 1]) / 2
    expected = -(weights[1] + weights[2]) / (6 * 2 * (mean_0 + EPS))
    torch.testing.assert_close(grad[1, 1], expected)
    torch.testing.assert_close(grad[2, 1], expected)
    assert grad[1, 0].item() == 0.0 and grad[4, 0].item() == pytest.approx(
        -weights[4].item() / (6 * (probs[4, 0].item() + EPS))
    )


def test_pcl_loss_checks_shapes():
    probs = t(PROBS)
    with pytest.raises(ValueError, match="clusters"):
        pcl_loss(probs, torch.zeros(5, dtype=torch.long), t([1.0] * 5), torch.zeros(4), t([0]))
    with pytest.raises(ValueError, match="labels"):
        oicr_loss(probs, torch.zeros(4, dtype=torch.long), t([1.0] * 5))


def test_weighted_smooth_l1_box_loss_hand_computed():
    num_rois, num_classes = 3, 2
    pred = torch.zeros(num_rois, 4 * (num_classes + 1), dtype=torch.float64)
    targets = torch.zeros(num_rois, 4, dtype=torch.float64)
    pred[0, 4:8] = t([0.5, -2.0, 0.0, 1.0])  # class 1 slice of RoI 0
    pred[0, 8:12] = 100.0  # another class's slice: must be ignored
    pred[2, 8:12] = t([0.2, 0.0, 0.0, -1.0])
    targets[2] = t([0.0, 0.0, 0.0, 2.0])
    pred[1, :] = 50.0  # background RoI: no box loss, even against a non-finite target
    targets[1] = float("inf")
    labels = torch.tensor([1, 0, 2])
    weights = t([0.5, 1.0, 2.0])
    loss = weighted_smooth_l1_box_loss(pred, labels, targets, weights, beta=1.0)
    # RoI 0: 0.125 + 1.5 + 0 + 0.5; RoI 2: 0.02 + 0 + 0 + 2.5.
    expected = (0.5 * 2.125 + 2.0 * 2.52) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    pred.requires_grad_()
    weighted_smooth_l1_box_loss(pred, labels, targets, weights).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[1].abs().sum() == 0
    # beta = 0 is plain L1.
    l1 = weighted_smooth_l1_box_loss(pred.detach(), labels, targets, weights, beta=0.0)
    assert l1.item() == pytest.approx((0.5 * 3.5 + 2.0 * 3.2) / 3, rel=1e-12)


def test_box_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="pred_deltas"):
        weighted_smooth_l1_box_loss(
            torch.zeros(2, 10), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4), torch.ones(2)
        )
    with pytest.raises(ValueError, match="target_deltas"):
        weighted_smooth_l1_box_loss(
            torch.zeros(2, 12), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3), torch.ones(2)
        )


def test_regression_targets_foreground_only():
    boxes = torch.tensor(
        [[2, 0, 12, 10], [0, 0, 10, 10], [0, 0, 10, 20], [100, 0, 110, 10]], dtype=torch.float32
    )
    scores = torch.tensor([[0.9], [0.1], [0.1], [0.1]])
    pseudo = oicr_pseudo_labels(boxes, scores, torch.ones(1))
    assert pseudo.labels.tolist() == [1, 1, 0, 0]
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    targets = regression_targets(boxes, pseudo, transform)
    # RoI 1 -> pseudo-GT [2, 0, 12, 10]: centre shift 2 over width 10, times 10; same size.
    expected = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4], dtype=torch.float32
    )
    torch.testing.assert_close(targets, expected)
    # The encoded deltas decode back onto the pseudo-GT.
    decoded = transform.apply_deltas(targets[1:2], boxes[1:2])
    torch.testing.assert_close(decoded, boxes[0:1])


def test_regression_targets_without_pseudo_gt_are_zero():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20]], dtype=torch.float32)
    pseudo = pcl_pseudo_labels(boxes, torch.rand(2, 3), torch.zeros(3))
    targets = regression_targets(boxes, pseudo, Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)))
    assert targets.shape == (2, 4) and targets.abs().sum() == 0
    with pytest.raises(ValueError, match="proposal_boxes"):
        regression_targets(boxes[:1], pseudo, Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)))


def test_losses_follow_the_input_device():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    probs = t(PROBS).to(device)
    labels = torch.tensor([0, 1, 1, 2, 0], device=device)
    weights = t([0.4, 0.9, 0.9, 0.7, 0.0]).to(device)
    clusters = torch.tensor([-1, 0, 0, 1, -1], device=device)
    gt_classes = torch.tensor([0, 1], device=device)
    assert pcl_loss(probs, labels, weights, clusters, gt_classes).device.type == device
    assert oicr_loss(probs, labels, weights).device.type == device
