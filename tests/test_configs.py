"""Every shipped YAML loads and builds a model; the VGG16 VOC07 recipe trains one step."""
import glob
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from wsod_d2.config import get_wsod_cfg
from wsod_d2.testing import REPO_ROOT

CONFIGS = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)


def load(path, *opts):
    return get_wsod_cfg(os.path.join(REPO_ROOT, path), ["MODEL.DEVICE", "cpu", *opts], freeze=False)


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds(path):
    cfg = load(path)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def toy_input(num_classes, height=96, width=128):
    proposals = Instances((height, width))
    proposals.proposal_boxes = Boxes(
        torch.tensor([[0, 0, 64, 64], [32, 16, 128, 96], [8, 8, 40, 56], [0, 0, 128, 96.0]])
    )
    proposals.objectness_logits = torch.zeros(4)
    labels = torch.zeros(num_classes)
    labels[[1, 5]] = 1
    return {
        "image": torch.randint(0, 255, (3, height, width), dtype=torch.uint8).float(),
        "proposals": proposals,
        "image_labels": labels,
    }


def test_vgg16_voc07_one_iteration():
    cfg = load("configs/PascalVOC-Detection/wsddn_vgg16.yaml", "MODEL.WEIGHTS", "")
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    assert model.backbone.output_shape()["conv5"].stride == 8
    optimizer = build_optimizer(cfg, model)
    frozen = model.backbone.features[0].weight.clone()
    trained = model.roi_heads.mil_head.cls_score.weight.clone()
    with EventStorage():
        losses = model([toy_input(cfg.MODEL.ROI_HEADS.NUM_CLASSES)])
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(model.backbone.features[0].weight, frozen)  # conv1: FREEZE_AT 2
    assert not torch.equal(model.roi_heads.mil_head.cls_score.weight, trained)
    assert model.backbone.features[24].weight.grad is not None  # conv5_1 trains


def test_vgg16_eval_returns_detections():
    cfg = load("configs/Synthetic/wsddn_tiny.yaml")
    model = build_model(cfg).eval()
    inp = toy_input(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    inp.update(height=48, width=64)
    with torch.no_grad():
        out = model([inp])[0]
    inst = out["instances"]
    assert inst.image_size == (48, 64)
    assert len(inst) > 0 and inst.pred_boxes.tensor[:, 2].max() <= 64
    assert out["image_scores"].shape == (cfg.MODEL.ROI_HEADS.NUM_CLASSES,)
