"""Hand-worked cases for the OICR / PCL / MIST pseudo labellers."""

import pytest
import torch

from wsod_d2.benchmarks.pseudo_labels import benchmark_pseudo_labellers, random_proposals
from wsod_d2.modeling.wsod.mist import mist_pseudo_labels
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import box_iou, oicr_pseudo_labels

LABELLERS = [oicr_pseudo_labels, pcl_pseudo_labels, mist_pseudo_labels]


def strip(x0, x1):
    """A box of height 1 spanning [x0, x1]: IoUs of such strips are ratios of lengths."""
    return [x0, 0.0, x1, 1.0]


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def assert_labels(pseudo, labels, weights, matched_gt, clusters):
    assert pseudo.labels.tolist() == labels
    torch.testing.assert_close(pseudo.weights, t(weights, pseudo.weights.dtype))
    assert pseudo.matched_gt.tolist() == matched_gt
    assert pseudo.clusters.tolist() == clusters


def test_box_iou_exact_values():
    boxes = t([strip(0, 2), strip(0, 10), [0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 0, 1]])
    iou = box_iou(boxes, boxes[2:3])
    assert iou[:, 0].tolist() == [0.5, t(0.1).item(), 1.0, 0.0, 0.0]
    assert box_iou(boxes[None], boxes[None]).shape == (1, 5, 5)


def test_oicr_class_collision_takes_next_best():
    # Both classes peak on proposal 0; class 1 must fall back to proposal 1.
    boxes = t([strip(0, 10), strip(20, 30), strip(40, 50)])
    scores = t([[0.9, 0.8], [0.1, 0.7], [0.05, 0.1]])
    pseudo = oicr_pseudo_labels(boxes, scores, t([1, 1]))
    assert pseudo.gt_proposals.tolist() == [0, 1]
    assert pseudo.gt_classes.tolist() == [0, 1]
    torch.testing.assert_close(pseudo.gt_scores, t([0.9, 0.7]))
    torch.testing.assert_close(pseudo.gt_boxes, boxes[:2])
    assert_labels(pseudo, [1, 2, 0], [0.9, 0.7, 0.0], [0, 1, -1], [0, 1, -1])


def test_oicr_argmax_tie_goes_to_lowest_index():
    boxes = t([strip(0, 10), strip(20, 30), strip(40, 50)])
    pseudo = oicr_pseudo_labels(boxes, t([[0.2], [0.6], [0.6]]), t([1]))
    assert pseudo.gt_proposals.tolist() == [1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("labeller", LABELLERS)
def test_iou_exactly_at_thresholds(labeller, dtype):
    # Proposal 0 is the only high-scoring box; the others sit at IoU 0.5, 0.49, 0.1, 0.05 to it.
    boxes = t([strip(0, 10), strip(0, 5), strip(0, 4.9), strip(0, 1), strip(0, 0.5)], dtype)
    scores = t([[0.9], [0.01], [0.01], [0.01], [0.01]], dtype)
    pseudo = labeller(boxes, scores, t([1]), fg_iou=0.5, bg_iou=0.1)
    assert pseudo.gt_proposals.tolist() == [0]
    assert_labels(
        pseudo, [1, 1, 0, 0, 0], [0.9, 0.9, 0.9, 0.9, 0.0], [0, 0, 0, 0, -1], [0, 0, -1, -1, -1]
    )
    torch.testing.assert_close(pseudo.max_iou, t([1.0, 0.5, 0.49, 0.1, 0.05], dtype))


@pytest.mark.parametrize("labeller", LABELLERS)
def test_single_proposal(labeller):
    pseudo = labeller(t([[3, 4, 30, 40]]), t([[0.2, 0.7]]), t([0, 1]))
    assert pseudo.gt_proposals.tolist() == [0]
    assert pseudo.gt_classes.tolist() == [1]
    assert_labels(pseudo, [2], [0.7], [0], [0])


@pytest.mark.parametrize("labeller", [oicr_pseudo_labels, pcl_pseudo_labels])
def test_more_positive_classes_than_proposals(labeller):
    # Class 0 takes row 0, class 1 the remaining row 1, class 2 finds no free row.
    boxes = t([strip(0, 10), strip(20, 30)])
    scores = t([[0.5, 0.9, 0.3], [0.4, 0.2, 0.8]])
    pseudo = labeller(boxes, scores, t([1, 1, 1]))
    assert pseudo.gt_proposals.tolist() == [0, 1]
    assert pseudo.gt_classes.tolist() == [0, 1]
    torch.testing.assert_close(pseudo.gt_scores, t([0.5, 0.2]))
    assert_labels(pseudo, [1, 2], [0.5, 0.2], [0, 1], [0, 1])


def test_mist_shares_proposals_between_classes():
    # MIST takes no rows: proposal 0 serves both classes; the RoI takes the higher score.
    pseudo = mist_pseudo_labels(t([strip(0, 10)]), t([[0.3, 0.6]]), t([1, 1]))
    assert pseudo.gt_proposals.tolist() == [0, 0]
    assert pseudo.gt_classes.tolist() == [0, 1]
    assert_labels(pseudo, [2], [0.6], [1], [1])


@pytest.mark.parametrize("labeller", LABELLERS)
@pytest.mark.parametrize("label_dtype", [torch.float32, torch.bool])
def test_no_positive_class_ignores_everything(labeller, label_dtype):
    boxes = t([strip(0, 10), strip(5, 15), strip(40, 50)])
    scores = t([[0.9, 0.1], [0.5, 0.2], [0.1, 0.8]])
    pseudo = labeller(boxes, scores, torch.zeros(2, dtype=label_dtype))
    assert pseudo.gt_boxes.shape == (0, 4)
    assert pseudo.gt_classes.shape == pseudo.gt_scores.shape == (0,)
    assert_labels(pseudo, [0, 0, 0], [0.0, 0.0, 0.0], [-1, -1, -1], [-1, -1, -1])
    assert pseudo.max_iou.tolist() == [0.0, 0.0, 0.0]


def test_equal_iou_prefers_higher_scored_pseudo_gt():
    # Row 1 overlaps rows 0 and 2 with the same IoU 4/16; pseudo-GT 1 (row 2) scores higher.
    boxes = t([strip(0, 10), strip(6, 16), strip(12, 22)])
    pseudo = oicr_pseudo_labels(boxes, t([[0.7, 0.1], [0.5, 0.5], [0.1, 0.9]]), t([1, 1]))
    assert pseudo.gt_proposals.tolist() == [0, 2]
    assert_labels(pseudo, [1, 0, 2], [0.7, 0.9, 0.9], [0, 1, 1], [0, -1, 1])
    torch.testing.assert_close(pseudo.max_iou, t([1.0, 0.25, 1.0]))


def test_equal_iou_and_score_prefers_lower_index():
    boxes = t([strip(0, 10), strip(6, 16), strip(12, 22)])
    pseudo = oicr_pseudo_labels(boxes, t([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]), t([1, 1]))
    assert pseudo.matched_gt.tolist() == [0, 0, 1]


def chain_boxes():
    """A > B > C by score; IoU(A, B) = IoU(B, C) = 0.25, IoU(A, C) = 0."""
    return t([strip(0, 10), strip(6, 16), strip(12, 22)]), t([[0.9], [0.8], [0.7]])


def test_mist_nms_against_kept_boxes():
    boxes, scores = chain_boxes()
    # B is suppressed by A; C only overlaps the suppressed B, so it is kept.
    pseudo = mist_pseudo_labels(boxes, scores, t([1]), top_ratio=1.0, nms_iou=0.2)
    assert pseudo.gt_proposals.tolist() == [0, 2]
    torch.testing.assert_close(pseudo.gt_scores, t([0.9, 0.7]))
    # B ties at IoU 0.25 between the two pseudo-GTs: the higher score (A, 0.9) wins.
    assert_labels(pseudo, [1, 0, 1], [0.9, 0.9, 0.7], [0, 0, 1], [0, -1, 1])


def test_mist_released_code_rule_compares_all_higher_ranked():
    boxes, scores = chain_boxes()
    pseudo = mist_pseudo_labels(
        boxes, scores, t([1]), top_ratio=1.0, nms_iou=0.2, compare_all_higher_ranked=True
    )
    assert pseudo.gt_proposals.tolist() == [0]


def test_mist_nms_threshold_is_strict_and_long_chains_resolve():
    boxes, scores = chain_boxes()
    # IoU 0.25 == nms_iou suppresses (a box is kept only below nms_iou).
    pseudo = mist_pseudo_labels(boxes, scores, t([1]), top_ratio=1.0, nms_iou=0.25)
    assert pseudo.gt_proposals.tolist() == [0, 2]
    pseudo = mist_pseudo_labels(boxes, scores, t([1]), top_ratio=1.0, nms_iou=0.26)
    assert pseudo.gt_proposals.tolist() == [0, 1, 2]
    # Chain of 9 strips, each overlapping the next by 0.25: greedy NMS keeps every other one.
    chain = t([strip(6 * i, 6 * i + 10) for i in range(9)])
    ranked = t([[1.0 - 0.1 * i] for i in range(9)])
    pseudo = mist_pseudo_labels(chain, ranked, t([1]), top_ratio=1.0, nms_iou=0.2)
    assert pseudo.gt_proposals.tolist() == [0, 2, 4, 6, 8]


def test_mist_top_k_floor_and_guard():
    boxes = t([strip(20 * i, 20 * i + 10) for i in range(20)])
    scores = torch.linspace(0.1, 0.9, 20)[:, None]
    # 0.15 * 20 = 3 disjoint boxes, taken in score order.
    pseudo = mist_pseudo_labels(boxes, scores, t([1]), top_ratio=0.15)
    assert pseudo.gt_proposals.tolist() == [19, 18, 17]
    # 0.15 * 6 = 0.9 floors to 0; the guard keeps k = 1.
    pseudo = mist_pseudo_labels(boxes[:6], scores[:6], t([1]), top_ratio=0.15)
    assert pseudo.gt_proposals.tolist() == [5]
    # 0.1 * 19 = 1.9 floors to 1.
    pseudo = mist_pseudo_labels(boxes[:19], scores[:19], t([1]), top_ratio=0.1)
    assert pseudo.gt_proposals.tolist() == [18]


def pcl_case():
    """Two groups of high-scoring boxes and two low-scoring ones (see test_pcl_graph_centres).

    IoUs: (0,1) = 8/12, (1,6) = 7/13, (0,6) = 5/15 < 0.4, (2,5) = 8/12, (0,4) = 0.5, (1,4) = 80/220.
    k-means on the scores: centres start at 0.05, 0.475, 0.9; rows 3, 4 fall in the low cluster.
    """
    boxes = t(
        [
            [0, 0, 10, 10],
            [2, 0, 12, 10],
            [50, 0, 60, 10],
            [100, 0, 110, 10],
            [0, 0, 10, 20],
            [52, 0, 62, 10],
            [5, 0, 15, 10],
        ]
    )
    scores = t([[0.9], [0.83], [0.8], [0.1], [0.05], [0.82], [0.84]])
    return boxes, scores


def test_pcl_graph_centres():
    boxes, scores = pcl_case()
    pseudo = pcl_pseudo_labels(boxes, scores, t([1]))
    # Row 1 has degree 3 ({0, 1, 6}; row 4 is not a candidate, else row 0 would tie and win);
    # its cluster scores max(0.9, 0.83, 0.84). Rows 2 and 5 tie at degree 2: 5 scores higher.
    assert pseudo.gt_proposals.tolist() == [1, 5]
    torch.testing.assert_close(pseudo.gt_scores, t([0.9, 0.82]))
    assert pseudo.gt_classes.tolist() == [0, 0]
    assert_labels(
        pseudo,
        [1, 1, 1, 0, 0, 1, 1],
        [0.9, 0.9, 0.82, 0.0, 0.9, 0.82, 0.9],
        [0, 0, 1, -1, 0, 1, 0],
        [0, 0, 1, -1, -1, 1, 0],
    )


def test_pcl_graph_iou_and_max_clusters():
    boxes, scores = pcl_case()
    # With edges above 0.6, (1, 6) drops: rows 0, 1, 2, 5 tie at degree 2 and row 0 scores most;
    # then row 5 (degree 2) before row 6 (degree 1, alone).
    pseudo = pcl_pseudo_labels(boxes, scores, t([1]), graph_iou=0.6)
    assert pseudo.gt_proposals.tolist() == [0, 5, 6]
    torch.testing.assert_close(pseudo.gt_scores, t([0.9, 0.82, 0.84]))
    pseudo = pcl_pseudo_labels(boxes, scores, t([1]), graph_iou=0.6, max_clusters=2)
    assert pseudo.gt_proposals.tolist() == [0, 5]


def test_pcl_centres_are_taken_for_later_classes():
    boxes, scores = pcl_case()
    # Class 1 has the same scores as class 0: its centres must avoid rows 1 and 5.
    both = torch.cat([scores, scores], dim=1)
    pseudo = pcl_pseudo_labels(boxes, both, t([1, 1]))
    assert pseudo.gt_classes.tolist() == [0, 0, 1, 1, 1]
    # Without rows 1 and 5 the candidates 0, 6, 2 are pairwise apart (IoU(0, 6) = 1/3): all of
    # degree 1, so they are picked by score, 0.9, 0.84, 0.8.
    assert pseudo.gt_proposals.tolist() == [1, 5, 0, 6, 2]


def agreement_case():
    boxes = t([strip(0, 10), strip(30, 40), strip(60, 70), strip(62, 72), strip(90, 100)])
    scores = t([[0.05, 0.0], [0.1, 0.0], [0.95, 0.0], [0.08, 0.0], [0.07, 0.0]])
    return boxes, scores, t([1, 0])


def test_labellers_agree_on_one_isolated_winner():
    boxes, scores, labels = agreement_case()
    results = [labeller(boxes, scores, labels) for labeller in LABELLERS]
    for pseudo in results:
        assert pseudo.gt_proposals.tolist() == [2]
        assert_labels(
            pseudo,
            [0, 0, 1, 1, 0],
            [0.0, 0.0, 0.95, 0.95, 0.0],
            [-1, -1, 0, 0, -1],
            [-1, -1, 0, 0, -1],
        )
    for other in results[1:]:
        torch.testing.assert_close(other.max_iou, results[0].max_iou)


def test_oicr_and_mist_top1_agree_on_random_image():
    boxes, scores, labels = random_proposals(60, 20, 3, seed=3)
    positive = torch.nonzero(labels).squeeze(1)
    # Precondition: the three classes peak on distinct proposals, so OICR takes no fallback.
    assert len(set(scores[:, positive].argmax(dim=0).tolist())) == 3
    oicr = oicr_pseudo_labels(boxes, scores, labels)
    mist = mist_pseudo_labels(boxes, scores, labels, top_ratio=1.0 / 60)
    for name in ("labels", "weights", "matched_gt", "clusters", "max_iou", "gt_proposals"):
        torch.testing.assert_close(getattr(mist, name), getattr(oicr, name), msg=name)


@pytest.mark.parametrize("labeller", LABELLERS)
def test_outputs_carry_no_gradient(labeller):
    boxes, scores, labels = random_proposals(30, 4, 2, seed=1)
    pseudo = labeller(boxes, scores.requires_grad_(), labels)
    assert not pseudo.weights.requires_grad and not pseudo.gt_scores.requires_grad


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=torch.zeros(3, 5)), "boxes"),
        (dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0, 2)), "boxes"),
        (dict(scores=torch.zeros(4, 2)), "scores"),
        (dict(scores=torch.zeros(3, 2, dtype=torch.long)), "scores"),
        (dict(image_labels=torch.ones(3)), "image_labels"),
        (dict(fg_iou=0.1, bg_iou=0.5), "bg_iou"),
    ],
)
@pytest.mark.parametrize("labeller", LABELLERS)
def test_bad_input_names_the_argument(labeller, kwargs, message):
    args = dict(boxes=torch.zeros(3, 4), scores=torch.zeros(3, 2), image_labels=torch.ones(2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        labeller(**args)


def test_bad_labeller_parameters():
    args = (torch.zeros(3, 4), torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="top_ratio"):
        mist_pseudo_labels(*args, top_ratio=0.0)
    with pytest.raises(ValueError, match="max_clusters"):
        pcl_pseudo_labels(*args, max_clusters=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("labeller", LABELLERS)
def test_cuda_matches_cpu(labeller):
    boxes, scores, labels = random_proposals(400, 20, 3, seed=5)
    cpu = labeller(boxes, scores, labels)
    cuda = labeller(boxes.cuda(), scores.cuda(), labels)  # labels may stay on the CPU
    assert cuda.labels.device.type == "cuda"
    for name in ("labels", "matched_gt", "clusters", "gt_proposals", "gt_classes"):
        assert torch.equal(getattr(cuda, name).cpu(), getattr(cpu, name)), name
    for name in ("weights", "max_iou", "gt_scores", "gt_boxes"):
        torch.testing.assert_close(getattr(cuda, name).cpu(), getattr(cpu, name), msg=name)


def test_benchmark_rows():
    rows = benchmark_pseudo_labellers(sizes=(20, 40), num_classes=5, num_positive=2, repeats=1)
    assert [(row["labeller"], row["R"]) for row in rows] == [
        (name, size) for size in (20, 40) for name in ("oicr", "pcl", "mist")
    ]
    assert all(row["ms"] > 0 for row in rows)
