import math

import pytest
import torch

from wsod_d2.modeling.wsol.csra import CSRA, MultiHeadCSRA

# Classifier rows w0 = [3, 4] (norm 5), w1 = [0, 2] (norm 2); three positions x = [1, 0], [0, 1],
# [1, 1] on a 1 x 3 grid. Normalised scores: s0 = [0.6, 0.8, 1.4], s1 = [0, 1, 1].
WEIGHT = torch.tensor([[3.0, 4.0], [0.0, 2.0]]).view(2, 2, 1, 1)
FEATURES = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).view(1, 2, 1, 3)
S0 = [0.6, 0.8, 1.4]
S1 = [0.0, 1.0, 1.0]


def _head(temperature, lam):
    head = CSRA(2, 2, temperature=temperature, lam=lam)
    with torch.no_grad():
        head.classifier.weight.copy_(WEIGHT)
    return head


def _softmax_att(scores, temperature):
    weights = [math.exp(temperature * s) for s in scores]
    return sum(w * s for w, s in zip(weights, scores)) / sum(weights)


def test_score_maps_are_normalised_by_class_weight_norm():
    maps = _head(1.0, 0.1).forward_maps(FEATURES)
    assert maps.shape == (1, 2, 1, 3)
    torch.testing.assert_close(maps[0, :, 0], torch.tensor([S0, S1]))


def test_infinite_temperature_is_base_plus_lam_max():
    logits = _head(math.inf, 0.5)(FEATURES)
    expected = torch.tensor([[2.8 / 3 + 0.5 * 1.4, 2.0 / 3 + 0.5 * 1.0]])
    torch.testing.assert_close(logits, expected)


def test_finite_temperature_matches_hand_softmax():
    for temperature in (1.0, 3.0):
        logits = _head(temperature, 0.2)(FEATURES)
        expected = torch.tensor(
            [
                [
                    sum(S0) / 3 + 0.2 * _softmax_att(S0, temperature),
                    sum(S1) / 3 + 0.2 * _softmax_att(S1, temperature),
                ]
            ]
        )
        torch.testing.assert_close(logits, expected)


def test_multi_head_sums_heads_with_schedule():
    model = MultiHeadCSRA(2, 2, num_heads=2, lam=0.5)
    assert [h.temperature for h in model.heads] == [1.0, math.inf]
    second = torch.tensor([[1.0, 0.0], [0.0, -1.0]]).view(2, 2, 1, 1)
    with torch.no_grad():
        model.heads[0].classifier.weight.copy_(WEIGHT)
        model.heads[1].classifier.weight.copy_(second)
    # Second head: s0 = x_0 = [1, 0, 1], s1 = -x_1 = [0, -1, -1]; T = inf takes the max.
    expected = torch.tensor(
        [
            [
                sum(S0) / 3 + 0.5 * _softmax_att(S0, 1.0) + 2.0 / 3 + 0.5 * 1.0,
                sum(S1) / 3 + 0.5 * _softmax_att(S1, 1.0) - 2.0 / 3 + 0.5 * 0.0,
            ]
        ]
    )
    torch.testing.assert_close(model(FEATURES), expected)
    maps = model.forward_maps(FEATURES)[0, :, 0]
    torch.testing.assert_close(maps, torch.tensor([[1.6, 0.8, 2.4], [0.0, 0.0, 0.0]]))


def test_head_counts_and_errors():
    assert [len(MultiHeadCSRA(4, 3, num_heads=n).heads) for n in (1, 2, 4, 6, 8)] == [1, 2, 4, 6, 8]
    assert MultiHeadCSRA(4, 3, num_heads=8).heads[-2].temperature == 7.0
    with pytest.raises(ValueError, match=r"\[1, 2, 4, 6, 8\]"):
        MultiHeadCSRA(4, 3, num_heads=3)
    with pytest.raises(ValueError, match="temperature"):
        CSRA(4, 3, temperature=0.0, lam=0.1)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        CSRA(4, 3, temperature=1.0, lam=0.1)(torch.zeros(1, 5, 2, 2))


def test_gradients_reach_classifier():
    model = MultiHeadCSRA(3, 2, num_heads=4)
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    assert all(h.classifier.weight.grad.abs().sum() > 0 for h in model.heads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = MultiHeadCSRA(8, 5, num_heads=6)
    x = torch.randn(2, 8, 7, 7)
    expected = model(x)
    torch.testing.assert_close(model.cuda()(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-5)
