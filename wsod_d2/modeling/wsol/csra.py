"""CSRA: class-specific residual attention for multi-label classification (Zhu & Wu, ICCV 2021).

A 1x1 convolution scores every spatial position for every class; the class logit is the average
score plus ``lam`` times a softmax(T)-weighted average of the scores (the max when T is infinite).

Choices (paper vs. released code, all documented in /work/shared/docs/ALGORITHMS.md):

- The score map is normalised by the per-class weight norm, ``s_c = w_c^T x_k / ||w_c||``, and
  that normalised score is used everywhere: in the base (mean) term, inside the softmax and in the
  attention term. The released code does the same; the paper writes the attention on the
  features and applies the classifier afterwards, which is the same linear algebra.
- The classifier has no bias (a bias would only shift every position of a class equally).
- An infinite temperature is ``math.inf`` (the released code uses the magic value 99).
- Multi-head: heads have their own classifiers and the temperatures 1:[1], 2:[1, inf],
  4:[1, 2, 4, inf], 6:[1..5, inf], 8:[1..7, inf]; the logits are summed over heads. The
  per-class maps for CAM-style localisation are the sum of the heads' normalised score maps, the
  map whose spatial mean is the summed base logit.
- Train with BCE-with-logits on the summed logits (the caller's job).
"""

import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CSRA", "MultiHeadCSRA", "CSRA_TEMPERATURES"]

# Temperatures per head count, from the paper; inf selects max pooling.
CSRA_TEMPERATURES: Dict[int, List[float]] = {
    1: [1.0],
    2: [1.0, math.inf],
    4: [1.0, 2.0, 4.0, math.inf],
    6: [1.0, 2.0, 3.0, 4.0, 5.0, math.inf],
    8: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf],
}


def _check_features(x: torch.Tensor, in_channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"x must have shape (B, {in_channels}, H, W), got {tuple(x.shape)}")


class CSRA(nn.Module):
    """
    One CSRA head: ``logit_c = mean_k s_ck + lam * sum_k softmax_k(T s_c)_k s_ck``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, temperature: float, lam: float):
        """
        Args:
            in_channels: D, channels of the backbone feature map.
            num_classes: C.
            temperature: T > 0 of the spatial softmax; ``math.inf`` means max pooling.
            lam: weight of the attention term (lambda in Eq. 1).
        """
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (math.inf for max), got {temperature}")
        self.in_channels = in_channels
        self.temperature = temperature
        self.lam = lam
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, D, H, W) features.

        Returns:
            scores: (B, C, H, W), ``w_c^T x_k / ||w_c||``.
        """
        _check_features(x, self.in_channels)
        weight = self.classifier.weight
        norm = weight.flatten(1).norm(dim=1)
        return F.conv2d(x, weight) / norm.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, D, H, W) features.

        Returns:
            logits: (B, C).
        """
        scores = self.forward_maps(x).flatten(2)
        base = scores.mean(dim=2)
        if math.isinf(self.temperature):
            att = scores.amax(dim=2)
        else:
            att = (torch.softmax(self.temperature * scores, dim=2) * scores).sum(dim=2)
        return base + self.lam * att


class MultiHeadCSRA(nn.Module):
    """
    Sum of CSRA heads with the paper's temperature schedule for ``num_heads``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, num_heads: int = 1, lam: float = 0.1):
        """
        Args:
            in_channels: D.
            num_classes: C.
            num_heads: H, one of the keys of CSRA_TEMPERATURES.
            lam: lambda shared by all heads.
        """
        super().__init__()
        if num_heads not in CSRA_TEMPERATURES:
            raise ValueError(
                f"num_heads must be one of {sorted(CSRA_TEMPERATURES)}, got {num_heads}"
            )
        self.heads = nn.ModuleList(
            CSRA(in_channels, num_classes, temperature=t, lam=lam)
            for t in CSRA_TEMPERATURES[num_heads]
        )

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, D, H, W).

        Returns:
            scores: (B, C, H, W), sum over heads of the normalised score maps.
        """
        return torch.stack([head.forward_maps(x) for head in self.heads]).sum(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, D, H, W).

        Returns:
            logits: (B, C), sum over heads.
        """
        return torch.stack([head(x) for head in self.heads]).sum(dim=0)
