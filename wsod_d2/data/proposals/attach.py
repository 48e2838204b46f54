"""Attach a proposal file to detectron2 dataset dicts, checking it against the images.

Every image of the dataset must have proposals, at least one, all finite, well-formed
(x2 >= x1, y2 >= y1) and inside the image up to a tolerance; the errors name the file and the
image, since a wrong coordinate convention (1-based, swapped columns) shows up here first.

A pickle's arrays are attached to the dicts; a proposal store (a directory,
:mod:`wsod_d2.data.proposals.store`) is checked the same way and attached by reference
(:mod:`wsod_d2.data.proposals.references`).
"""

import logging
from typing import Any, Dict, List

from detectron2.structures import BoxMode

from wsod_d2.data.proposals.checks import check_image_boxes, clip_and_sort, missing_ids_message
from wsod_d2.data.proposals.conventions import check_conventions
from wsod_d2.data.proposals.io import check_box_mode, load_proposal_file
from wsod_d2.data.proposals.references import attach_store
from wsod_d2.data.proposals.store import is_proposal_store

__all__ = ["attach_proposals"]

logger = logging.getLogger(__name__)


def attach_proposals(
    dataset_dicts: List[Dict[str, Any]],
    proposal_file: str,
    *,
    bounds_tolerance: float = 1.0,
    accept_conventions: bool = False,
) -> List[Dict[str, Any]]:
    """
    Add the proposals of ``proposal_file`` to each dataset dict, validating them.

    A proposal store (a directory) is attached by reference: see
    :func:`wsod_d2.data.proposals.references.attach_store` (same checks, same errors; the mapper
    reads each image's boxes through :func:`~wsod_d2.data.proposals.references.image_proposals`,
    clipped and sorted as below). For a pickle, each returned dict is a shallow copy of the
    input with ``proposal_boxes`` ((N, 4) float32 XYXY_ABS, clipped to the image),
    ``proposal_objectness_logits`` ((N,) float32) and ``proposal_bbox_mode``
    (``BoxMode.XYXY_ABS``), sorted by decreasing logit with a stable sort (ties keep the file
    order). Ids are matched as ``str(image_id)``; extra ids in the file are
    ignored. Zero-area boxes are kept (the mapper drops small boxes after resizing).

    Args:
        dataset_dicts: detectron2 dataset dicts with ``image_id``, ``height``, ``width``.
        proposal_file: detectron2 proposal pickle, read once, or a proposal store.
        bounds_tolerance: boxes may leave the image by at most this many pixels (then they are
            clipped); farther means a wrong coordinate convention and raises ``ValueError``.

    Raises:
        ValueError: naming the file and the image id / file_name, for an image absent from the
            file, zero proposals, non-finite boxes, x2 < x1 or y2 < y1, or boxes out of bounds.
    """
    if bounds_tolerance < 0:
        raise ValueError(f"bounds_tolerance must be >= 0, got {bounds_tolerance}")
    if is_proposal_store(proposal_file):
        return attach_store(
            dataset_dicts,
            proposal_file,
            bounds_tolerance=bounds_tolerance,
            accept_conventions=accept_conventions,
        )
    data = load_proposal_file(proposal_file)
    mode = data["bbox_mode"]
    check_box_mode(mode, f"proposal file {proposal_file}")
    index_of: Dict[str, int] = {}
    for i, image_id in enumerate(data["ids"]):
        key = str(image_id)
        if key in index_of:
            raise ValueError(f"proposal file {proposal_file}: image id {image_id!r} appears twice")
        index_of[key] = i

    missing = [r for r in dataset_dicts if str(r["image_id"]) not in index_of]
    if missing:
        raise ValueError(missing_ids_message(proposal_file, missing, dataset_dicts, data["ids"]))

    out, stored = [], []
    num_boxes = 0
    for record in dataset_dicts:
        i = index_of[str(record["image_id"])]
        boxes = BoxMode.convert(data["boxes"][i], mode, BoxMode.XYXY_ABS)
        logits = data["objectness_logits"][i]
        stored.append(boxes)
        check_image_boxes(boxes, logits, record, proposal_file, bounds_tolerance)
        boxes, logits = clip_and_sort(boxes, logits, record["width"], record["height"])
        new_record = dict(record)
        new_record["proposal_boxes"] = boxes
        new_record["proposal_objectness_logits"] = logits
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
