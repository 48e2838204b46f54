"""ADL: attention-based dropout layer (Choe & Shim, CVPR 2019), and a helper to insert it.

In training, the self-attention map ``a`` (channel mean of the feature map F) yields two spatial
maps: the drop mask ``[a < threshold * max(a)]`` (max per sample), which erases the most
discriminative region, and the importance map ``sigmoid(a)``, which highlights it. One Bernoulli
draw per batch (not per sample) picks the drop mask with probability ``drop_rate``, otherwise the
importance map; the output is F times the chosen map, broadcast over channels. At eval ADL returns
its input unchanged (the very same tensor).

Choices:

- Defaults ``drop_rate=0.75`` (Table 1 of the paper: 75% drop mask / 25% importance map) and
  ``threshold=0.8``; the authors' files disagree on the threshold (0.8 / 0.9), so it is a
  parameter.
- The draw runs on the CPU (on ``generator``'s device when one is given) so picking the branch
  never synchronises an accelerator; seed it with a ``torch.Generator`` for reproducible runs.
- Positions, as ``insert_adl`` names for torchvision-indexed models: VGG16 after pool3, conv4_3
  and conv5_3 (``features.16``, ``features.22``, ``features.29``, the ReLUs after the convs;
  the paper's table uses pool4, ``features.23``, where the VGG-GAP keeps pool4); ResNet50 after
  ``layer3.0``, ``layer4.0`` and ``layer4.2``.
"""

from typing import Dict, List, Optional

import torch
from torch import nn

__all__ = ["ADL", "insert_adl"]


class ADL(nn.Module):
    """
    Attention-based dropout on a (B, C, H, W) feature map; identity at eval.
    """

    def __init__(
        self,
        *,
        drop_rate: float = 0.75,
        threshold: float = 0.8,
        generator: Optional[torch.Generator] = None,
    ):
        """
        Args:
            drop_rate: probability that a batch uses the drop mask instead of the importance map.
            threshold: gamma; cells with attention below ``threshold * max`` are kept by the drop
                mask, the rest are erased.
            generator: optional source of the per-batch Bernoulli draw.
        """
        super().__init__()
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.drop_rate = drop_rate
        self.threshold = threshold
        self.generator = generator

    @staticmethod
    def _attention(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"ADL input must have shape (B, C, H, W), got {tuple(x.shape)}")
        return x.mean(dim=1, keepdim=True)

    def drop_mask(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, C, H, W).

        Returns:
            mask: (B, 1, H, W) in {0, 1}, same dtype as x; 0 where the channel mean reaches
            ``threshold`` times its per-sample maximum.
        """
        att = self._attention(x)
        peak = att.amax(dim=(2, 3), keepdim=True)
        return (att < self.threshold * peak).to(x.dtype)

    def importance_map(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, C, H, W).

        Returns:
            importance: (B, 1, H, W), sigmoid of the channel mean.
        """
        return torch.sigmoid(self._attention(x))

    def _use_drop_mask(self) -> bool:
        device = self.generator.device if self.generator is not None else "cpu"
        draw = torch.rand((), generator=self.generator, device=device)
        return bool(draw < self.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, C, H, W).

        Returns:
            (B, C, H, W): x times the drop mask or the importance map in training, x at eval.
        """
        if not self.training:
            return x
        chosen = self.drop_mask(x) if self._use_drop_mask() else self.importance_map(x)
        return x * chosen

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def _apply_child_adl(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return module.adl(output)


def insert_adl(module: nn.Module, positions: List[str], **adl_kwargs) -> Dict[str, ADL]:
    """
    Make ADL run on the output of each named submodule of ``module``.

    The ADL instance becomes a child named ``adl`` of the target (so ``train()`` / ``eval()``
    reach it); on an ``nn.Sequential`` it is appended and runs last, on any other module a forward
    hook applies it. ADL has no parameters or buffers, so state dict keys do not change and
    pretrained weights still load.

    Args:
        module: the network, e.g. a torchvision VGG16 or ResNet50.
        positions: dotted submodule names as in ``module.named_modules()``, e.g. "layer3.0" or
            "features.23".
        adl_kwargs: keyword arguments of :class:`ADL`.

    Returns:
        {position: the inserted ADL}.
    """
    named = dict(module.named_modules())
    unknown = [p for p in positions if p not in named or p == ""]
    if unknown:
        valid = ", ".join(name for name in named if name)
        raise KeyError(f"unknown ADL position(s) {unknown}; valid positions: {valid}")
    inserted = {}
    for position in positions:
        target = named[position]
        if hasattr(target, "adl"):
            raise ValueError(f"{position!r} already has an attribute 'adl' (ADL inserted twice?)")
        if isinstance(target, (nn.ModuleList, nn.ModuleDict)):
            raise ValueError(f"{position!r} is a {type(target).__name__}, which has no forward")
        adl = ADL(**adl_kwargs)
        target.add_module("adl", adl)
        if not isinstance(target, nn.Sequential):
            target.register_forward_hook(_apply_child_adl)
        inserted[position] = adl
    return inserted
