"""Checks of one image's proposals against its dataset dict, and the error messages, shared by
the pickle (:mod:`wsod_d2.data.proposals.attach`) and the store
(:mod:`wsod_d2.data.proposals.references`): both formats fail with the same words."""

import os
from typing import Any, Dict, List, Sequence

import numpy as np

from wsod_d2.data.proposals.selective_search import skipped_images_file
from wsod_d2.data.proposals.store import source_kind

__all__ = ["check_image_boxes", "clip_and_sort", "describe", "missing_ids_message"]


def describe(proposal_file: str, record: Dict[str, Any]) -> str:
    return (
        f"{source_kind(proposal_file)} {proposal_file}: image id {record['image_id']!r} "
        f"(file_name {record.get('file_name', '<unknown>')!r})"
    )


def check_image_boxes(
    boxes: np.ndarray,
    logits: np.ndarray,
    record: Dict[str, Any],
    proposal_file: str,
    bounds_tolerance: float,
) -> None:
    """
    ValueError naming the file and the image if one image's XYXY_ABS boxes are empty, not
    finite, malformed or outside the image by more than ``bounds_tolerance`` pixels.

    Args:
        boxes: (N, 4) float32 XYXY_ABS
        logits: (N,) float32
    """

    def where() -> str:  # built only for an error: this runs for every image
        return describe(proposal_file, record)

    if len(boxes) == 0:
        raise ValueError(f"{where()} has zero proposals")
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{where()}: proposal {i} is not finite: {boxes[i].tolist()}")
    if not np.isfinite(logits).all():
        i = int(np.flatnonzero(~np.isfinite(logits))[0])
        raise ValueError(f"{where()}: objectness logit {i} is not finite: {logits[i]}")
    malformed = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if malformed.any():
        i = int(np.flatnonzero(malformed)[0])
        raise ValueError(
            f"{where()}: proposal {i} {boxes[i].tolist()} has x2 < x1 or y2 < y1 "
            f"({int(malformed.sum())} such boxes); boxes must be XYXY_ABS"
        )
    if "height" not in record or "width" not in record:
        raise ValueError(
            f"{where()}: the dataset dict lacks 'height'/'width' to check boxes against"
        )
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
            f"{where()}: {int(outside.sum())} proposal(s) lie outside the image "
            f"(width {width:g}, height {height:g}) by more than {tol:g} px, first: proposal {i} "
            f"{boxes[i].tolist()}. Check the coordinate convention: boxes must be 0-based "
            "(x1, y1, x2, y2); swapped (y, x) columns or 1-based boxes give this error."
        )


def clip_and_sort(boxes: np.ndarray, logits: np.ndarray, width: float, height: float):
    """
    The image's proposals as the model gets them: clipped to [0, W] x [0, H], sorted by
    decreasing logit with a stable sort (ties keep the file order).

    Args:
        boxes: (N, 4) float32 XYXY_ABS; logits: (N,) float32
    Returns:
        (boxes (N, 4), logits (N,)), new arrays
    """
    order = np.argsort(-logits, kind="stable")
    clipped = boxes[order]  # the one copy, clipped in place
    np.clip(clipped[:, 0::2], 0.0, float(width), out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0.0, float(height), out=clipped[:, 1::2])
    return clipped, logits[order]


def missing_ids_message(
    proposal_file: str,
    missing: List[Dict[str, Any]],
    dataset_dicts: Sequence[Dict[str, Any]],
    file_ids: Sequence[Any],
) -> str:
    """Which images lack proposals, a sample of the file's ids, and the likely cause."""
    shown = ", ".join(repr(i) for i in file_ids[:5]) + (" ..." if len(file_ids) > 5 else "")
    kind = source_kind(proposal_file)
    message = (
        f"{describe(proposal_file, missing[0])} has no proposals in the {kind.split()[1]} "
        f"({len(missing)} of {len(dataset_dicts)} dataset images are missing: "
        f"{', '.join(repr(r['image_id']) for r in missing[:5])}"
        f"{' ...' if len(missing) > 5 else ''}; the {kind.split()[1]}'s "
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
        if kind == "proposal store":
            command = (
                "wetectron <the wetectron file> --image-set <ImageSets/Main/SPLIT.txt> "
                "--output-format store --output <new store>"
            )
        else:
            command = (
                f"wetectron {proposal_file} --image-set <ImageSets/Main/SPLIT.txt> "
                "--output <new file>"
            )
        return message + (
            f"The {kind.split()[1]} stores the ids as integers (wetectron's convention: 5 for "
            f"'000005'): convert it with `python tools/convert_proposals.py {command}` "
            "(docs/proposals.md)."
        )
    return message + (
        "Was the file made for another dataset or split? Make one with "
        "tools/generate_proposals.py or convert a published one with tools/convert_proposals.py."
    )
