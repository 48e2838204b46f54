"""Attach a proposal file to detectron2 dataset dicts, checking it against the images.

Every image of the dataset must have proposals, at least one, all finite, well-formed
(x2 >= x1, y2 >= y1) and inside the image up to a tolerance; the errors name the file and the
image, since a wrong coordinate convention (1-based, swapped columns) shows up here first.
"""

import logging
import os
from typing import Any, Dict, List

import numpy as np
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.conventions import check_conventions
from wsod_d2.data.proposals.io import load_proposal_file
from wsod_d2.data.proposals.selective_search import skipped_images_file

__all__ = ["attach_proposals"]

logger = logging.getLogger(__name__)

# Box modes attach_proposals can convert to XYXY_ABS without the image size.
_ABS_MODES = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)


def _describe(proposal_file: str, record: Dict[str, Any]) -> str:
    return (
        f"proposal file {proposal_file}: image id {record['image_id']!r} "
        f"(file_name {record.get('file_name', '<unknown>')!r})"
    )


def _check_image_boxes(
    boxes: np.ndarray,
    logits: np.ndarray,
    record: Dict[str, Any],
    proposal_file: str,
    bounds_tolerance: float,
) -> np.ndarray:
    """
    Validate one image's XYXY_ABS boxes and clip them to the image.

    Args:
        boxes: (N, 4) float32 XYXY_ABS
        logits: (N,) float32
    Returns:
        (N, 4) float32, clipped to [0, W] x [0, H]
    """
    where = _describe(proposal_file, record)
    if len(boxes) == 0:
        raise ValueError(f"{where} has zero proposals")
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{where}: proposal {i} is not finite: {boxes[i].tolist()}")
    if not np.isfinite(logits).all():
        i = int(np.flatnonzero(~np.isfinite(logits))[0])
        raise ValueError(f"{where}: objectness logit {i} is not finite: {logits[i]}")
    malformed = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if malformed.any():
        i = int(np.flatnonzero(malformed)[0])
        raise ValueError(
            f"{where}: proposal {i} {boxes[i].tolist()} has x2 < x1 or y2 < y1 "
            f"({int(malformed.sum())} such boxes); boxes must be XYXY_ABS"
        )
    if "height" not in record or "width" not in record:
        raise ValueError(f"{where}: the dataset dict lacks 'height'/'width' to check boxes against")
    height, width = float(record["height"]), float(record["width"])
    tol = bounds_tolerance
    outside = (
        (boxes[:, 0] < -tol)
        | (boxes[:, 1] < -tol)
        | (boxes[:, 2] > width + tol)
        | (boxes[:, 3] > height + tol)
    )
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{where}: {int(outside.sum())} proposal(s) lie outside the image "
            f"(width {width:g}, height {height:g}) by more than {tol:g} px, first: proposal {i} "
            f"{boxes[i].tolist()}. Check the coordinate convention: boxes must be 0-based "
            "(x1, y1, x2, y2); swapped (y, x) columns or 1-based boxes give this error."
        )
    clipped = boxes.copy()
    np.clip(clipped[:, 0::2], 0.0, width, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0.0, height, out=clipped[:, 1::2])
    return clipped


def _missing_ids_message(proposal_file, missing, dataset_dicts, file_ids) -> str:
    """Which images lack proposals, a sample of the file's ids, and the likely cause."""
    shown = ", ".join(repr(i) for i in file_ids[:5]) + (" ..." if len(file_ids) > 5 else "")
    message = (
        f"{_describe(proposal_file, missing[0])} has no proposals in the file "
        f"({len(missing)} of {len(dataset_dicts)} dataset images are missing; the file's "
        f"{len(file_ids)} ids are {shown}; the dataset's are "
        f"{', '.join(repr(r['image_id']) for r in dataset_dicts[:3])} ...). "
    )
    if os.path.isfile(skipped_images_file(proposal_file)):
        message += (
            f"{skipped_images_file(proposal_file)} lists the images that generate_proposals "
            "left out as unreadable: fix them and regenerate, or remove them from the dataset. "
        )
    file_keys = {str(i) for i in file_ids}
    as_ints = [r for r in missing if str(r["image_id"]).isdigit()]
    if as_ints and all(str(int(r["image_id"])) in file_keys for r in as_ints):
        return message + (
            "The file stores the ids as integers (wetectron's convention: 5 for '000005'): "
            f"convert it with `python tools/convert_proposals.py wetectron {proposal_file} "
            "--image-set <ImageSets/Main/SPLIT.txt> --output <new file>` (docs/proposals.md)."
        )
    return message + (
        "Was the file made for another dataset or split? Make one with "
        "tools/generate_proposals.py or convert a published one with tools/convert_proposals.py."
    )


def attach_proposals(
    dataset_dicts: List[Dict[str, Any]],
    proposal_file: str,
    *,
    bounds_tolerance: float = 1.0,
    accept_conventions: bool = False,
) -> List[Dict[str, Any]]:
    """
    Add the proposals of ``proposal_file`` to each dataset dict, validating them.

    Each returned dict is a shallow copy of the input with ``proposal_boxes`` ((N, 4) float32
    XYXY_ABS, clipped to the image), ``proposal_objectness_logits`` ((N,) float32) and
    ``proposal_bbox_mode`` (``BoxMode.XYXY_ABS``), sorted by decreasing logit with a stable sort
    (ties keep the file order). Ids are matched as ``str(image_id)``; extra ids in the file are
    ignored. Zero-area boxes are kept (the mapper drops small boxes after resizing).

    Args:
        dataset_dicts: detectron2 dataset dicts with ``image_id``, ``height``, ``width``.
        proposal_file: detectron2 proposal pickle, read once.
        bounds_tolerance: boxes may leave the image by at most this many pixels (then they are
            clipped); farther means a wrong coordinate convention and raises ``ValueError``.

    Raises:
        ValueError: naming the file and the image id / file_name, for an image absent from the
            file, zero proposals, non-finite boxes, x2 < x1 or y2 < y1, or boxes out of bounds.
    """
    if bounds_tolerance < 0:
        raise ValueError(f"bounds_tolerance must be >= 0, got {bounds_tolerance}")
    data = load_proposal_file(proposal_file)
    mode = data["bbox_mode"]
    if mode not in _ABS_MODES:
        raise ValueError(
            f"proposal file {proposal_file}: bbox_mode {mode.name} is not supported; "
            f"use one of {[m.name for m in _ABS_MODES]}"
        )
    index_of: Dict[str, int] = {}
    for i, image_id in enumerate(data["ids"]):
        key = str(image_id)
        if key in index_of:
            raise ValueError(f"proposal file {proposal_file}: image id {image_id!r} appears twice")
        index_of[key] = i

    missing = [r for r in dataset_dicts if str(r["image_id"]) not in index_of]
    if missing:
        raise ValueError(_missing_ids_message(proposal_file, missing, dataset_dicts, data["ids"]))

    out, stored = [], []
    num_boxes = 0
    for record in dataset_dicts:
        i = index_of[str(record["image_id"])]
        boxes = BoxMode.convert(data["boxes"][i], mode, BoxMode.XYXY_ABS)
        logits = data["objectness_logits"][i]
        stored.append(boxes)
        boxes = _check_image_boxes(boxes, logits, record, proposal_file, bounds_tolerance)
        order = np.argsort(-logits, kind="stable")
        new_record = dict(record)
        new_record["proposal_boxes"] = boxes[order]
        new_record["proposal_objectness_logits"] = logits[order]
        new_record["proposal_bbox_mode"] = BoxMode.XYXY_ABS
        out.append(new_record)
        num_boxes += len(boxes)
    if not accept_conventions:
        check_conventions(dataset_dicts, stored, proposal_file)
    logger.info(
        "Attached proposals from %s to %d images (%.1f per image).",
        proposal_file,
        len(out),
        num_boxes / max(len(out), 1),
    )
    return out
