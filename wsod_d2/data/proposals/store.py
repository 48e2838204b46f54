"""The proposal store: proposals of a whole dataset as memory-mapped arrays, read image by image.

A detectron2 proposal pickle (:mod:`wsod_d2.data.proposals.io`) is loaded whole, attached to
every dataset dict and serialised again by each training process: at COCO size (118k images x
2000 boxes, 4.7 GB as float32) that is several GB held once per process. A store keeps the same
data in flat ``.npy`` arrays on disk; dataset dicts carry a reference (path, store uid, row) and
the mapper reads the rows of one image when it maps it. Every process and DataLoader worker maps
the same files, so the boxes live once, in the page cache, and what a process holds privately
does not grow with the dataset.

A store is a directory (``DATASETS.PROPOSAL_FILES_TRAIN/TEST`` may name one wherever they take a
pickle: a directory is a store, a file a pickle) holding

============== ================ ==========================================================
file           dtype, shape     content
============== ================ ==========================================================
boxes.npy      float32 (B, 4)   every image's boxes, XYXY_ABS, image after image, each
                                image's boxes in its source order (not sorted, not clipped)
logits.npy     float32 (B,)     their objectness logits
offsets.npy    int64 (N + 1,)   image i's rows are ``offsets[i]:offsets[i + 1]``
ids.npy        unicode (N,)     ``str(image_id)`` of image i (ids match as ``str``, as in
                                the pickle)
id_order.npy   int64 (N,)       ``argsort(ids)``: ids are found by binary search
                                (``np.searchsorted(ids, keys, sorter=id_order)``), no dict
extents.npy    float32 (N, 4)   per image (min x1, min y1, max x2, max y2) of its boxes;
                                NaN for an image without boxes
flags.npy      uint8 (N,)       per image: NON_FINITE (a box or logit is not finite),
                                MALFORMED (a box has x2 < x1 or y2 < y1)
meta.json                       format name and version, counts, ``id_type`` ("int" when
                                every id was an int, read back as int; else "str"), ``uid``
============== ================ ==========================================================

Why these choices:

- One flat array per field, not one file per image: opening is seven ``np.load(mmap_mode="r")``
  calls whatever the dataset size, and an image's boxes are one contiguous slice.
- ``.npy`` rather than raw bytes: numpy checks dtype and shape from each file's header, and any
  numpy reads the files without this module.
- Per-image extents and flags, computed once when writing: the checks made when a dataset is
  built (bounds against each image's size, finiteness, x2 >= x1, the convention statistics of
  :mod:`wsod_d2.data.proposals.conventions`) read these MB-sized arrays instead of GB of boxes;
  only a flagged image (then failing with the pickle path's message) and the few hundred images
  the swap statistic samples are read in full.
- ``uid``: a random number per written store; references carry it, so a store rewritten at the
  same path while a dataset built from the old one is still in use fails loudly instead of
  reading other images' rows.

Writing streams, atomically: :mod:`wsod_d2.data.proposals.store_writer`.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "FORMAT",
    "MALFORMED",
    "NON_FINITE",
    "ProposalStore",
    "has_meta",
    "is_proposal_store",
    "open_proposal_store",
    "source_kind",
]

# meta.json's "format"; its "version" is VERSION.
FORMAT = "wsod_d2 proposal store"
VERSION = 1
# Bits of flags.npy.
NON_FINITE = 1
MALFORMED = 2
_ARRAYS = ("boxes", "logits", "offsets", "ids", "id_order", "extents", "flags")


def is_proposal_store(path: str) -> bool:
    """Whether ``path`` names a store (a directory) rather than a proposal pickle (a file)."""
    return os.path.isdir(path)


def source_kind(path: str) -> str:
    """How errors name ``path``: "proposal store" or "proposal file"."""
    return "proposal store" if is_proposal_store(path) else "proposal file"


def has_meta(path: str) -> bool:
    """Whether the directory ``path`` holds a store's meta.json."""
    return os.path.isfile(os.path.join(path, "meta.json"))


class ProposalStore:
    """
    A store opened for reading: every array memory-mapped, nothing read until used.

    Opening costs the same for 10 or 118k images. :meth:`rows_of` finds images by id
    (vectorised), :meth:`read` returns one image's boxes and logits (copies, in the store's
    order: not sorted, not clipped).
    """

    def __init__(self, path: str):
        self.path = path
        meta_path = os.path.join(path, "meta.json")
        if not has_meta(path):
            raise FileNotFoundError(
                f"proposal store {path}: no meta.json; a directory in DATASETS.PROPOSAL_FILES_* "
                "must be a store written by tools/convert_proposals.py --output-format store"
            )
        with open(meta_path) as f:
            self.meta = json.load(f)
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ValueError(
                f"proposal store {path}: meta.json says format {self.meta.get('format')!r} "
                f"version {self.meta.get('version')!r}; this code reads {FORMAT!r} version "
                f"{VERSION}: rewrite it with tools/convert_proposals.py"
            )
        self.uid = int(self.meta["uid"])
        arrays = {name: self._load(name) for name in _ARRAYS}
        self.boxes, self.logits = arrays["boxes"], arrays["logits"]
        self.offsets, self.ids_array = arrays["offsets"], arrays["ids"]
        self.id_order, self.extents, self.flags = (
            arrays["id_order"],
            arrays["extents"],
            arrays["flags"],
        )
        n, b = int(self.meta["num_images"]), int(self.meta["num_boxes"])
        shapes = {
            "boxes": (b, 4),
            "logits": (b,),
            "offsets": (n + 1,),
            "ids": (n,),
            "id_order": (n,),
            "extents": (n, 4),
            "flags": (n,),
        }
        wrong = {k: arrays[k].shape for k, s in shapes.items() if arrays[k].shape != s}
        if wrong or int(self.offsets[-1]) != b:
            raise ValueError(
                f"proposal store {path} is inconsistent: meta.json says {n} images and {b} "
                f"boxes but the arrays have shapes {wrong or 'as expected'} and the last offset "
                f"is {int(self.offsets[-1])}; rewrite it"
            )

    def _load(self, name: str) -> np.ndarray:
        file = os.path.join(self.path, name + ".npy")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"proposal store {self.path}: {name}.npy is missing")
        return np.load(file, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def id_type(self) -> str:
        return self.meta["id_type"]

    def ids(self, rows: Optional[Sequence[int]] = None) -> List[Any]:
        """The image ids of ``rows`` (all when None) as written (int when every id was)."""
        keys = self.ids_array if rows is None else self.ids_array[np.asarray(rows)]
        return [int(k) for k in keys] if self.id_type == "int" else [str(k) for k in keys]

    def rows_of(self, image_ids: Sequence[Any]) -> np.ndarray:
        """
        (len(image_ids),) int64: the row of each id, matched as ``str(image_id)``, -1 when the
        store has no such image.
        """
        keys = np.array([str(i) for i in image_ids], dtype=str)
        rows = np.full(len(keys), -1, dtype=np.int64)
        if len(self) == 0 or len(keys) == 0:
            return rows
        pos = np.searchsorted(self.ids_array, keys, sorter=self.id_order)
        candidate = np.asarray(self.id_order[np.minimum(pos, len(self) - 1)])
        found = np.asarray(self.ids_array[candidate]) == keys
        rows[found] = candidate[found]
        return rows

    def num_boxes(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) int64 box count of each row."""
        return np.asarray(self.offsets[rows + 1] - self.offsets[rows])

    def read(self, row: int) -> Tuple[np.ndarray, np.ndarray]:
        """(boxes (N, 4) float32 XYXY_ABS, logits (N,) float32) of image ``row``, copied."""
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return np.array(self.boxes[start:stop]), np.array(self.logits[start:stop])


# Stores opened by this process for reading images (DataLoader workers each have their own).
_OPEN_STORES: Dict[str, ProposalStore] = {}


def open_proposal_store(path: str, uid: Optional[int] = None) -> ProposalStore:
    """
    The store at ``path``, opened once per process. With ``uid`` (from a dataset dict's
    reference), a store rewritten since is reopened, and a uid that still differs raises: the
    rows of the reference would belong to other images.
    """
    store = _OPEN_STORES.get(path)
    if store is None or (uid is not None and store.uid != uid):
        store = _OPEN_STORES[path] = ProposalStore(path)
    if uid is not None and store.uid != uid:
        raise RuntimeError(
            f"proposal store {path} was rewritten after the dataset dicts referring to it were "
            f"built (uid {store.uid}, the dicts' {uid}): build the data loader again"
        )
    return store
