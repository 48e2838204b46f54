"""RefinementROIHeads: training on a toy batch, equivalence with WSDDN at K = 0, loss wiring and
weights, test-time averaging of scores and decoded boxes."""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances

from wsod_d2 import add_wsod_config
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import oicr_pseudo_labels
from wsod_d2.modeling.wsod.refinement import (
    RefinementROIHeads,
    average_stage_boxes,
    average_stage_scores,
)
from wsod_d2.modeling.wsod.refinement_losses import (
    oicr_loss,
    pcl_loss,
    regression_targets,
    weighted_smooth_l1_box_loss,
)
from wsod_d2.modeling.wsod.roi_heads import WSODROIHeads
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG

CHANNELS = 16
IMAGE_SIZE = (96, 128)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]


def make_cfg(*opts):
    """The tiny synthetic config with a small box head, 3 classes, no dropout."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(f"{REPO_ROOT}/{TINY_CONFIG}")
    # fmt: off
    cfg.merge_from_list(
        [
            "MODEL.DEVICE", "cpu",
            "MODEL.ROI_HEADS.NAME", "RefinementROIHeads",
            "MODEL.ROI_HEADS.NUM_CLASSES", 3,
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
            "MODEL.ROI_BOX_HEAD.DROPOUT", 0.0,
            "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4,
            "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", 1.0,
            *opts,
        ]
    )
    # fmt: on
    return cfg


def make_heads(*opts, seed=0):
    torch.manual_seed(seed)
    return build_roi_heads(make_cfg(*opts), {"conv5": ShapeSpec(channels=CHANNELS, stride=8)})


def toy_batch(device="cpu"):
    """Fixed features (2, 16, 12, 16), 20 proposals per image, labels (2, 3)."""
    g = torch.Generator().manual_seed(1)
    features = {"conv5": torch.rand(2, CHANNELS, 12, 16, generator=g).to(device)}
    proposals = []
    for _ in range(2):
        xy = torch.rand(20, 2, generator=g) * torch.tensor([90.0, 60.0])
        wh = 8 + torch.rand(20, 2, generator=g) * 30
        far = torch.minimum(xy + wh, torch.tensor([128.0, 96.0]))
        p = Instances(IMAGE_SIZE)
        p.proposal_boxes = Boxes(torch.cat([xy, far], dim=1))
        proposals.append(p.to(device))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], device=device)
    return features, proposals, labels


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("labeler", ["OICR", "PCL", "MIST"])
@pytest.mark.parametrize("box_reg", [False, True])
def test_heads_train_on_a_fixed_batch(device, labeler, box_reg):
    # fmt: off
    heads = make_heads(
        "MODEL.REFINEMENT.PSEUDO_LABELER", labeler,
        "MODEL.REFINEMENT.BOX_REG", box_reg,
        "MODEL.REFINEMENT.FIRST_STAGE_LOSS_WEIGHT", 3.0,
    ).to(device)
    # fmt: on
    heads.train()
    features, proposals, labels = toy_batch(device)
    optimizer = torch.optim.Adam(heads.parameters(), lr=3e-3)
    totals = []
    for step in range(30):
        losses = heads(features, proposals, labels)
        expected = {"loss_mil"} | {f"loss_refine{k}" for k in (1, 2, 3)}
        if box_reg:
            expected |= {f"loss_refine{k}_box_reg" for k in (1, 2, 3)}
        assert set(losses) == expected
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        if step == 0:
            for stage in heads.stages:
                assert stage.cls_score.weight.grad.abs().sum() > 0
                if box_reg:
                    assert stage.bbox_pred.weight.grad.abs().sum() > 0
        optimizer.step()
        totals.append(total.item())
    assert sum(totals[-3:]) / 3 < 0.9 * totals[0], totals


def test_zero_stages_equals_the_wsddn_heads():
    wsddn = make_heads("MODEL.ROI_HEADS.NAME", "WSODROIHeads")
    refine = make_heads("MODEL.REFINEMENT.NUM_STAGES", 0, "MODEL.REFINEMENT.TEST_INCLUDE_MIL", True)
    assert type(wsddn) is WSODROIHeads and isinstance(refine, RefinementROIHeads)
    refine.load_state_dict(wsddn.state_dict())
    features, proposals, labels = toy_batch()
    wsddn.train(), refine.train()
    with torch.no_grad():
        losses_a, losses_b = wsddn(features, proposals, labels), refine(features, proposals, labels)
    assert set(losses_a) == set(losses_b) == {"loss_mil"}
    assert torch.equal(losses_a["loss_mil"], losses_b["loss_mil"])
    wsddn.eval(), refine.eval()
    one = {"conv5": features["conv5"][:1]}
    with torch.no_grad():
        (a,), scores_a = wsddn(one, proposals[:1])
        (b,), scores_b = refine(one, proposals[:1])
    assert len(a) > 0 and torch.equal(scores_a, scores_b)
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)


def test_zero_stages_need_the_mil_scores_at_test():
    with pytest.raises(ValueError, match="TEST_INCLUDE_MIL"):
        make_heads("MODEL.REFINEMENT.NUM_STAGES", 0)
    with pytest.raises(ValueError, match="NUM_STAGES"):
        make_heads("MODEL.REFINEMENT.NUM_STAGES", -1)
    with pytest.raises(KeyError, match="FOO"):
        make_heads("MODEL.REFINEMENT.PSEUDO_LABELER", "FOO")


@pytest.mark.parametrize("labeler", ["OICR", "PCL"])
def test_losses_follow_the_stage_chain_and_first_stage_weight(labeler):
    opts = ("MODEL.REFINEMENT.PSEUDO_LABELER", labeler, "MODEL.REFINEMENT.BOX_REG", True)
    plain = make_heads(*opts, "MODEL.REFINEMENT.BOX_REG_LOSS_WEIGHT", 0.5).train()
    # fmt: off
    tripled = make_heads(
        *opts,
        "MODEL.REFINEMENT.BOX_REG_LOSS_WEIGHT", 0.5,
        "MODEL.REFINEMENT.FIRST_STAGE_LOSS_WEIGHT", 3.0,
    ).train()
    # fmt: on
    tripled.load_state_dict(plain.state_dict())
    features, proposals, labels = toy_batch()
    with torch.no_grad():
        got = plain(features, proposals, labels)
        got3 = tripled(features, proposals, labels)
        # The same chain by hand: stage k is labelled from stage k-1 (stage 1 from the MIL head).
        mil = plain.mil_outputs(features, proposals)
        x, roi_scores = mil.x, mil.roi_scores
        boxes = [p.proposal_boxes.tensor for p in proposals]
        transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
        supervision = roi_scores.split([20, 20])
        for k, stage in enumerate(plain.stages, start=1):
            logits, deltas = stage(x)
            probs = F.softmax(logits, dim=1)
            cls_terms, box_terms = [], []
            for i in range(2):
                p, d = probs[20 * i : 20 * (i + 1)], deltas[20 * i : 20 * (i + 1)]
                if labeler == "OICR":
                    pseudo = oicr_pseudo_labels(boxes[i], supervision[i], labels[i], 0.5, 0.1)
                    cls_terms.append(oicr_loss(p, pseudo.labels, pseudo.weights))
                else:
                    pseudo = pcl_pseudo_labels(boxes[i], supervision[i], labels[i])
                    cls_terms.append(
                        pcl_loss(
                            p, pseudo.labels, pseudo.weights, pseudo.clusters, pseudo.gt_classes
                        )
                    )
                targets = regression_targets(boxes[i], pseudo, transform)
                box_terms.append(
                    weighted_smooth_l1_box_loss(d, pseudo.labels, targets, pseudo.weights, beta=1.0)
                )
            assert got[f"loss_refine{k}"].item() == pytest.approx(
                (sum(cls_terms) / 2).item(), rel=1e-5
            )
            assert got[f"loss_refine{k}_box_reg"].item() == pytest.approx(
                (0.5 * sum(box_terms) / 2).item(), rel=1e-5
            )
            supervision = probs[:, 1:].split([20, 20])
    assert got["loss_refine1"] > 0 and got["loss_refine1_box_reg"] > 0
    assert got3["loss_refine1"].item() == pytest.approx(3 * got["loss_refine1"].item(), rel=1e-6)
    assert got3["loss_refine1_box_reg"].item() == pytest.approx(
        3 * got["loss_refine1_box_reg"].item(), rel=1e-6
    )
    for key in ("loss_mil", "loss_refine2", "loss_refine3", "loss_refine3_box_reg"):
        assert got3[key].item() == pytest.approx(got[key].item(), rel=1e-6)


def test_average_stage_scores_by_hand():
    ln3 = math.log(3.0)
    # One RoI, C = 2. Stage 1: softmax of [0, ln 3, 0] = [0.2, 0.6, 0.2];
    # stage 2: softmax of [ln 3, 0, ln 3] = [3/7, 1/7, 3/7]. Background (column 0) dropped.
    stage_logits = [torch.tensor([[0.0, ln3, 0.0]]), torch.tensor([[ln3, 0.0, ln3]])]
    expected = torch.tensor([[(0.6 + 1 / 7) / 2, (0.2 + 3 / 7) / 2]])
    assert torch.allclose(average_stage_scores(stage_logits), expected, atol=1e-6)
    mil = torch.tensor([[0.05, 0.5]])
    with_mil = torch.tensor([[(0.6 + 1 / 7 + 0.05) / 3, (0.2 + 3 / 7 + 0.5) / 3]])
    assert torch.allclose(average_stage_scores(stage_logits, mil), with_mil, atol=1e-6)
    assert torch.equal(average_stage_scores([], mil), mil)
    with pytest.raises(ValueError, match="no stage logits"):
        average_stage_scores([])


def test_average_stage_boxes_by_hand():
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    proposal = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), size 10 x 10
    ln2 = math.log(2.0)
    # Columns: background (ignored), class 1, class 2; deltas are scaled by the weights.
    stage_a = torch.tensor([[9.0, 9, 9, 9, 1.0, 0, 0, 0, 0, -1.0, 0, -5 * ln2]])
    stage_b = torch.tensor([[-9.0, 9, -9, 9, 0, 0, 5 * ln2, 0, 0, 0, 0, 0]])
    # Class 1: a moves the centre by 0.1 * 10 = 1 -> [1, 0, 11, 10]; b doubles the width ->
    # [-5, 0, 15, 10]. Class 2: a moves up by 1 and halves the height -> [0, 1.5, 10, 6.5]; b
    # keeps the proposal.
    expected = torch.tensor([[-2.0, 0.0, 13.0, 10.0, 0.0, 0.75, 10.0, 8.25]])
    got = average_stage_boxes([stage_a, stage_b], proposal, transform)
    assert torch.allclose(got, expected, atol=1e-5)


def test_test_time_scores_and_class_specific_boxes():
    heads = make_heads("MODEL.REFINEMENT.BOX_REG", True).eval()
    with torch.no_grad():
        for stage in heads.stages:
            stage.bbox_pred.weight.zero_()
            stage.bbox_pred.bias.zero_()
            stage.bbox_pred.bias[4 * 2] = 1.0  # class 1 (column 2): shift right by 0.1 * width
    features, proposals, _ = toy_batch()
    features, proposals = {"conv5": features["conv5"][:1]}, [proposals[0][:5]]
    with torch.no_grad():
        boxes, scores, image_scores = heads.predict(features, proposals)
        mil = heads.mil_outputs(features, proposals)
        x, mil_image_scores = mil.x, mil.image_scores
        (instances,), _ = heads(features, proposals)
    logits = [stage(x)[0] for stage in heads.stages]
    assert torch.allclose(scores[0], average_stage_scores(logits), atol=1e-6)
    assert torch.equal(image_scores, mil_image_scores)
    props = proposals[0].proposal_boxes.tensor
    shift = 0.1 * (props[:, 2] - props[:, 0])
    assert boxes[0].shape == (5, 12)
    assert torch.allclose(boxes[0][:, 0:4], props, atol=1e-4)
    shifted = props + torch.stack([shift, 0 * shift] * 2, dim=1)
    assert torch.allclose(boxes[0][:, 4:8], shifted, atol=1e-4)
    assert torch.allclose(boxes[0][:, 8:12], props, atol=1e-4)
    # Each detection is its own class's box of some proposal, clipped to the image (x <= 128).
    per_class = boxes[0].reshape(5, 3, 4).clamp(min=0)
    per_class[..., 0::2] = per_class[..., 0::2].clamp(max=IMAGE_SIZE[1])
    for box, cls in zip(instances.pred_boxes.tensor, instances.pred_classes):
        assert (per_class[:, cls] - box).abs().sum(dim=1).min() < 1e-3
    assert (instances.pred_classes == 1).any() and (instances.pred_classes != 1).any()


def test_test_stages_score_and_box_from_stage_one_only():
    heads = make_heads("MODEL.REFINEMENT.BOX_REG", True, "MODEL.REFINEMENT.TEST_STAGES", [1])
    heads.eval()
    features, proposals, _ = toy_batch()
    features, proposals = {"conv5": features["conv5"][:1]}, [proposals[0][:6]]
    with torch.no_grad():
        boxes, scores, _ = heads.predict(features, proposals)
        x = heads.mil_outputs(features, proposals).x
        logits, deltas = heads.stages[0](x)
    assert torch.allclose(scores[0], F.softmax(logits, dim=1)[:, 1:], atol=1e-7)
    props = proposals[0].proposal_boxes.tensor
    decoded = heads.box2box_transform.apply_deltas(deltas[:, 4:], props)
    assert torch.allclose(boxes[0], decoded, atol=1e-5)
    # all stages by default: the mean of the three
    heads.test_stages = [0, 1, 2]
    with torch.no_grad():
        _, scores_all, _ = heads.predict(features, proposals)
        stage_logits = [stage(x)[0] for stage in heads.stages]
    assert torch.allclose(scores_all[0], average_stage_scores(stage_logits), atol=1e-7)
    assert not torch.allclose(scores_all[0], scores[0])


def test_sampled_supervision_trains_only_the_sample(monkeypatch):
    heads = make_heads(
        "MODEL.REFINEMENT.PSEUDO_LABELER", "PCL",
        "MODEL.REFINEMENT.SAMPLE.ENABLED", True,
        "MODEL.REFINEMENT.SAMPLE.NUM_FG", 2,
        "MODEL.REFINEMENT.SAMPLE.NUM_BG", 3,
        "MODEL.REFINEMENT.LOSS_WEIGHT", 0.1,
    )  # fmt: skip
    heads.train()
    features, proposals, labels = toy_batch()
    torch.manual_seed(0)
    losses = heads(features, proposals, labels)
    torch.manual_seed(0)
    heads.loss_weight = 1.0
    unweighted = heads(features, proposals, labels)
    for k in (1, 2, 3):
        assert torch.allclose(losses[f"loss_refine{k}"], 0.1 * unweighted[f"loss_refine{k}"])
    # only sampled RoIs get a gradient: zero the others' logits' influence by checking grads
    x = torch.zeros(40, 64, requires_grad=True)
    view = heads.mil_outputs(features, proposals)
    boxes = [p.proposal_boxes.tensor for p in proposals]
    targets = heads.supervision.for_view(
        heads.view_targets(heads.stages[0], boxes, [view.roi_scores.detach()], labels)[0]
    )
    logits, _ = heads.stages[0](x)
    total = sum(
        heads.supervision.losses(lg, None, t, 1.0)[0] for lg, t in zip(logits.split(20), targets)
    )
    total.backward()
    touched = (x.grad.abs().sum(dim=1) > 0).nonzero()[:, 0]
    sampled = torch.cat([targets[0].sample, targets[1].sample + 20]).sort().values
    assert torch.equal(touched, sampled)
    assert all(len(t.sample) <= 5 for t in targets)
    assert all((t.labels[t.sample] >= 0).all() for t in targets)
