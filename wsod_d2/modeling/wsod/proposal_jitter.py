"""Random jitter of the proposals at test time, one draw per TTA pass (TEST.AUG.PROPOSAL_JITTER).

CASD's released test (``lib/model/test.py``, ``_shuffle_boxes``) scores each scale and each flip
on its own jitter of every proposal: the box is scaled about its centre by s ~ U(0.95, 1.15) and
its centre moved by dx x width, dy x height, with dx, dy ~ U(-0.05, 0.05) drawn separately, then
clipped to the image. Here boxes are in detectron2's continuous coordinates (width = x2 - x1,
clipped to [0, W] x [0, H]; the release adds 1 to widths and clips to W - 1), and each pass's
boxes are jittered in that pass's frame, after its flip and resize, as the release does in its
resized frame (the jitter is relative to the box, so the frame only matters through rounding;
the release jitters before its flip, which draws the same distribution, dx being symmetric).
"""
import zlib
from typing import Optional, Sequence, Tuple

import torch

__all__ = ["ProposalJitter", "jitter_boxes"]

# Seeds are SEED x 2^32 + crc32(image_id): both parts must fit.
_MAX_SEED = 2**31


def jitter_boxes(
    boxes: torch.Tensor,
    image_size: Tuple[int, int],
    *,
    scale_range: Sequence[float],
    center_shift: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """boxes (R, 4) XYXY in an image of ``image_size`` (height, width) -> jittered (R, 4).

    Per box: s ~ U(scale_range), dx, dy ~ U(-center_shift, center_shift); the centre moves by
    (dx x width, dy x height), both sides are multiplied by s, the box is clipped to the image.
    The draws come from ``generator`` on its own device (the CPU for the same draws on any
    device); the result is on ``boxes``' device and dtype.
    """
    low, high = scale_range
    draws = torch.rand((len(boxes), 3), generator=generator, device=generator.device)
    draws = draws.to(device=boxes.device, dtype=boxes.dtype)
    scale = low + (high - low) * draws[:, 0:1]
    shift = center_shift * (2.0 * draws[:, 1:3] - 1.0)
    size = boxes[:, 2:] - boxes[:, :2]
    center = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift * size
    half = scale * size / 2
    height, width = image_size
    out = torch.cat([center - half, center + half], dim=1)
    upper = boxes.new_tensor([width, height, width, height])
    return torch.minimum(out.clamp(min=0), upper)


class ProposalJitter:
    """The jitter of TEST.AUG.PROPOSAL_JITTER: :meth:`generator` once per image, then
    :meth:`__call__` once per pass, so passes draw in turn from the image's own generator."""

    def __init__(self, *, scale_range: Sequence[float], center_shift: float, seed: int):
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(
                f"TEST.AUG.PROPOSAL_JITTER.SCALE must be (low, high) with 0 < low <= high, got "
                f"{tuple(scale_range)}"
            )
        if center_shift < 0:
            raise ValueError(
                f"TEST.AUG.PROPOSAL_JITTER.CENTER_SHIFT must be >= 0, got {center_shift}"
            )
        if not 0 <= seed < _MAX_SEED:
            raise ValueError(f"TEST.AUG.PROPOSAL_JITTER.SEED must be in [0, 2^31), got {seed}")
        self.scale_range = (float(low), float(high))
        self.center_shift = float(center_shift)
        self.seed = int(seed)

    @classmethod
    def from_config(cls, cfg) -> Optional["ProposalJitter"]:
        """The jitter of ``cfg``, or None when TEST.AUG.PROPOSAL_JITTER.ENABLED is False."""
        if not cfg.TEST.AUG.PROPOSAL_JITTER.ENABLED:
            return None
        return cls(
            scale_range=cfg.TEST.AUG.PROPOSAL_JITTER.SCALE,
            center_shift=cfg.TEST.AUG.PROPOSAL_JITTER.CENTER_SHIFT,
            seed=cfg.TEST.AUG.PROPOSAL_JITTER.SEED,
        )

    def generator(self, image_id) -> torch.Generator:
        """A CPU generator seeded from (seed, ``image_id``): the image's draws do not depend on
        which images were evaluated before it, nor on the process."""
        if image_id is None:
            raise ValueError(
                "TEST.AUG.PROPOSAL_JITTER.ENABLED: the input has no 'image_id', which seeds its "
                "proposal jitter; give each test input its dataset dict's image_id"
            )
        generator = torch.Generator()
        generator.manual_seed(self.seed * 2**32 + zlib.crc32(str(image_id).encode("utf-8")))
        return generator

    def __call__(
        self, boxes: torch.Tensor, image_size: Tuple[int, int], generator: torch.Generator
    ) -> torch.Tensor:
        """One pass's jitter of boxes (R, 4) in an image of ``image_size`` (height, width)."""
        return jitter_boxes(
            boxes,
            image_size,
            scale_range=self.scale_range,
            center_shift=self.center_shift,
            generator=generator,
        )
