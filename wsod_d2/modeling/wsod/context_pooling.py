"""Ring RoI pooling (ContextLocNet, Kantorov et al. ECCV 2016) on detectron2's RoI poolers.

A ring is the region between an outer and an inner box, both the proposal scaled about its
centre: frame = outer x1.0, inner x1/1.8; context = outer x1.8, inner x1.0.

Exact rule used here: the outer box is pooled by the given :class:`ROIPooler` into a P x P grid;
cell (i, j) has the centre (x1 + (j + 1/2) * w / P, y1 + (i + 1/2) * h / P) in the continuous
geometry of the outer box (x1, y1, w, h), and it is set to 0 when that centre lies inside the
inner box, borders included. The features are post-ReLU, so a zeroed cell carries no evidence and
never wins a later max. The authors' kernel skips the feature-map pixels inside the inner box
within each max-pooling bin instead; the two agree on every cell that lies wholly inside or
outside the inner box and differ only on cells the inner border cuts. With x1.8 rings and P = 7
the inner box covers [0.222, 0.778] of the outer box along each axis, so the central 3 x 3 cells
are zeroed in both rings. Outer boxes may reach beyond the feature map; the pooler's own border
rule applies there (zeros, except within RoIAlign's one-pixel margin, which reads the border).
"""
from typing import List

import torch
import torch.nn as nn
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

__all__ = ["scale_boxes", "ring_cell_mask", "RingPooler"]


def scale_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """boxes: (R, 4) XYXY scaled by ``factor`` about their centres -> (R, 4)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=1)


def ring_cell_mask(outer: torch.Tensor, inner: torch.Tensor, resolution: int) -> torch.Tensor:
    """(R, P, P) bool, True for the cells of the outer boxes' P x P grid whose centres lie
    outside the inner boxes (the cells a ring keeps). outer, inner: (R, 4) XYXY."""
    steps = (torch.arange(resolution, dtype=outer.dtype, device=outer.device) + 0.5) / resolution
    cx = outer[:, 0:1] + steps[None, :] * (outer[:, 2:3] - outer[:, 0:1])
    cy = outer[:, 1:2] + steps[None, :] * (outer[:, 3:4] - outer[:, 1:2])
    in_x = (cx >= inner[:, 0:1]) & (cx <= inner[:, 2:3])
    in_y = (cy >= inner[:, 1:2]) & (cy <= inner[:, 3:4])
    return ~(in_y[:, :, None] & in_x[:, None, :])


class RingPooler(nn.Module):
    """Pools the ring between each box scaled by ``outer_scale`` and by ``inner_scale``.

    forward(features, boxes): features as for :class:`ROIPooler` (list of (N, D, H, W));
    boxes: per image, :class:`Boxes` (R_i, 4) -> (sum R_i, D, P, P).
    ``inner_scale = 0`` pools the whole scaled box.
    """

    def __init__(self, pooler: ROIPooler, *, outer_scale: float, inner_scale: float):
        super().__init__()
        if not 0.0 <= inner_scale < outer_scale:
            raise ValueError(
                f"RingPooler: need 0 <= inner_scale < outer_scale, got inner_scale={inner_scale}, "
                f"outer_scale={outer_scale}"
            )
        self.pooler = pooler
        self.outer_scale = outer_scale
        self.inner_scale = inner_scale

    def forward(self, features: List[torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        outer = [scale_boxes(b.tensor, self.outer_scale) for b in boxes]
        pooled = self.pooler(features, [Boxes(o) for o in outer])
        if self.inner_scale == 0.0:
            return pooled
        inner = torch.cat([scale_boxes(b.tensor, self.inner_scale) for b in boxes])
        keep = ring_cell_mask(torch.cat(outer), inner, pooled.shape[-1])
        return pooled * keep[:, None].to(pooled.dtype)
