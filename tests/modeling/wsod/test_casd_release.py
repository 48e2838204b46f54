"""CASD's released recipe as switches of the refinement and CASD heads: stage-1-only test, the
sampled supervision inside the heads, per-view labels, joint IA ranking over views, stage chaining
on unmasked features, and the refinement classifiers' learning-rate factors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from wsod_d2 import add_wsod_config
from wsod_d2.modeling.wsod import casd_heads
from wsod_d2.solver.build import build_optimizer
from wsod_d2.testing import (
    REPO_ROOT,
    casd_test_record,
    losses_with_storage,
    multiview_batch,
    tiny_casd_cfg,
)

RELEASE = {
    "MODEL.REFINEMENT.SAMPLE.ENABLED": "True",
    "MODEL.REFINEMENT.SAMPLE.NUM_FG": "3",
    "MODEL.REFINEMENT.SAMPLE.NUM_BG": "5",
    "MODEL.REFINEMENT.BOX_REG": "True",
    "MODEL.REFINEMENT.REG_TARGET": "neighbour_mean",
}


@pytest.fixture
def record(tmp_path):
    return casd_test_record(tmp_path)


def test_per_view_labels_differ_from_view_mean(record):
    cfg = tiny_casd_cfg({"MODEL.REFINEMENT.VIEW_LABELS": "per_view"})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = multiview_batch(cfg, record)
    seen = []
    real = model.roi_heads.supervision.image_targets

    def spy(boxes, scores, image_labels, box_reg):
        seen.append(scores.clone())
        return real(boxes, scores, image_labels, box_reg)

    model.roi_heads.supervision.image_targets = spy
    losses_with_storage(model, batch)
    # 2 stages x 2 views x 2 images, each view's own scores
    assert len(batch[0]["views"]) == 2 and len(seen) == 2 * 2 * 2
    assert not torch.allclose(seen[0], seen[2])
    seen.clear()
    model.roi_heads.view_labels = "mean"
    losses_with_storage(model, batch)
    assert len(seen) == 2 * 2


def _spy_ia(monkeypatch):
    calls = []
    real = casd_heads.select_ia_rois

    def spy(before, after, is_fg, **kwargs):
        calls.append(len(before))
        return real(before, after, is_fg, **kwargs)

    monkeypatch.setattr(casd_heads, "select_ia_rois", spy)
    return calls


def test_ia_ranks_the_sampled_rois_over_all_views(record, monkeypatch):
    options = {**RELEASE, "MODEL.CASD.IA.ENABLED": "True", "MODEL.CASD.IA.MIN_DROP": "-1.0"}
    cfg = tiny_casd_cfg(
        {**options, "MODEL.CASD.IA.RANK_OVER_VIEWS": "True", "INPUT.VIEWS.NUM_SCALES": "2"}
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = multiview_batch(cfg, record)
    calls = _spy_ia(monkeypatch)
    sizes = []
    real_measure = model.roi_heads._ia_measure

    def measure(stage, view, targets, *args):
        out = real_measure(stage, view, targets, *args)
        # the candidates are exactly the view's sampled RoIs, never ignored ones
        assert out["counts"] == [len(t.sample) for t in targets]
        sizes.append(out["counts"])
        return out

    model.roi_heads._ia_measure = measure
    selected, erased = [], []
    spied = casd_heads.select_ia_rois

    def select(*args, **kwargs):
        selected.append(spied(*args, **kwargs))
        return selected[-1]

    monkeypatch.setattr(casd_heads, "select_ia_rois", select)
    real_erase = model.roi_heads._erase

    def erase(view, measured, chosen):
        erased.append(chosen)
        return real_erase(view, measured, chosen)

    model.roi_heads._erase = erase
    losses_with_storage(model, batch)
    # per stage: the V views measured, then one ranking per image over all V views' candidates
    v = len(batch[0]["views"])
    assert v == 4 and len(sizes) == 2 * v and len(calls) == 2 * 2
    for stage in range(2):
        per_view = sizes[v * stage : v * stage + v]
        for image in range(2):
            assert calls[2 * stage + image] == sum(c[image] for c in per_view)
        # each view is masked with its own part of each image's joint selection
        parts = [
            selected[2 * stage + image].split([c[image] for c in per_view]) for image in range(2)
        ]
        for view in range(v):
            expected = torch.cat([parts[image][view] for image in range(2)])
            assert torch.equal(erased[v * stage + view], expected)
    del model.roi_heads._erase
    # view by view: one ranking per view and image
    calls.clear()
    model.roi_heads.ia_rank_over_views = False
    losses_with_storage(model, batch)
    assert len(calls) == 2 * v * 2


def test_joint_ranking_keeps_the_largest_drops_over_views():
    before = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    after = torch.tensor([0.1, 0.8, 0.85, 0.2, 0.3, 0.88])  # views: [0:3], [3:6]
    fg = torch.ones(6, dtype=torch.bool)
    joint = casd_heads.select_ia_rois(before, after, fg, fg_fraction=1 / 3, bg_fraction=0.0)
    # 6 foreground RoIs over both views at 1/3: the 2 largest drops, RoI 0 and RoI 3
    assert joint.nonzero()[:, 0].tolist() == [0, 3]
    per_view = [
        casd_heads.select_ia_rois(b, a, f, fg_fraction=1 / 3, bg_fraction=0.0)
        for b, a, f in zip(before.split(3), after.split(3), fg.split(3))
    ]
    assert torch.cat(per_view).nonzero()[:, 0].tolist() == [0, 3]
    after[3] = 0.86  # view 2's best drop is now small: jointly RoI 4 (drop 0.6) wins it
    joint = casd_heads.select_ia_rois(before, after, fg, fg_fraction=1 / 3, bg_fraction=0.0)
    assert joint.nonzero()[:, 0].tolist() == [0, 4]


def test_stage_chaining_on_unmasked_features(record):
    options = {**RELEASE, "MODEL.CASD.IA.ENABLED": "True", "MODEL.CASD.IA.MIN_DROP": "-1.0"}
    cfg = tiny_casd_cfg({**options, "MODEL.CASD.IA.CHAIN_UNMASKED": "True"})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = multiview_batch(cfg, record)
    heads = model.roi_heads
    chained = []
    real = heads.chained_scores

    def spy(stage, view, x, logits):
        out = real(stage, view, x, logits)
        chained.append((out, F.softmax(stage(view.x)[0], dim=1)[:, 1:], x is view.x))
        return out

    heads.chained_scores = spy
    losses_with_storage(model, batch)
    for out, unmasked, same in chained:
        assert not same  # IA changed the inputs
        assert torch.allclose(out, unmasked.detach(), atol=1e-6)
    chained.clear()
    heads.ia_chain_unmasked = False
    losses_with_storage(model, batch)
    assert any(
        not torch.allclose(out, unmasked.detach(), atol=1e-6) for out, unmasked, _ in chained
    )


def test_release_learning_rates_reach_exactly_the_refinement_classifiers():
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(f"{REPO_ROOT}/configs/Synthetic/casd/release.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "SOLVER.OPTIMIZER", "SGD"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    base = cfg.SOLVER.BASE_LR
    checked = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        bias = name.endswith("bias")
        factor = 2.0 if bias else 1.0
        if name.startswith("roi_heads.stages.") and ".cls_score." in name:
            factor *= 10.0
            checked += 1
        assert np.isclose(lr_of[id(param)], base * factor), name
        if bias:
            assert decay_of[id(param)] == 0.0, name
    assert checked == 4  # weight and bias of both stages' classifiers
