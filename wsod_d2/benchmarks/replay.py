"""Stand-ins for the sub-networks a training step is timed without (the backbone, fc6/fc7): each
module's outputs are recorded during one real step, then the module's forward is replaced by one
that returns the recorded outputs, call by call. The rest of the step (RoI pooling, the MIL head,
refinement, pseudo labels, CASD's attention, the losses, forward and backward) then runs on the
same values as in the real step, at its own cost, on any device."""
import contextlib
from typing import Dict, List, Union

import torch
import torch.nn as nn

__all__ = ["OutputReplay"]

Output = Union[torch.Tensor, Dict[str, torch.Tensor]]


def _map_output(output: Output, fn):
    """Apply ``fn`` to a module output: a tensor or a dict of tensors (a backbone's)."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, dict) and all(isinstance(v, torch.Tensor) for v in output.values()):
        return {k: fn(v) for k, v in output.items()}
    raise TypeError(f"can only replay a tensor or a dict of tensors, got {type(output).__name__}")


def _recorded(t: torch.Tensor) -> torch.Tensor:
    # a copy (the step may modify the output in place afterwards: VGGFCHead's in-place ReLU) that
    # remembers whether the output took part in autograd
    return t.detach().clone().requires_grad_(t.requires_grad)


class _Replayed(torch.autograd.Function):
    """Returns a copy of a recorded output; its backward gives the input a zero gradient, so the
    ops before the module (RoI pooling, Grad-CAM's input) still run their backward, while the
    module's own (fc6's dX = dY W, its weight gradient) is skipped."""

    @staticmethod
    def forward(ctx, x, value):
        ctx.input_shape, ctx.input_dtype = x.shape, x.dtype
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.new_zeros(ctx.input_shape, dtype=ctx.input_dtype), None


def _replayed(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A fresh copy of the recorded ``t`` each call (the step's in-place ops may touch it),
    attached to the graph as the module's output was: through its input ``x``, else as a leaf
    (a backbone's input, the image, needs no gradient though its output did)."""
    value = t.detach()
    if not (t.requires_grad and torch.is_grad_enabled()):
        return value.clone()
    if x.requires_grad:
        return _Replayed.apply(x, value)
    return value.requires_grad_().clone()


class OutputReplay:
    """Records the outputs of named modules during a step and replays them in later steps.

    Usage: ``with replay.recording(): step()``, then ``with replay.replaying(): step()`` any
    number of times; each replayed step must call the modules in the recorded order with inputs
    of the recorded shapes (a step seeded alike takes the same path), else RuntimeError.
    """

    def __init__(self, modules: Dict[str, nn.Module]):
        self.modules = dict(modules)
        self.calls: Dict[str, List] = {name: [] for name in self.modules}
        self._position: Dict[str, int] = {}

    @contextlib.contextmanager
    def recording(self):
        for calls in self.calls.values():
            calls.clear()
        handles = [
            module.register_forward_hook(self._record_hook(name))
            for name, module in self.modules.items()
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _record_hook(self, name: str):
        def hook(module, args, output):
            self.calls[name].append((tuple(args[0].shape), _map_output(output, _recorded)))

        return hook

    @contextlib.contextmanager
    def replaying(self):
        if not any(self.calls.values()):
            raise RuntimeError("OutputReplay: nothing recorded; run a step inside recording()")
        self._position = {name: 0 for name in self.modules}
        for name, module in self.modules.items():
            module.forward = self._stand_in(name)  # the instance attribute shadows the class's
        try:
            yield self
        finally:
            for module in self.modules.values():
                del module.forward

    def rewind(self) -> None:
        """Start a new step: the previous one must have replayed every recorded call."""
        for name, position in self._position.items():
            if position not in (0, len(self.calls[name])):
                raise RuntimeError(
                    f"OutputReplay: the step called {name} {position} times, "
                    f"{len(self.calls[name])} recorded"
                )
        self._position = dict.fromkeys(self._position, 0)

    def _stand_in(self, name: str):
        def forward(x, *args, **kwargs):
            position = self._position[name]
            calls = self.calls[name]
            if position >= len(calls) or tuple(x.shape) != calls[position][0]:
                recorded = calls[position][0] if position < len(calls) else "no call"
                raise RuntimeError(
                    f"OutputReplay: call {position} of {name} has input {tuple(x.shape)}, "
                    f"recorded {recorded}: the replayed step took another path than the "
                    "recorded one (seed each step alike)"
                )
            self._position[name] = position + 1
            return _map_output(calls[position][1], lambda t: _replayed(t, x))

        return forward
