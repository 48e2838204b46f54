"""The released codes' rules as switches, on crafted cases where they and the default differ:
wetectron's 21-way WSDDN, MIST's NMS and IoU-tie rules, pcl.pytorch 0.4.0's PCL centres."""
import math

import torch

from wsod_d2.modeling.wsod.mil import WSDDN
from wsod_d2.modeling.wsod.mist import mist_pseudo_labels
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import oicr_pseudo_labels


def wsddn(num_classes, background_column, input_dim=4):
    return WSDDN(
        input_dim,
        num_classes=num_classes,
        det_temperature=1.0,
        eps=1e-6,
        loss_reduction="mean",
        loss_weight=1.0,
        background_column=background_column,
    )


def test_21_way_wsddn_loss_by_hand():
    head = wsddn(2, background_column=True)
    with torch.no_grad():
        for layer in (head.cls_score, head.det_score):
            layer.weight.zero_()
        # cls softmax (bg, c1, c2) = (0.25, 0.5, 0.25) on every RoI; det softmax 0.5 on each of 2.
        head.cls_score.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 1.0])))
        head.det_score.bias.zero_()
    roi_scores, image_scores = head(torch.randn(2, 4), [2])
    assert torch.allclose(roi_scores, torch.tensor([[0.25, 0.125], [0.25, 0.125]]))
    assert torch.allclose(image_scores, torch.tensor([[0.25, 0.5, 0.25]]))
    assert torch.allclose(head.class_image_scores(image_scores), torch.tensor([[0.5, 0.25]]))
    # BCE over 3 entries, labels (bg 0, c1 1, c2 0): (-ln 0.75 - ln 0.5 - ln 0.75) / 3.
    expected = (2 * -math.log(0.75) - math.log(0.5)) / 3
    loss = head.loss(image_scores, torch.tensor([[1.0, 0.0]]))
    assert abs(loss.item() - expected) < 1e-6
    assert abs(expected - 0.4228371) < 1e-6


def test_21_way_with_masked_background_is_20_21_of_the_20_way_loss():
    torch.manual_seed(0)
    head20, head21 = wsddn(20, False, 8), wsddn(20, True, 8)
    with torch.no_grad():
        for a, b in ((head20.cls_score, head21.cls_score), (head20.det_score, head21.det_score)):
            b.weight[1:] = a.weight
            b.bias[1:] = a.bias
        head21.cls_score.weight[0].zero_()
        head21.cls_score.bias[0] = -1e4  # background column masked
    x, labels = torch.randn(7, 8), (torch.rand(1, 20) > 0.7).float()
    loss20 = head20.loss(head20(x, [7])[1], labels)
    loss21 = head21.loss(head21(x, [7])[1], labels)
    assert torch.allclose(loss21 * 21 / 20, loss20, atol=1e-6)
    assert torch.allclose(head21(x, [7])[0], head20(x, [7])[0], atol=1e-6)


# a > b > c by score; IoU(a, b) = IoU(b, c) = 0.25 >= 0.2, IoU(a, c) = 0.
CHAIN = torch.tensor([[0.0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]])


def test_mist_nms_paper_keeps_what_the_release_drops():
    scores, labels = torch.tensor([[0.9], [0.8], [0.7]]), torch.tensor([1.0])
    paper = mist_pseudo_labels(CHAIN, scores, labels, top_ratio=1.0, nms_iou=0.2)
    release = mist_pseudo_labels(
        CHAIN, scores, labels, top_ratio=1.0, nms_iou=0.2, compare_all_higher_ranked=True
    )
    # Paper: b is suppressed by a, so c (only near b) is kept; release: c is dropped by b.
    assert paper.gt_proposals.tolist() == [0, 2]
    assert release.gt_proposals.tolist() == [0]


def test_iou_tie_rules():
    # Class 0's pseudo-GT is RoI 0 (score 0.3), class 1's RoI 1 (0.6); RoI 2 has IoU 1/3 with both.
    boxes = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [5, 0, 15, 10]])
    scores = torch.tensor([[0.3, 0.0], [0.0, 0.6], [0.1, 0.1]])
    labels = torch.tensor([1.0, 1.0])
    by_score = oicr_pseudo_labels(boxes, scores, labels, fg_iou=0.3, bg_iou=0.0)
    first = oicr_pseudo_labels(boxes, scores, labels, fg_iou=0.3, bg_iou=0.0, tie_to_first=True)
    assert by_score.labels[2].item() == 2 and abs(by_score.weights[2].item() - 0.6) < 1e-7
    assert first.labels[2].item() == 1 and abs(first.weights[2].item() - 0.3) < 1e-7
    # The MIST labeller takes the same switch.
    mist = mist_pseudo_labels(
        boxes, scores, labels, top_ratio=0.34, fg_iou=0.3, bg_iou=0.0, tie_to_first=True
    )
    assert mist.labels[2].item() == 1


def test_pcl_released_centres_differ_from_greedy_on_a_crafted_graph():
    # A: 3 overlapping low-score boxes (degree 3); B: 2 overlapping high-score boxes; C: alone.
    boxes = torch.tensor(
        [
            [0.0, 0, 10, 10],
            [0, 0, 10, 11],
            [0, 0, 11, 10],
            [50, 50, 60, 60],
            [50, 50, 60, 61],
            [100, 100, 110, 110],
        ]
    )
    column = torch.tensor([0.1, 0.1, 0.1, 0.9, 0.8, 0.2])
    scores = torch.stack([column, column], dim=1)
    common = dict(max_clusters=1, kmeans_k=1, fg_iou=0.5, bg_iou=0.1)
    one_class = torch.tensor([1.0, 0.0])
    greedy = pcl_pseudo_labels(boxes, scores, one_class, **common)
    released = pcl_pseudo_labels(boxes, scores, one_class, released_centres=True, **common)
    # Greedy keeps the first centre by degree (A); the release picks A then B (6 -> 3 -> 1 node
    # left) and keeps the one of highest score, B's top box.
    assert greedy.gt_proposals.tolist() == [0] and abs(greedy.gt_scores.item() - 0.1) < 1e-7
    assert released.gt_proposals.tolist() == [3]
    assert abs(released.gt_scores.item() - 0.9) < 1e-7
    # Chosen centres leave later classes' candidates: class 1 then finds B's other box.
    both = pcl_pseudo_labels(
        boxes, scores, torch.tensor([1.0, 1.0]), released_centres=True, **common
    )
    assert both.gt_proposals.tolist() == [3, 4] and both.gt_classes.tolist() == [0, 1]
