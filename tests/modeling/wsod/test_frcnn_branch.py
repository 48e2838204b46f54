"""pcl.pytorch's Fast R-CNN branch: its labels from the last stage on a hand case, its losses,
and its test-time combination with the stages."""
import math

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances

from wsod_d2 import add_wsod_config
from wsod_d2.modeling.wsod.frcnn_branch import combine_with_branch
from wsod_d2.modeling.wsod.roi_heads import MILOutputs
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG


def make_heads(**extra):
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(f"{REPO_ROOT}/{TINY_CONFIG}")
    # fmt: off
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NAME", "RefinementROIHeads",
        "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        "MODEL.ROI_BOX_HEAD.DROPOUT", 0.0, "MODEL.ROI_BOX_HEAD.FC_DIM", 8,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4, "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", 1.0,
        "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", (10.0, 10.0, 5.0, 5.0),
        "MODEL.REFINEMENT.FRCNN_BRANCH", True, "MODEL.REFINEMENT.NUM_STAGES", 2,
    ])
    # fmt: on
    torch.manual_seed(0)
    return build_roi_heads(cfg, {"conv5": ShapeSpec(channels=16, stride=8)})


BOXES = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]])


def test_labels_from_the_last_stage_and_losses_by_hand():
    heads = make_heads()
    with torch.no_grad():
        for p in heads.frcnn_branch.parameters():
            p.zero_()
    # Last stage's scores (R, C): class 2 is present; its top RoI is 1 (0.7). RoI 0 has IoU 0.9
    # with it (foreground), RoI 2 IoU 0 (< 0.1: ignored).
    supervision = torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.0, 0.7], [0.0, 0.0, 0.1]])
    view = MILOutputs(pooled=None, x=torch.zeros(3, 8), roi_scores=None, image_scores=None)
    losses = {}
    labels = torch.tensor([[0, 0, 1.0]])
    heads.frcnn_branch_losses(losses, [view], [BOXES], supervision, labels, [1.0])
    # Zero logits: log_softmax = -log 4 everywhere; weights (0.7, 0.7, 0) over R = 3.
    assert math.isclose(losses["loss_frcnn_cls"].item(), math.log(4) * 1.4 / 3, rel_tol=1e-5)
    # RoI 0 -> box 1: deltas (0, 10 * (-0.5 / 10), 0, 5 log 0.9); smooth-L1 beta 1 of each,
    # x 0.7, over the 2 RoIs with weight > 0; RoI 1's target is 0.
    dy, dh = -0.5, 5 * math.log(0.9)
    expected = 0.7 * (0.5 * dy**2 + 0.5 * dh**2) / 2
    assert math.isclose(losses["loss_frcnn_box_reg"].item(), expected, rel_tol=1e-5)


def test_test_time_combination_with_the_stages():
    stage = torch.tensor([[0.2, 0.4, 0.1]])
    branch = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    assert torch.allclose(combine_with_branch(stage, branch), torch.tensor([[0.25, 0.3, 0.1]]))

    heads = make_heads().eval()
    with torch.no_grad():
        for module in (*heads.stages, heads.frcnn_branch):
            for p in module.parameters():
                p.zero_()
        heads.stages[0].cls_score.bias.copy_(torch.log(torch.tensor([1.0, 1.0, 1.0, 5.0])))
        heads.frcnn_branch.cls_score.bias.copy_(torch.log(torch.tensor([4.0, 2.0, 1.0, 1.0])))
        # Class 1's deltas (slice 2): dx = 1 / weight 10 = 0.1 x width 10 = +1 px.
        heads.frcnn_branch.bbox_pred.bias[8] = 1.0
    proposals = Instances((96, 128))
    proposals.proposal_boxes = Boxes(BOXES)
    features = {"conv5": torch.rand(1, 16, 12, 16)}
    boxes, scores, _ = heads.predict(features, [proposals])
    # Stages (1/8, 1/8, 5/8), (1/4, 1/4, 1/4): mean (3/16, 3/16, 7/16); branch (1/4, 1/8, 1/8).
    expected = (torch.tensor([3 / 16, 3 / 16, 7 / 16]) + torch.tensor([1 / 4, 1 / 8, 1 / 8])) / 2
    assert torch.allclose(scores[0], expected.expand(3, 3), atol=1e-6)
    # Boxes come from the branch's deltas: class 1 shifted by dx / 10 x width = 1 px (width 10).
    assert boxes[0].shape == (3, 12)
    assert torch.allclose(boxes[0][:, 4:8], BOXES + torch.tensor([1.0, 0, 1, 0]))
    assert torch.allclose(boxes[0][:, :4], BOXES) and torch.allclose(boxes[0][:, 8:], BOXES)
