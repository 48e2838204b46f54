"""Proposal jitter at test time (TEST.AUG.PROPOSAL_JITTER): its ranges and clipping, its seeding,
and TTA's per-proposal averages over the passes' jittered boxes, with a hand-made model."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from detectron2.structures import Boxes, Instances

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.modeling.wsod.proposal_jitter import ProposalJitter, jitter_boxes
from wsod_d2.modeling.wsod.tta import WSODRCNNWithTTA, boxes_to_original

SCALE, SHIFT = (0.95, 1.15), 0.05
HEIGHT, WIDTH = 40, 60
PROPOSALS = torch.tensor(
    [
        [4.0, 6.0, 30.0, 20.0],
        [20.0, 10.0, 55.0, 38.0],
        [0.0, 0.0, 60.0, 40.0],
        [40.0, 2.0, 59.0, 12.5],
        [10.0, 25.0, 24.0, 39.0],
    ]
)


def draw(boxes, image_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return jitter_boxes(
        boxes, image_size, scale_range=SCALE, center_shift=SHIFT, generator=generator
    )


def scales_and_shifts(before, after):
    """(scale of the width, scale of the height, dx, dy) of each box's jitter, unclipped boxes."""
    size0, size1 = before[:, 2:] - before[:, :2], after[:, 2:] - after[:, :2]
    center0, center1 = (before[:, :2] + before[:, 2:]) / 2, (after[:, :2] + after[:, 2:]) / 2
    scale = size1 / size0
    shift = (center1 - center0) / size0
    return scale[:, 0], scale[:, 1], shift[:, 0], shift[:, 1]


def test_jitter_ranges_over_many_draws():
    # A 100 x 50 box in the middle of a 1000 x 1000 image is never clipped.
    boxes = torch.tensor([[450.0, 475.0, 550.0, 525.0]], dtype=torch.float64).repeat(20000, 1)
    sw, sh, dx, dy = scales_and_shifts(boxes, draw(boxes, (1000, 1000)))
    # One factor for both sides, within [0.95, 1.15], both ends approached.
    assert torch.allclose(sw, sh)
    assert sw.min() >= 0.95 and sw.max() <= 1.15
    assert sw.min() < 0.951 and sw.max() > 1.149
    # Centre shifts within +-5% of the box's own width / height, both ends approached.
    for shift in (dx, dy):
        assert shift.abs().max() <= SHIFT + 1e-9
        assert shift.min() < -0.049 and shift.max() > 0.049
    # dx and dy are separate draws.
    assert torch.corrcoef(torch.stack([dx, dy]))[0, 1].abs() < 0.05


def test_jittered_boxes_are_clipped_to_the_image():
    # Boxes touching the borders: growing them or shifting them out is cut at [0, W] x [0, H].
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [30.0, 20.0, 60.0, 40.0]]).repeat(500, 1)
    out = draw(boxes, (HEIGHT, WIDTH))
    assert out[:, 0::2].min() == 0 and out[:, 0::2].max() == WIDTH
    assert out[:, 1::2].min() == 0 and out[:, 1::2].max() == HEIGHT
    assert (out[:, 2:] > out[:, :2]).all()


def test_seeded_draws_reproduce_and_differ_between_calls():
    assert torch.equal(draw(PROPOSALS, (HEIGHT, WIDTH), 1), draw(PROPOSALS, (HEIGHT, WIDTH), 1))
    assert not torch.equal(draw(PROPOSALS, (HEIGHT, WIDTH), 1), draw(PROPOSALS, (HEIGHT, WIDTH), 2))
    jitter = ProposalJitter(scale_range=SCALE, center_shift=SHIFT, seed=7)
    generator = jitter.generator("000005")
    first = jitter(PROPOSALS, (HEIGHT, WIDTH), generator)
    second = jitter(PROPOSALS, (HEIGHT, WIDTH), generator)
    assert not torch.equal(first, second)
    # A fresh generator of the same image gives the same sequence; another image another one.
    again = jitter.generator("000005")
    assert torch.equal(jitter(PROPOSALS, (HEIGHT, WIDTH), again), first)
    other = jitter(PROPOSALS, (HEIGHT, WIDTH), jitter.generator("000007"))
    assert not torch.equal(other, first)
    with pytest.raises(ValueError, match="image_id"):
        jitter.generator(None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_jitter_on_cuda_equals_cpu():
    cpu = draw(PROPOSALS, (HEIGHT, WIDTH), 3)
    cuda = draw(PROPOSALS.cuda(), (HEIGHT, WIDTH), 3)
    assert cuda.device.type == "cuda"
    assert torch.allclose(cuda.cpu(), cpu)


def test_config_switch_and_its_checks():
    cfg = get_wsod_cfg(freeze=False)
    assert ProposalJitter.from_config(cfg) is None
    cfg.TEST.AUG.PROPOSAL_JITTER.ENABLED = True
    jitter = ProposalJitter.from_config(cfg)
    assert jitter.scale_range == SCALE and jitter.center_shift == SHIFT and jitter.seed == 0
    with pytest.raises(ValueError, match="PROPOSAL_JITTER.SCALE"):
        ProposalJitter(scale_range=(1.2, 1.1), center_shift=SHIFT, seed=0)
    with pytest.raises(ValueError, match="PROPOSAL_JITTER.CENTER_SHIFT"):
        ProposalJitter(scale_range=SCALE, center_shift=-0.1, seed=0)
    with pytest.raises(ValueError, match="PROPOSAL_JITTER.SEED"):
        ProposalJitter(scale_range=SCALE, center_shift=SHIFT, seed=-1)


class RecordingHeads:
    """Scores each proposal by its box alone (relative area, (R, 2)) and records each pass's
    proposals and what TTA hands to detections()."""

    def __init__(self):
        self.passes = []
        self.averaged = None

    def predict(self, features, proposals):
        (p,) = proposals
        boxes = p.proposal_boxes.tensor.clone()
        self.passes.append((boxes, p.image_size))
        h, w = p.image_size
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (h * w)
        return [boxes], [torch.stack([area, 1 - area], 1)], [torch.zeros(2)]

    def detections(self, boxes, scores, proposals):
        self.averaged = (boxes[0], scores[0])
        out = Instances(proposals[0].image_size)
        out.pred_boxes = Boxes(boxes[0].clone())
        out.scores = scores[0][:, 0]
        return [out]


class RecordingModel(nn.Module):
    """Stands in for a WSODRCNN: no backbone, the heads above."""

    def __init__(self):
        super().__init__()
        self.roi_heads = RecordingHeads()
        self.device = torch.device("cpu")

    def preprocess_image(self, inputs):
        return SimpleNamespace(tensor=inputs[0]["image"][None].float())

    def backbone(self, images):
        return {}


def run_tta(jitter, image_id="000005"):
    model = RecordingModel().eval()
    mapper = WSODDatasetMapper(
        False,
        augmentations=[],
        image_format="RGB",
        num_classes=2,
        proposal_topk=None,
        proposal_min_size=0.0,
        proposal_dedup_scale=0.0,
    )
    tta = WSODRCNNWithTTA(
        model, mapper=mapper, min_sizes=(32, 48), max_size=200, flip=True, jitter=jitter
    )
    proposals = Instances((HEIGHT, WIDTH))
    proposals.proposal_boxes = Boxes(PROPOSALS.clone())
    proposals.objectness_logits = torch.zeros(len(PROPOSALS))
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8)
    inp = {"image": image, "proposals": proposals, "height": HEIGHT, "width": WIDTH}
    tta([{**inp, "image_id": image_id}])
    # The passes' proposals without jitter, for comparison.
    logits = proposals.objectness_logits.numpy()
    plain = [
        mapper.map_view(image.permute(1, 2, 0).numpy(), PROPOSALS.numpy(), logits, augs)[1]
        for augs, _ in tta.passes(WIDTH)
    ]
    flips = [flipped for _, flipped in tta.passes(WIDTH)]
    return model.roi_heads, [p.proposal_boxes.tensor for p in plain], flips


def to_original(passes, flips):
    return [
        boxes_to_original(boxes, size, (HEIGHT, WIDTH), flipped)
        for (boxes, size), flipped in zip(passes, flips)
    ]


def test_tta_without_jitter_scores_the_proposals_themselves():
    heads, plain, flips = run_tta(None)
    assert len(heads.passes) == 4
    for (boxes, _), expected in zip(heads.passes, plain):
        assert torch.equal(boxes, expected)
    assert torch.allclose(heads.averaged[0], PROPOSALS, atol=1e-4)


def test_tta_with_jitter_averages_each_proposal_over_the_passes_jittered_boxes():
    jitter = ProposalJitter(scale_range=SCALE, center_shift=SHIFT, seed=0)
    heads, plain, flips = run_tta(jitter)
    assert len(heads.passes) == 4
    # Each pass scored its own jitter of every proposal, in the pass's frame.
    for (boxes, (h, w)), unjittered in zip(heads.passes, plain):
        assert not torch.allclose(boxes, unjittered)
        assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= w
        assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= h
        # Boxes that are not clipped keep their jitter's ranges.
        unclipped = (boxes[:, :2] > 0).all(1) & (boxes[:, 2] < w) & (boxes[:, 3] < h)
        sw, sh, dx, dy = scales_and_shifts(unjittered[unclipped], boxes[unclipped])
        assert torch.allclose(sw, sh, atol=1e-4)
        assert sw.min() >= 0.95 - 1e-4 and sw.max() <= 1.15 + 1e-4
        assert dx.abs().max() <= SHIFT + 1e-4 and dy.abs().max() <= SHIFT + 1e-4
    originals = to_original(heads.passes, flips)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.allclose(originals[a], originals[b], atol=1e-3)
    # What TTA post-processes: per proposal, the mean over the passes of the jittered boxes
    # (mapped back) and of the scores the model gave them.
    mean_boxes, mean_scores = heads.averaged
    assert torch.allclose(mean_boxes, torch.stack(originals).mean(0), atol=1e-4)
    pass_scores = []
    for boxes, (h, w) in heads.passes:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (h * w)
        pass_scores.append(torch.stack([area, 1 - area], 1))
    assert torch.allclose(mean_scores, torch.stack(pass_scores).mean(0), atol=1e-6)
    # The same seed and image id give the same evaluation; another image id another jitter.
    again, _, _ = run_tta(ProposalJitter(scale_range=SCALE, center_shift=SHIFT, seed=0))
    assert torch.equal(again.averaged[0], mean_boxes)
    other, _, _ = run_tta(jitter, image_id="000007")
    assert not torch.allclose(other.averaged[0], mean_boxes)
