"""Ring pooling on hand-made feature maps, and the ContextLocNet contrastive-S head by hand."""
import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from wsod_d2 import add_wsod_config
from wsod_d2.engine import WSODTrainer
from wsod_d2.modeling.wsod.context_pooling import RingPooler, ring_cell_mask, scale_boxes
from wsod_d2.modeling.wsod.contextlocnet import ContextLocNet
from wsod_d2.modeling.wsod.mil import WSDDN
from wsod_d2.modeling.wsod.roi_heads import WSODROIHeads
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG, tiny_cfg

RING = 1.8


def exact_pooler():
    """A 7x7 RoIAlign that reads feature pixel (i, j) into cell (i, j) of the box [0, 0, 7, 7]
    on a stride-1 map: one sample per bin, at the bin centre, which is a pixel centre."""
    return ROIPooler(output_size=7, scales=(1.0,), sampling_ratio=1, pooler_type="ROIAlignV2")


def feature_map():
    """(1, 2, 7, 7), channel 0: 1 + 7 i + j, channel 1: its negative plus 100 (all positive)."""
    base = 1.0 + torch.arange(49, dtype=torch.float32).reshape(7, 7)
    return torch.stack([base, 100.0 - base])[None]


def test_scale_boxes_about_centre():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 4.0], [2.0, 2.0, 4.0, 8.0]])
    # Centres (5, 2) and (3, 5); half sizes (5, 2) and (1, 3), times 1.8.
    expected = torch.tensor([[-4.0, -1.6, 14.0, 5.6], [1.2, -0.4, 4.8, 10.4]])
    assert torch.allclose(scale_boxes(boxes, 1.8), expected, atol=1e-6)


def test_ring_cell_mask_by_hand():
    # Outer box [0, 10] x [0, 10], 5 x 5 cells: centres at 1, 3, 5, 7, 9 on both axes.
    outer = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    # Box 0: inner x in [2, 6] (centres 3, 5), y in [4, 10] (centres 5, 7, 9).
    # Box 1: inner [3, 3, 5, 5]: centres 3 and 5 lie on its borders, which count as inside.
    inner = torch.tensor([[2.0, 4.0, 6.0, 10.0], [3.0, 3.0, 5.0, 5.0]])
    mask = ring_cell_mask(outer, inner, 5)
    expected = torch.ones(2, 5, 5, dtype=torch.bool)
    expected[0, 2:5, 1:3] = False
    expected[1, 1:3, 1:3] = False
    assert torch.equal(mask, expected)


def test_frame_ring_zeroes_the_central_cells():
    # Frame: outer x1.0 = [0, 7]^2, inner x1/1.8 = [1.556, 5.444]^2: centres 2.5, 3.5, 4.5 inside.
    pooler = RingPooler(exact_pooler(), outer_scale=1.0, inner_scale=1.0 / RING)
    out = pooler([feature_map()], [Boxes(torch.tensor([[0.0, 0.0, 7.0, 7.0]]))])
    expected = feature_map().clone()
    expected[:, :, 2:5, 2:5] = 0.0
    assert out.shape == (1, 2, 7, 7)
    assert torch.allclose(out, expected, atol=1e-5)


def test_context_ring_pools_the_box_scaled_up():
    # A box whose x1.8 scaling is [0, 7]^2: the context ring pools the whole map, minus the box
    # itself ([1.556, 5.444]^2), i.e. the same central 3x3 cells.
    half = 3.5 / RING
    box = torch.tensor([[3.5 - half, 3.5 - half, 3.5 + half, 3.5 + half]])
    pooler = RingPooler(exact_pooler(), outer_scale=RING, inner_scale=1.0)
    out = pooler([feature_map()], [Boxes(box)])
    expected = feature_map().clone()
    expected[:, :, 2:5, 2:5] = 0.0
    assert torch.allclose(out, expected, atol=1e-4)


def test_ring_on_a_batch_of_two_images():
    # Inner x0.75 of [0, 7]^2 is [0.875, 6.125]^2: centres 1.5 ... 5.5 inside, a 5x5 hole. Image 1
    # (features doubled) holds two boxes; each pooled cell must come from its own image.
    features = torch.cat([feature_map(), 2 * feature_map()])
    box = torch.tensor([[0.0, 0.0, 7.0, 7.0]])
    pooler = RingPooler(exact_pooler(), outer_scale=1.0, inner_scale=0.75)
    out = pooler([features], [Boxes(box), Boxes(box.repeat(2, 1))])
    expected = feature_map().clone()
    expected[:, :, 1:6, 1:6] = 0.0
    assert out.shape == (3, 2, 7, 7)
    assert torch.allclose(out, torch.cat([expected, 2 * expected, 2 * expected]), atol=1e-5)
    whole = RingPooler(exact_pooler(), outer_scale=1.0, inner_scale=0.0)
    assert torch.allclose(whole([features], [Boxes(box), Boxes(box)]), features, atol=1e-5)


def test_ring_pooler_rejects_inverted_ring():
    with pytest.raises(ValueError, match="inner_scale"):
        RingPooler(exact_pooler(), outer_scale=1.0, inner_scale=1.0)


def make_contextlocnet(margin=1.0):
    head = ContextLocNet(2, num_classes=2, margin=margin, loss_weight=1.0)
    with torch.no_grad():
        head.cls_score.weight.copy_(torch.eye(2))
        head.cls_score.bias.zero_()
        head.loc_score.weight.copy_(torch.eye(2))
        head.loc_score.bias.fill_(5.0)  # cancels in frame - context
    return head


def test_contextlocnet_scores_and_hinge_by_hand():
    head = make_contextlocnet()
    # Image 1: two RoIs, image 2: one RoI.
    x = torch.tensor([[2.0, -1.0], [0.5, 3.0], [1.0, 1.0]])
    frame = torch.tensor([[1.0, 0.0], [0.0, 0.0], [4.0, 4.0]])
    context = torch.tensor([[0.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    roi_scores, image_scores = head(x, [2, 1], frame=frame, context=context)
    e = math.e
    # L = frame - context: image 1 rows [1, 0] and [0, -2]; softmax over the 2 RoIs per class.
    loc = [[e / (e + 1), 1 / (1 + math.exp(-2))], [1 / (e + 1), math.exp(-2) / (1 + math.exp(-2))]]
    s1 = [[2.0 * loc[0][0], -1.0 * loc[0][1]], [0.5 * loc[1][0], 3.0 * loc[1][1]]]
    s2 = [[1.0, 1.0]]  # one RoI: the softmax over RoIs is 1
    assert torch.allclose(roi_scores, torch.tensor(s1 + s2), atol=1e-6)
    phi = [[s1[0][0] + s1[1][0], s1[0][1] + s1[1][1]], [1.0, 1.0]]
    assert torch.allclose(image_scores, torch.tensor(phi), atol=1e-6)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    signs = [[1, -1], [-1, 1]]
    hinge = [max(0.0, 1.0 - signs[b][c] * phi[b][c]) for b in range(2) for c in range(2)]
    loss = head.loss(image_scores, labels)
    assert loss.item() == pytest.approx(sum(hinge) / 4, rel=1e-5)
    assert hinge[2] == pytest.approx(2.0)  # a negative class scoring 1 costs 1 + 1


def tiny_context_cfg():
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(f"{REPO_ROOT}/{TINY_CONFIG}")
    cfg.merge_from_list(
        ["MODEL.DEVICE", "cpu", "MODEL.MIL.NAME", "ContextLocNet", "MODEL.ROI_HEADS.NUM_CLASSES", 3]
    )
    return cfg


def test_roi_heads_feed_frame_and_context_through_the_box_head():
    cfg = tiny_context_cfg()
    torch.manual_seed(0)
    heads = build_roi_heads(cfg, {"conv5": ShapeSpec(channels=128, stride=8)}).eval()
    assert heads.frame_pooler.inner_scale == pytest.approx(1 / RING)
    assert heads.context_pooler.outer_scale == pytest.approx(RING)
    features = {"conv5": torch.rand(1, 128, 12, 16)}
    proposals = Instances((96, 128))
    proposals.proposal_boxes = Boxes(torch.tensor([[8.0, 8.0, 60.0, 50.0], [40, 20, 120, 90]]))
    with torch.no_grad():
        mil = heads.mil_outputs(features, [proposals])
        x, roi_scores, image_scores = mil.x, mil.roi_scores, mil.image_scores
        maps, boxes = [features["conv5"]], [proposals.proposal_boxes]
        frame = heads.box_head(heads.frame_pooler(maps, boxes))
        context = heads.box_head(heads.context_pooler(maps, boxes))
        expected = heads.mil_head(x, [2], frame=frame, context=context)
    assert not torch.allclose(frame, context)
    assert torch.equal(roi_scores, expected[0]) and torch.equal(image_scores, expected[1])


def test_context_head_without_ring_poolers_is_refused():
    cfg = tiny_context_cfg()
    heads = build_roi_heads(cfg, {"conv5": ShapeSpec(channels=128, stride=8)})
    with pytest.raises(ValueError, match="ContextLocNet needs context"):
        WSODROIHeads(
            in_features=["conv5"],
            box_pooler=heads.box_pooler,
            box_head=heads.box_head,
            mil_head=heads.mil_head,
            test_score_thresh=0.0,
            test_nms_thresh=0.3,
            test_topk_per_image=10,
        )
    wsddn = WSDDN(cfg, heads.box_head.output_shape.channels)
    assert not wsddn.needs_context and wsddn.nonnegative_roi_scores


def test_contextlocnet_trains_and_evaluates_with_raw_scores(tiny_voc, tmp_path):
    # Its scores may be negative: the configs keep every detection (no score threshold).
    # fmt: off
    cfg = tiny_cfg(
        tiny_voc,
        tmp_path,
        "MODEL.MIL.NAME", "ContextLocNet",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", -1e30,
        "SOLVER.MAX_ITER", 2,
        "TEST.EVALUATORS", ("voc", "corloc"),
    )
    # fmt: on
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    with EventStorage():
        results = WSODTrainer.test(cfg, trainer.model)
    for name in cfg.DATASETS.TEST:
        assert 0.0 <= results[name]["bbox"]["AP50"] <= 100.0
        assert 0.0 <= results[name]["corloc"]["CorLoc"] <= 100.0
