"""CASD in the model: the multi-view mapper, CASDRCNN + CASDROIHeads, loss bookkeeping."""
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.modeling.wsod import casd_heads
from wsod_d2.modeling.wsod.box_head import BoxHead, VGGFCHead
from wsod_d2.modeling.wsod.casd import (
    layer_wise_distillation_loss,
    roi_attention_maps,
    stack_view_layer_maps,
)
from wsod_d2.testing import (
    CASD_TEST_PROPOSALS,
    casd_test_record,
    losses_with_storage,
    multiview_batch,
    tiny_casd_cfg,
)


@pytest.fixture
def record(tmp_path):
    return casd_test_record(tmp_path)


def test_mapper_views_share_one_proposal_subset(record):
    cfg = tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "2"})
    (out,) = multiview_batch(cfg, record, n=1)
    original = out["proposals"]
    assert original.image_size == (60, 80) and len(original) == CASD_TEST_PROPOSALS
    assert [v["flipped"] for v in out["views"]] == [False, True, False, True]
    sizes = {v["image"].shape[1] for v in out["views"]}
    assert sizes == {48, 64}  # two scales drawn without replacement
    boxes = original.proposal_boxes.tensor
    for view in out["views"]:
        h, w = view["image"].shape[1:]
        expected = boxes * torch.tensor([w / 80, h / 60, w / 80, h / 60])
        if view["flipped"]:
            expected = torch.stack(
                [w - expected[:, 2], expected[:, 1], w - expected[:, 0], expected[:, 3]], 1
            )
        assert torch.allclose(view["proposals"].proposal_boxes.tensor, expected, atol=1e-3)
    assert out["image_labels"].tolist() == [0.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="INPUT.VIEWS.NUM_SCALES"):
        MultiViewWSODDatasetMapper(tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "3"}))


def test_photometric_augmentation_moves_pixels_not_boxes(record):
    fixed = {
        "INPUT.VIEWS.NUM_SCALES": "1",
        "INPUT.MIN_SIZE_TRAIN": "(48,)",
        "INPUT.VIEWS.NUM_PROPOSALS": "0",
    }
    plain = multiview_batch(tiny_casd_cfg(fixed), record, n=1)[0]
    photometric = {
        "INPUT.PHOTOMETRIC.ENABLED": "True",
        "INPUT.PHOTOMETRIC.BRIGHTNESS": "(0.5, 0.6)",
    }
    cfg = tiny_casd_cfg({**fixed, **photometric})
    changed = [multiview_batch(cfg, record, n=1, seed=s)[0] for s in range(4)]
    assert any(not torch.equal(c["views"][0]["image"], plain["views"][0]["image"]) for c in changed)
    for c in changed:
        for view, plain_view in zip(c["views"], plain["views"]):
            got, want = view["proposals"].proposal_boxes, plain_view["proposals"].proposal_boxes
            assert torch.equal(got.tensor, want.tensor)


def test_all_switches_off_equals_refinement_baseline(record):
    """One unflipped view, CASD off: CASDRCNN + CASDROIHeads give RefinementROIHeads' losses."""
    cfg = tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "1", "INPUT.VIEWS.FLIP": "False"})
    torch.manual_seed(0)
    casd = build_model(cfg).train()
    base_cfg = cfg.clone()
    base_cfg.merge_from_list(
        ["MODEL.META_ARCHITECTURE", "WSODRCNN", "MODEL.ROI_HEADS.NAME", "RefinementROIHeads"]
    )
    base = build_model(base_cfg).train()
    base.load_state_dict(casd.state_dict())
    batch = multiview_batch(cfg, record)
    single = [
        {
            "image": x["views"][0]["image"],
            "proposals": x["views"][0]["proposals"],
            "image_labels": x["image_labels"],
        }
        for x in batch
    ]
    got, _ = losses_with_storage(casd, batch)
    want, _ = losses_with_storage(base, single)
    assert sorted(got) == sorted(want) == ["loss_mil", "loss_refine1", "loss_refine2"]
    for name in want:
        assert got[name].item() == pytest.approx(want[name].item(), rel=1e-5, abs=1e-7), name
        # ContextLocNet's negative RoI scores never make a refinement loss negative.
        assert want[name].item() >= 0


def test_each_casd_term_reaches_the_backbone(record):
    cfg = tiny_casd_cfg(
        {
            "INPUT.VIEWS.NUM_SCALES": "1",
            "MODEL.CASD.IW_WEIGHT": "0.1",
            "MODEL.CASD.LW_WEIGHT": "0.1",
        }
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = multiview_batch(cfg, record)
    first_conv = model.backbone.features[0].weight
    for term in ("loss_casd_iw", "loss_casd_lw"):
        model.zero_grad()
        losses, storage = losses_with_storage(model, batch)
        assert losses[term].item() > 0
        raw = storage.latest()[f"raw/{term}"][0]
        assert losses[term].item() == pytest.approx(0.1 * raw, rel=1e-5)
        losses[term].backward()
        assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0, term


def test_inverted_attention_masks_configured_cells_and_share(record, monkeypatch):
    cfg = tiny_casd_cfg(
        {
            "INPUT.VIEWS.NUM_SCALES": "1",
            "MODEL.CASD.IA.ENABLED": "True",
            "MODEL.CASD.IA.MIN_DROP": "-1.0",
            "MODEL.CASD.IA.TOP_CELLS": "(20, 29)",
            "MODEL.CASD.IA.DROP_CELLS": "(7, 20)",
            "MODEL.CASD.IA.FG_FRACTION": "(0.25, 0.2)",
            "MODEL.CASD.IA.BG_FRACTION": "(0.1, 0.05)",
        }
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = multiview_batch(cfg, record)
    calls, mil_inputs = [], []
    real_mask, real_select = casd_heads.inverted_attention_mask, casd_heads.select_ia_rois

    def spy_mask(*args, **kwargs):
        mask = real_mask(*args, **kwargs)
        calls.append({"mask": mask})
        return mask

    def spy_select(before, after, is_fg, **kwargs):
        selected = real_select(before, after, is_fg, **kwargs)
        calls[-1].setdefault("per_image", []).append((is_fg, selected))
        return selected

    monkeypatch.setattr(casd_heads, "inverted_attention_mask", spy_mask)
    monkeypatch.setattr(casd_heads, "select_ia_rois", spy_select)
    model.roi_heads.mil_head.register_forward_hook(lambda m, inp, out: mil_inputs.append(inp[0]))
    losses_with_storage(model, batch)
    # 2 stages x 2 views, each mask over 2 images x CASD_TEST_PROPOSALS RoIs of 7 x 7 cells
    assert len(calls) == 4
    for call in calls:
        zeros = (call["mask"] == 0).flatten(1).sum(1)
        assert zeros.tolist() == [7] * (2 * CASD_TEST_PROPOSALS)
        for is_fg, selected in call["per_image"]:
            n_fg = int(is_fg.sum())
            want = int(np.floor(n_fg * 0.25 + 0.5)) + int(np.floor((len(is_fg) - n_fg) * 0.1 + 0.5))
            assert int(selected.sum()) == want
    # The MIL head sees the same features with IA on and off.
    off = build_model(tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "1"})).train()
    off.load_state_dict(model.state_dict())
    ia_inputs = list(mil_inputs)
    mil_inputs.clear()
    off.roi_heads.mil_head.register_forward_hook(lambda m, inp, out: mil_inputs.append(inp[0]))
    losses_with_storage(off, batch)
    assert len(ia_inputs) == len(mil_inputs) == 2
    for a, b in zip(ia_inputs, mil_inputs):
        assert torch.equal(a, b)
    # IA.CANDIDATES caps the RoIs ranked per image: at most 2 foreground + 3 others.
    calls.clear()
    model.roi_heads.ia_candidates = [2, 3]
    losses_with_storage(model, batch)
    for call in calls:
        assert 0 < call["mask"].shape[0] <= 2 * 5
        assert all(len(selected) <= 5 for _, selected in call["per_image"])


def test_ia_gradient_through_fc6_weight_equals_full_gradient():
    cfg = tiny_casd_cfg()
    torch.manual_seed(0)
    heads = build_model(cfg).roi_heads.eval()
    assert isinstance(heads.box_head, VGGFCHead)
    stage = heads.stages[0]
    feats = torch.randn(6, 16, 7, 7)
    y = torch.tensor([0, 1, 4, 2, 0, 3])

    def classifier(x):
        return stage(x)[0]

    # VGGFCHead's override: the gradient stops at fc6 and crosses it through its weight
    logits, cell_mean = heads.box_head.logits_and_cell_mean_grads(feats, classifier, y)
    # reference: the full input gradient, averaged over cells
    x = feats.clone().requires_grad_()
    ref_logits = stage(heads.box_head(x))[0]
    (full,) = torch.autograd.grad(ref_logits.gather(1, y[:, None]).sum(), x)
    torch.testing.assert_close(logits, ref_logits.detach())
    torch.testing.assert_close(cell_mean, full.mean(dim=(2, 3), keepdim=True))
    # BoxHead's default, the full input gradient, on the same head: the same numbers
    generic_logits, generic_mean = BoxHead.logits_and_cell_mean_grads(
        heads.box_head, feats, classifier, y
    )
    torch.testing.assert_close(generic_logits, logits)
    torch.testing.assert_close(generic_mean, cell_mean)
    assert not feats.requires_grad


def test_ia_needs_a_box_head_with_the_boxhead_contract():
    cfg = tiny_casd_cfg(
        {
            "MODEL.CASD.IA.ENABLED": "True",
            "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
            "MODEL.ROI_BOX_HEAD.NUM_FC": "1",
        }
    )
    with pytest.raises(ValueError, match="needs a wsod_d2 BoxHead"):
        build_model(cfg)


def test_casd_rcnn_needs_multi_view_input(record):
    cfg = tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "1"})
    model = build_model(cfg).train()
    x = multiview_batch(cfg, record, n=1)[0]
    single = {
        "image": x["views"][0]["image"],
        "proposals": x["views"][0]["proposals"],
        "image_labels": x["image_labels"],
    }
    with pytest.raises(ValueError, match="multi-view inputs .*'views'.*INPUT.VIEWS.NUM_SCALES"):
        losses_with_storage(model, [single])
    # Test time is single-view inference.
    model.eval()
    with torch.no_grad():
        (out,) = model([{**single, "height": 60, "width": 80}])
    assert len(out["instances"]) > 0 and out["image_scores"].shape == (4,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_full_casd_trains_on_cuda(record):
    cfg = tiny_casd_cfg(
        {
            "MODEL.DEVICE": "cuda",
            "INPUT.VIEWS.NUM_SCALES": "2",
            "MODEL.CASD.IW_WEIGHT": "0.1",
            "MODEL.CASD.LW_WEIGHT": "0.1",
            "MODEL.CASD.IA.ENABLED": "True",
        }
    )
    model = build_model(cfg).train()
    losses, _ = losses_with_storage(model, multiview_batch(cfg, record))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_refinement_needs_nonnegative_contextlocnet_scores(record):
    with pytest.raises(ValueError, match="CONTEXT_ROI_SCORES"):
        build_model(tiny_casd_cfg({"MODEL.MIL.CONTEXT_ROI_SCORES": "raw"}))
    cfg = tiny_casd_cfg({"INPUT.VIEWS.NUM_SCALES": "1"})
    model = build_model(cfg).train()
    x = multiview_batch(cfg, record, n=1)[0]["views"][0]
    features = model.backbone(model.preprocess_image([x]).tensor)
    mil = model.roi_heads.mil_outputs(features, [x["proposals"]])
    # softmax over classes x softmax over RoIs: in [0, 1], each class summing to <= 1 over RoIs
    assert mil.roi_scores.min() >= 0 and mil.roi_scores.sum(0).max() <= 1 + 1e-6


def test_layer_wise_target_spans_views_and_layers(record):
    """LW with IW on: one target, the max over every view and layer (conv5 from the heads' own
    pooled features, the other layers pooled from their backbone outputs)."""
    cfg = tiny_casd_cfg(
        {
            "INPUT.VIEWS.NUM_SCALES": "1",
            "MODEL.CASD.IW_WEIGHT": "0.1",
            "MODEL.CASD.LW_WEIGHT": "0.1",
        }
    )
    model = build_model(cfg).train()
    heads, batch = model.roi_heads, multiview_batch(cfg, record)
    inputs = [[x["views"][v] for x in batch] for v in range(2)]
    features = [model.backbone(model.preprocess_image(i).tensor) for i in inputs]
    proposals = [[view["proposals"] for view in i] for i in inputs]
    views = [heads.mil_outputs(f, p) for f, p in zip(features, proposals)]
    got = heads.distillation_losses(views, features, proposals, [False, True])["loss_casd_lw"]
    assert "conv5" not in heads.lw_poolers  # the heads' own layer reuses their pooled features
    conv5 = torch.stack(
        [
            roi_attention_maps(heads.box_pooler([f["conv5"]], [p.proposal_boxes for p in props]))
            for f, props in zip(features, proposals)
        ]
    )
    layers = [heads._layer_maps(name, features, proposals) for name in ("conv3", "conv4")]
    layers.append(conv5)
    stacked = stack_view_layer_maps(layers, torch.tensor([False, True]), (7, 7))
    assert stacked.shape == (3 * 2, 2 * CASD_TEST_PROPOSALS, 7, 7)
    assert got.item() == pytest.approx(0.1 * layer_wise_distillation_loss(stacked).item(), rel=1e-5)
