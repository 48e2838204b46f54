"""Statistics of a whole proposal file that reveal a wrong coordinate convention.

Boxes in the wrong convention often stay inside their images, so the per-image bounds check of
:mod:`wsod_d2.data.proposals.attach` lets them through. Over a file, though, they leave traces:

- boxes made for downscaled images never reach the right or bottom part of their images
  (selective search always ends with a box over the whole image);
- 1-based boxes never start at 0, and start at exactly 1 in most images;
- (y, x) swapped columns fit the dataset's ground-truth boxes (where it has them) better once
  transposed back; on non-square images they also leave the image, which attach reports.

:func:`convention_problems` returns the evidence; :func:`check_conventions` raises with it and the
likely fix. A file that is right despite its statistics is accepted with
``DATASETS.PROPOSAL_FILES_ACCEPTED``.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.store import source_kind

__all__ = ["convention_problems", "check_conventions", "image_extents"]

# Fewer images than this say too little to judge a file by its statistics.
MIN_IMAGES = 8
# Median over images of (largest x2 / width) below this: boxes never reach the image's far side
# (selective search gives ~1.0: its last merge covers the whole image).
MIN_MEDIAN_REACH = 0.75
# Share of images whose smallest x1 (or y1) is exactly 1 above which, with no box starting
# below 1 anywhere, the file looks 1-based.
MIN_ONE_BASED_SHARE = 0.5
# Mean best IoU of ground-truth boxes with the transposed proposals above that with the
# proposals as they are by more than this: the columns look swapped.
SWAP_MARGIN = 0.1
# Images (evenly spread) whose ground-truth boxes are matched for the swap statistic.
MAX_SWAP_IMAGES = 300


def _gt_boxes(record: Dict[str, Any]) -> np.ndarray:
    """(G, 4) XYXY_ABS non-crowd annotation boxes of a dataset dict (maybe 0)."""
    boxes = [
        BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in record.get("annotations", [])
        if not a.get("iscrowd", 0)
    ]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _best_iou(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(G,) best IoU of each of gt (G, 4) with boxes (N, 4)."""
    lt = np.maximum(gt[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(gt[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_gt = (gt[:, 2:] - gt[:, :2]).prod(axis=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)
    union = area_gt[:, None] + area[None, :] - inter
    return (inter / np.maximum(union, 1e-9)).max(axis=1)


def _swap_statistic(records, boxes_list):
    """(mean best IoU as they are, transposed, number of GT boxes) over sampled images."""
    with_gt = [i for i, r in enumerate(records) if r.get("annotations")]
    step = max(1, len(with_gt) // MAX_SWAP_IMAGES)
    as_is, swapped = [], []
    for i in with_gt[::step]:
        gt = _gt_boxes(records[i])
        boxes = boxes_list[i].astype(np.float64)
        if len(gt) == 0 or len(boxes) == 0:
            continue
        as_is.append(_best_iou(gt, boxes))
        swapped.append(_best_iou(gt, boxes[:, [1, 0, 3, 2]]))
    if not as_is:
        return None
    as_is, swapped = np.concatenate(as_is), np.concatenate(swapped)
    return float(as_is.mean()), float(swapped.mean()), len(as_is)


def image_extents(boxes_list: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 4) per image (min x1, min y1, max x2, max y2) of its (N_i, 4) XYXY boxes."""
    return np.array(
        [[*b[:, :2].min(axis=0), *b[:, 2:].max(axis=0)] for b in boxes_list], dtype=np.float32
    ).reshape(-1, 4)


def convention_problems(
    records: Sequence[Dict[str, Any]],
    boxes_list: Sequence[np.ndarray],
    extents: Optional[np.ndarray] = None,
) -> List[str]:
    """
    Evidence of a wrong convention in the proposals of a whole file, each with its likely fix.

    Args:
        records: dataset dicts with ``width``, ``height`` (and ``annotations`` where known).
        boxes_list: per record, (N_i, 4) XYXY_ABS proposals as stored (before clipping); any
            sequence: only the images the swap statistic samples (at most MAX_SWAP_IMAGES) are
            read when ``extents`` is given.
        extents: (len(records), 4) :func:`image_extents` of ``boxes_list`` when known (a proposal
            store keeps them), so that the other statistics do not read every box.
    Returns:
        one sentence per problem found; empty when the file looks right or has fewer than
        MIN_IMAGES images.
    """
    if len(records) < MIN_IMAGES:
        return []
    if extents is None:
        extents = image_extents(boxes_list)
    problems = []
    sizes = np.array([[r["width"], r["height"]] for r in records], dtype=np.float64)
    far = extents[:, 2:] / sizes
    reach_x, reach_y = np.median(far, axis=0)
    if min(reach_x, reach_y) < MIN_MEDIAN_REACH:
        scale = min(reach_x, reach_y)
        problems.append(
            f"its boxes do not reach the right or bottom part of their images: over "
            f"{len(records)} images the median of (largest x2 / width) is {reach_x:.2f} and of "
            f"(largest y2 / height) {reach_y:.2f} (selective search gives ~1.0), and no box of "
            f"any image reaches beyond {far[:, 0].max():.0%} of its width / "
            f"{far[:, 1].max():.0%} of its height. Likely made for images downscaled by "
            f"~{scale:.2f}: multiply the boxes by {1 / max(scale, 1e-6):.2f} (per image, by "
            "dataset size / size the boxes were made for), or regenerate them with "
            "tools/generate_proposals.py"
        )
    near = extents[:, :2]
    starts_at_one = float(np.mean((near == 1.0).any(axis=1)))
    if near.min() >= 1.0 and starts_at_one >= MIN_ONE_BASED_SHARE:
        problems.append(
            f"its boxes look 1-based: no box of any image starts at x1 < 1 or y1 < 1, and in "
            f"{starts_at_one:.0%} of {len(records)} images the smallest x1 or y1 is exactly 1. "
            "Boxes must be 0-based continuous (full image = [0, 0, W, H]): subtract 1 from x1 "
            "and y1 (1-based inclusive boxes, as MATLAB's) or from all four coordinates (1-based "
            "continuous); tools/convert_proposals.py converts the published .mat files"
        )
    swap = _swap_statistic(records, boxes_list)
    if swap is not None and swap[1] > swap[0] + SWAP_MARGIN:
        problems.append(
            f"its columns look swapped as (y1, x1, y2, x2): the dataset's {swap[2]} ground-truth "
            f"boxes have a mean best IoU of {swap[0]:.2f} with the proposals as stored but "
            f"{swap[1]:.2f} with them transposed. Reorder each box to (x1, y1, x2, y2)"
        )
    return problems


def check_conventions(
    records: Sequence[Dict[str, Any]],
    boxes_list: Sequence[np.ndarray],
    proposal_file: str,
    extents: Optional[np.ndarray] = None,
) -> None:
    """ValueError naming ``proposal_file``, the evidence and the fix, if
    :func:`convention_problems` finds any."""
    problems = convention_problems(records, boxes_list, extents)
    if problems:
        raise ValueError(
            f"{source_kind(proposal_file)} {proposal_file} looks written in another coordinate "
            "convention: "
            + "; and ".join(problems)
            + f". If the file is right, accept it with DATASETS.PROPOSAL_FILES_ACCEPTED "
            f"('{proposal_file}',)."
        )
