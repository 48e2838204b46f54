"""OutputReplay: replayed modules return their recorded outputs, keep the graph before them."""
import pytest
import torch
import torch.nn as nn

from wsod_d2.benchmarks.replay import OutputReplay


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True), nn.Linear(3, 2))


def test_replayed_step_computes_the_recorded_values_and_reaches_the_input():
    net = _net()
    x = torch.randn(5, 4, requires_grad=True)
    replay = OutputReplay({"fc": net[0]})
    with replay.recording():
        expected = net(x)
    with replay.replaying():
        net[0].weight.data.zero_()  # a replayed layer's own computation no longer matters
        replay.rewind()
        out = net(x)
        out.sum().backward()
    assert torch.equal(out, expected)
    assert torch.equal(x.grad, torch.zeros_like(x))  # the backward ran through to the input
    assert net[0].weight.grad is None  # but not through the replayed layer
    assert "forward" not in vars(net[0])  # the class's forward is back


def test_a_step_on_another_path_is_refused():
    net = _net()
    replay = OutputReplay({"fc": net[0]})
    with replay.recording():
        net(torch.randn(5, 4))
    with replay.replaying(), pytest.raises(
        RuntimeError, match="input \\(6, 4\\), recorded \\(5, 4\\)"
    ):
        net(torch.randn(6, 4))
    with replay.replaying():
        net(torch.randn(5, 4))
        with pytest.raises(RuntimeError, match="call 1 of fc has input"):
            net(torch.randn(5, 4))


def test_a_leaf_output_of_an_input_without_grad_keeps_requiring_grad():
    backbone = nn.Conv2d(3, 2, 1)
    replay = OutputReplay({"backbone": backbone})
    image = torch.rand(1, 3, 4, 4)
    with replay.recording():
        backbone(image)
    with replay.replaying():
        assert backbone(image).requires_grad
