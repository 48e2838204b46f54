"""Dataset dicts that refer to a proposal store, and reading an image's proposals from a dict.

:func:`attach_store` makes the checks :func:`wsod_d2.data.proposals.attach.attach_proposals`
makes for a pickle, vectorised over the store's per-image index (ids, offsets, extents, flags)
instead of a pass over every box, and adds to each dict only
``"proposal_store": (store path, store uid, row)``. :func:`image_proposals` is what the mappers
call: it returns the dict's own arrays (pickle) or reads the row from the store, mapped once per
process, and clips and sorts it as the pickle path did when attaching.
"""

import logging
import os
from collections.abc import Sequence
from typing import Any, Dict, List, Tuple

import numpy as np

from wsod_d2.data.proposals.checks import check_image_boxes, clip_and_sort, missing_ids_message
from wsod_d2.data.proposals.conventions import check_conventions
from wsod_d2.data.proposals.store import MALFORMED, NON_FINITE, ProposalStore, open_proposal_store

__all__ = ["STORE_KEY", "attach_store", "image_proposals"]

logger = logging.getLogger(__name__)

# Key of a dataset dict's reference: (absolute store path, store uid, row).
STORE_KEY = "proposal_store"


class _StoreBoxes(Sequence):
    """The stored (unclipped) boxes of given rows, read only when indexed (the convention check
    reads the few hundred images its swap statistic samples)."""

    def __init__(self, store: ProposalStore, rows: np.ndarray):
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.store.read(int(self.rows[i]))[0]


def _sizes(dataset_dicts: Sequence[Dict[str, Any]]) -> np.ndarray:
    """(N, 2) float64 (width, height) per dict; NaN where a dict lacks them."""
    return np.array(
        [(r.get("width", np.nan), r.get("height", np.nan)) for r in dataset_dicts],
        dtype=np.float64,
    ).reshape(-1, 2)


def _suspects(
    flags: np.ndarray, counts: np.ndarray, extents: np.ndarray, sizes: np.ndarray, tol: float
) -> np.ndarray:
    """
    Positions of the dicts whose proposals may fail :func:`check_image_boxes`: no boxes, a
    flagged image (non-finite or malformed boxes), no size, or an extent beyond the image.
    Thresholds are rounded to float32 as the per-image check's comparisons of float32 boxes with
    a Python float are, so both agree on boxes at the limit.
    """
    low = np.float32(-tol)
    high = (sizes + tol).astype(np.float32)
    outside = (
        (extents[:, 0] < low)
        | (extents[:, 1] < low)
        | (extents[:, 2] > high[:, 0])
        | (extents[:, 3] > high[:, 1])
    )
    flagged = (flags & (NON_FINITE | MALFORMED)) != 0
    bad = (counts == 0) | flagged | np.isnan(sizes).any(axis=1) | outside
    return np.flatnonzero(bad)


def attach_store(
    dataset_dicts: List[Dict[str, Any]],
    store_path: str,
    *,
    bounds_tolerance: float = 1.0,
    accept_conventions: bool = False,
) -> List[Dict[str, Any]]:
    """
    Check a proposal store against the dataset and refer each dict to its row.

    Each returned dict is a shallow copy of the input with ``"proposal_store"``: (absolute store
    path, store uid, row). Ids are matched as ``str(image_id)``; extra ids in the store are
    ignored. The checks and their errors are the pickle's
    (:func:`wsod_d2.data.proposals.attach.attach_proposals`); they read the store's per-image
    index, and the boxes of an image only when the index says it is bad (to name the box) or the
    convention check samples it.

    Raises:
        ValueError: naming the store and the image id(s), for images absent from the store,
            with zero proposals, non-finite boxes, x2 < x1 or y2 < y1, or boxes out of bounds.
    """
    store = ProposalStore(store_path)
    rows = store.rows_of([r["image_id"] for r in dataset_dicts])
    if (rows < 0).any():
        missing = [dataset_dicts[i] for i in np.flatnonzero(rows < 0)]
        raise ValueError(missing_ids_message(store_path, missing, dataset_dicts, store.ids()))
    # the per-image index of the dataset's rows, gathered once
    flags, counts = np.asarray(store.flags[rows]), store.num_boxes(rows)
    extents = np.asarray(store.extents[rows])
    for i in _suspects(flags, counts, extents, _sizes(dataset_dicts), bounds_tolerance):
        boxes, logits = store.read(int(rows[i]))
        check_image_boxes(boxes, logits, dataset_dicts[i], store_path, bounds_tolerance)
    if not accept_conventions:
        check_conventions(dataset_dicts, _StoreBoxes(store, rows), store_path, extents)
    path, uid = os.path.abspath(store_path), store.uid
    out = []
    for record, row in zip(dataset_dicts, rows.tolist()):
        new_record = dict(record)
        new_record[STORE_KEY] = (path, uid, row)
        out.append(new_record)
    logger.info(
        "Attached proposal store %s to %d images (%.1f proposals per image), by reference.",
        store_path,
        len(out),
        float(counts.mean()) if len(rows) else 0.0,
    )
    return out


def image_proposals(dataset_dict: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """
    (boxes (N, 4) float32 XYXY_ABS clipped to the image, logits (N,) float32), sorted by
    decreasing logit, of a dict with attached proposals: its ``proposal_boxes`` and
    ``proposal_objectness_logits`` (a pickle), or its store row (``"proposal_store"``), read now.
    """
    if "proposal_boxes" in dataset_dict:
        boxes = np.asarray(dataset_dict["proposal_boxes"], dtype=np.float32).reshape(-1, 4)
        logits = np.asarray(dataset_dict["proposal_objectness_logits"], dtype=np.float32)
        return boxes, logits
    if STORE_KEY not in dataset_dict:
        raise KeyError(
            f"dataset dict of image {dataset_dict.get('image_id')!r} "
            f"({dataset_dict.get('file_name')}) has no proposals ('proposal_boxes' or "
            f"'{STORE_KEY}'): build the dicts with the proposal files of "
            "DATASETS.PROPOSAL_FILES_TRAIN/TEST (wsod_d2.data.wsod.build)"
        )
    path, uid, row = dataset_dict[STORE_KEY]
    boxes, logits = open_proposal_store(path, uid).read(row)
    return clip_and_sort(boxes, logits, dataset_dict["width"], dataset_dict["height"])
