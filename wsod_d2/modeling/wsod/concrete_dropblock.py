"""Concrete DropBlock (Ren et al., CVPR 2020, the "context-focused" half of MIST): an adversarial
generator of block masks on the pooled RoI features.

A small residual conv net reads the (detached) pooled features (R, D, P, P) and gives each cell a
seed probability p = sigmoid(g) * drop_rate / block_size^2. Seeds are drawn with the concrete
(relaxed Bernoulli) distribution at ``temperature``, binary with a straight-through gradient when
``hard``; every seed drops the block_size x block_size block centred on it, and the kept cells are
rescaled by (cells / kept cells) as in DropBlock. The detector trains on the masked features; the
generator is trained by its own optimizer to *raise* the detector's loss (see
wsod_d2.engine.adversarial). Identity at test.

As in NVlabs/wetectron (wetectron/modeling/cdb.py, DB.*): the generator is conv3x3 -> BN -> ReLU
-> conv3x3 -> BN plus a 1x1 conv shortcut, all convs without bias, Kaiming (fan-out) init; the
seed draw is a two-way Gumbel-softmax, i.e. a logistic-noise relaxed Bernoulli, written so here.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

__all__ = ["ConcreteDropBlock", "block_mask"]


def block_mask(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """seeds: (R, P, P) in [0, 1] (1 = a dropped block is centred here) -> keep mask (R, P, P),
    1 - max of the seeds over the block_size x block_size window around each cell."""
    dropped = F.max_pool2d(seeds[:, None], block_size, stride=1, padding=block_size // 2)
    if block_size % 2 == 0:
        # An even window overhangs by one row and column; keep the top-left P x P.
        dropped = dropped[:, :, :-1, :-1]
    return 1.0 - dropped[:, 0]


def _relaxed_bernoulli(prob: torch.Tensor, temperature: float, hard: bool) -> torch.Tensor:
    """A concrete sample of Bernoulli(prob) at ``temperature``; binary with a straight-through
    gradient when ``hard``."""
    eps = 1e-10
    uniform = torch.rand_like(prob).clamp(eps, 1.0 - eps)
    logit = torch.log(prob + eps) - torch.log1p(-prob + eps)
    noise = torch.log(uniform) - torch.log1p(-uniform)
    soft = torch.sigmoid((logit + noise) / temperature)
    if not hard:
        return soft
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class _SeedGenerator(nn.Module):
    """(R, D, P, P) -> (R, P, P) seed logits: conv3x3-BN-ReLU-conv3x3-BN plus a 1x1 shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 1, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(1)
        self.shortcut = nn.Conv2d(channels, 1, 1, bias=False)
        for conv in (self.conv1, self.conv2, self.shortcut):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return (out + self.shortcut(x))[:, 0]


class ConcreteDropBlock(nn.Module):
    """forward(pooled (R, D, P, P)) -> masked and rescaled features of the same shape in training;
    ``pooled`` itself at test or with drop_rate 0."""

    @configurable
    def __init__(
        self, channels: int, *, drop_rate: float, block_size: int, temperature: float, hard: bool
    ):
        super().__init__()
        if not 0.0 <= drop_rate <= 1.0 or block_size < 1 or temperature <= 0.0:
            raise ValueError(
                "MODEL.CDB: need 0 <= DROP_RATE <= 1, BLOCK_SIZE >= 1 and TEMPERATURE > 0, got "
                f"{drop_rate}, {block_size}, {temperature}"
            )
        self.generator = _SeedGenerator(channels)
        self.drop_rate = drop_rate
        self.block_size = block_size
        self.temperature = temperature
        self.hard = hard

    @classmethod
    def from_config(cls, cfg, channels):
        return {
            "channels": channels,
            "drop_rate": cfg.MODEL.CDB.DROP_RATE,
            "block_size": cfg.MODEL.CDB.BLOCK_SIZE,
            "temperature": cfg.MODEL.CDB.TEMPERATURE,
            "hard": cfg.MODEL.CDB.HARD,
        }

    def seed_probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        """(R, D, P, P) -> (R, P, P) probability that each cell seeds a dropped block. The
        features are detached: the generator learns only from its own (adversarial) loss."""
        gamma = self.drop_rate / self.block_size**2
        return torch.sigmoid(self.generator(pooled.detach())) * gamma

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if pooled.dim() != 4:
            raise ValueError(f"ConcreteDropBlock: expected (R, D, P, P), got {tuple(pooled.shape)}")
        if not self.training or self.drop_rate == 0.0:
            return pooled
        seeds = _relaxed_bernoulli(self.seed_probabilities(pooled), self.temperature, self.hard)
        keep = block_mask(seeds, self.block_size)
        # DropBlock's rescaling keeps the features' expected sum; clamp: nothing kept is 0, not NaN.
        keep = keep * (keep.numel() / keep.sum().clamp(min=1.0))
        return pooled * keep[:, None]
