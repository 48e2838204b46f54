import math

import pytest
import torch
from detectron2.config import get_cfg

from wsod_d2 import add_wsod_config
from wsod_d2.modeling.wsod.mil import WSDDN, MILHead


def make_head(**kw):
    args = dict(
        num_classes=2, det_temperature=1.0, eps=1e-6, loss_reduction="mean", loss_weight=1.0
    )
    args.update(kw)
    head = WSDDN(2, **args)
    with torch.no_grad():
        head.cls_score.weight.copy_(torch.eye(2))
        head.cls_score.bias.zero_()
        head.det_score.weight.copy_(torch.eye(2))
        head.det_score.bias.zero_()
    return head


def test_wsddn_scores_and_loss_by_hand():
    head = make_head()
    # Two images: the first with RoIs x=[1,0] and [0,0], the second with one RoI x=[0,2].
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    roi_scores, image_scores = head(x, [2, 1])
    e = math.e
    # Image 1: class softmax of [1,0] and [0,0]; detection softmax over the 2 RoIs per class.
    cls = [[e / (e + 1), 1 / (e + 1)], [0.5, 0.5]]
    det = [[e / (e + 1), 0.5], [1 / (e + 1), 0.5]]
    s1 = torch.tensor([[cls[r][c] * det[r][c] for c in range(2)] for r in range(2)])
    # Image 2: one RoI, so the detection softmax is 1.
    e2 = math.exp(2)
    s2 = torch.tensor([[1 / (1 + e2), e2 / (1 + e2)]])
    assert torch.allclose(roi_scores, torch.cat([s1, s2]), atol=1e-6)
    phi = torch.stack([s1.sum(0), s2.sum(0)])
    assert torch.allclose(image_scores, phi, atol=1e-6)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = -(labels * phi.log() + (1 - labels) * (1 - phi).log())
    loss = head.loss(image_scores, labels)
    assert loss.item() == pytest.approx(bce.mean().item(), rel=1e-5)
    summed = make_head(loss_reduction="sum").loss(image_scores, labels)
    assert summed.item() == pytest.approx(bce.sum().item() / 2, rel=1e-5)


def test_wsddn_temperature_and_clamp():
    head = make_head(det_temperature=2.0)
    x = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    roi_scores, _ = head(x, [2])
    e = math.e  # det logits halved: softmax over RoIs of [1, 0] for class 0
    assert roi_scores[0, 0].item() == pytest.approx(e**2 / (e**2 + 1) * e / (e + 1), rel=1e-5)
    # A saturated score is clamped, so the loss stays finite.
    loss = head.loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(-math.log(1e-6), rel=1e-3)


def test_wsddn_rejects_unknown_reduction():
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.MODEL.MIL.LOSS_REDUCTION = "max"
    with pytest.raises(ValueError, match="LOSS_REDUCTION"):
        WSDDN(cfg, 8)


def test_a_mil_head_without_loss_is_refused_at_construction():
    class NoLoss(MILHead):
        def forward(self, x, num_rois):
            return x, x

    with pytest.raises(TypeError, match="loss"):
        NoLoss()
