from collections import OrderedDict

import pytest
import torch
from torch import nn

from wsod_d2.modeling.wsol.adl import ADL, insert_adl

# Two samples, two channels, 2 x 2. Channel means: sample 0 [[3, 0], [1, 2]] (max 3),
# sample 1 [[-1, 1], [1, 2]] (max 2).
X = torch.tensor(
    [
        [[[4.0, 0.0], [2.0, 2.0]], [[2.0, 0.0], [0.0, 2.0]]],
        [[[-1.0, 1.0], [1.0, 1.0]], [[-1.0, 1.0], [1.0, 3.0]]],
    ]
)
MEAN = torch.tensor([[[[3.0, 0.0], [1.0, 2.0]]], [[[-1.0, 1.0], [1.0, 2.0]]]])
# threshold 0.8: sample 0 drops a >= 2.4, sample 1 drops a >= 1.6.
DROP = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])


def test_drop_mask_and_importance_map():
    adl = ADL(drop_rate=0.75, threshold=0.8)
    torch.testing.assert_close(adl.drop_mask(X), DROP)
    torch.testing.assert_close(adl.importance_map(X), torch.sigmoid(MEAN))
    # threshold 0.5: sample 0 drops a >= 1.5 (3 and 2), sample 1 drops a >= 1 (1, 1, 2).
    expected = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    torch.testing.assert_close(ADL(threshold=0.5).drop_mask(X), expected)


def test_extreme_drop_rates_pick_one_branch():
    torch.testing.assert_close(ADL(drop_rate=1.0)(X), X * DROP)
    torch.testing.assert_close(ADL(drop_rate=0.0)(X), X * torch.sigmoid(MEAN))


def test_one_draw_per_batch_seeded():
    adl = ADL(drop_rate=0.75, generator=torch.Generator().manual_seed(7))
    dropped, kept = X * DROP, X * torch.sigmoid(MEAN)
    branches = []
    for _ in range(400):
        out = adl(X)
        is_drop = [torch.equal(out[i], dropped[i]) for i in range(2)]
        is_keep = [torch.equal(out[i], kept[i]) for i in range(2)]
        assert is_drop == [True, True] or is_keep == [True, True]
        branches.append(is_drop[0])
    assert 0.65 < sum(branches) / len(branches) < 0.85
    replay = ADL(drop_rate=0.75, generator=torch.Generator().manual_seed(7))
    assert [torch.equal(replay(X), dropped) for _ in range(400)] == branches


def test_eval_is_identity():
    adl = ADL(drop_rate=1.0).eval()
    out = adl(X)
    assert out is X
    assert torch.equal(out, X)


def test_bad_arguments():
    with pytest.raises(ValueError, match="drop_rate"):
        ADL(drop_rate=1.5)
    with pytest.raises(ValueError, match="threshold"):
        ADL(threshold=-0.1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ADL().drop_mask(torch.zeros(2, 3))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv(x) + 0.0


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()),
            block=_Block(),
        )
    )


def test_insert_adl_runs_on_outputs_and_keeps_state_dict():
    net = _net()
    keys = list(net.state_dict())
    reference = _net()
    inserted = insert_adl(net, ["features", "block", "features.1"], drop_rate=1.0, threshold=0.8)
    assert set(inserted) == {"features", "block", "features.1"}
    assert list(net.state_dict()) == keys

    net.eval()
    reference.eval()
    x = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(net(x), reference(x))

    net.train()
    assert all(adl.training for adl in inserted.values())
    adl = ADL(drop_rate=1.0, threshold=0.8)
    relu = reference.features(x)
    relu = adl(adl(relu))  # once after features.1, once after the features Sequential
    torch.testing.assert_close(net(x), adl(reference.block(relu)))


def test_insert_adl_errors():
    with pytest.raises(KeyError, match=r"layer9.*valid positions: features, features\.0"):
        insert_adl(_net(), ["layer9"])
    net = _net()
    insert_adl(net, ["block"])
    with pytest.raises(ValueError, match="inserted twice"):
        insert_adl(net, ["block"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    adl = ADL(drop_rate=1.0)
    torch.testing.assert_close(adl(X.cuda()).cpu(), X * DROP)
    torch.testing.assert_close(ADL(drop_rate=0.0)(X.cuda()).cpu(), X * torch.sigmoid(MEAN))
