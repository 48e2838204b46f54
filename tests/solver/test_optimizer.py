"""The one optimizer builder: detectron2's parameter groups for the detectors (SGD as
detectron2's own builder, Adam as before), the classifier's head learning rates, Adam(W)."""
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params

from wsod_d2.config import get_wsod_cfg
from wsod_d2.solver import build_optimizer
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG

WSOL_TINY = os.path.join(REPO_ROOT, "configs", "Synthetic", "wsol", "cam_vgg_tiny.yaml")


def per_param(optimizer, keys=("lr", "weight_decay")):
    """{parameter id: (hyper-parameter values)}, group values over the optimizer's defaults."""
    out = {}
    for group in optimizer.param_groups:
        values = tuple(group.get(k, optimizer.defaults.get(k)) for k in keys)
        out.update({id(p): values for p in group["params"]})
    return out


def detector(*opts):
    cfg = get_wsod_cfg(os.path.join(REPO_ROOT, TINY_CONFIG), ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_sgd_equals_detectron2s_builder():
    # The tiny detector has BatchNorm: norm and bias parameters take their own decays.
    cfg, model = detector(
        "SOLVER.OPTIMIZER", "SGD", "SOLVER.WEIGHT_DECAY", 5e-4, "SOLVER.BIAS_LR_FACTOR", 2.0,
        "SOLVER.WEIGHT_DECAY_BIAS", 0.0, "SOLVER.MOMENTUM", 0.9,
    )  # fmt: skip
    ours, theirs = build_optimizer(cfg, model), d2_build_optimizer(cfg, model)
    assert type(ours) is type(theirs) is torch.optim.SGD
    keys = ("lr", "weight_decay", "momentum", "nesterov")
    assert per_param(ours, keys) == per_param(theirs, keys)
    assert len(per_param(ours)) == sum(p.requires_grad for p in model.parameters())
    bias = model.roi_heads.box_head.fc6.bias
    assert per_param(ours)[id(bias)] == (2 * cfg.SOLVER.BASE_LR, 0.0)


def test_adam_equals_the_detectors_former_adam():
    cfg, model = detector("SOLVER.WEIGHT_DECAY", 1e-4)
    ours = build_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    theirs = torch.optim.Adam(params, lr=cfg.SOLVER.BASE_LR)
    assert type(ours) is torch.optim.Adam
    keys = ("lr", "weight_decay", "betas", "eps")
    assert per_param(ours, keys) == per_param(theirs, keys)


def test_head_learning_rates_and_decays():
    opts = [
        "SOLVER.BASE_LR", 0.1, "SOLVER.WEIGHT_DECAY", 0.001, "SOLVER.WEIGHT_DECAY_NORM", 0.0,
        "SOLVER.HEAD_LR_PREFIXES", ["head."], "SOLVER.HEAD_LR_FACTOR", 10.0, "MODEL.DEVICE", "cpu",
    ]  # fmt: skip
    cfg = get_wsod_cfg(WSOL_TINY, opts, freeze=False)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["nesterov"] is False
    group = per_param(optimizer)
    assert len(group) == sum(1 for p in model.parameters() if p.requires_grad)
    conv, bn = model.backbone.features[0], model.backbone.features[1]
    assert group[id(conv.weight)] == (0.1, 0.001)
    assert group[id(bn.weight)][1] == 0.0 and group[id(bn.bias)][0] == 0.1
    for p in (model.head.fc.weight, model.head.fc.bias, model.head.convs[0].weight):
        assert group[id(p)] == (pytest.approx(1.0), 0.001)
    cfg.merge_from_list(
        [
            "SOLVER.OPTIMIZER",
            "AdamW",
            "SOLVER.ADAM_BETAS",
            [0.9, 0.99],
            "SOLVER.WEIGHT_DECAY_BIAS",
            0.0,
        ]
    )
    adamw = build_optimizer(cfg, model)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["betas"] == (0.9, 0.99)
    group = per_param(adamw)
    assert group[id(model.head.fc.bias)][1] == 0.0 and group[id(model.head.fc.weight)][1] == 0.001
    cfg.merge_from_list(["SOLVER.OPTIMIZER", "LAMB"])
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER: unknown 'LAMB'"):
        build_optimizer(cfg, model)
