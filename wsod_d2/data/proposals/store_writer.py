"""Writing a proposal store (format: :mod:`wsod_d2.data.proposals.store`) image by image.

The two big arrays, ``boxes.npy`` and ``logits.npy``, are appended to as images arrive, behind a
``.npy`` header of fixed size that is rewritten with the final row count at the end; the
per-image index (ids, offsets, extents, flags: ~30 bytes per image) is kept in compact arrays
and saved last. Everything goes to a temporary directory next to the target, which is renamed
onto it only when complete: a reader sees the old store or the new one, never a partial one.
"""

import json
import os
import secrets
import shutil
import struct
import tempfile
from array import array
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.conventions import image_extents
from wsod_d2.data.proposals.io import as_boxes, as_logits, check_box_mode, plain_id
from wsod_d2.data.proposals.store import FORMAT, MALFORMED, NON_FINITE, VERSION, has_meta

__all__ = ["ProposalStoreWriter", "write_proposal_store"]

# Bytes of the .npy header reserved for boxes.npy / logits.npy (format 1.0, a multiple of 64 as
# numpy's own): room for any shape, rewritten in place once the row count is known.
_HEADER_BYTES = 128


def _npy_header(dtype: np.dtype, shape: Tuple[int, ...]) -> bytes:
    """A .npy format 1.0 header of exactly _HEADER_BYTES bytes for an array of dtype and shape."""
    text = repr(
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    size = _HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
    if len(text) + 1 > size:
        raise ValueError(f"shape {shape} does not fit a {_HEADER_BYTES}-byte .npy header")
    body = (text + " " * (size - len(text) - 1) + "\n").encode("latin1")
    return np.lib.format.magic(1, 0) + struct.pack("<H", size) + body


class _AppendedArray:
    """A .npy file written row group by row group; the header gets the row count at close."""

    def __init__(self, path: str, dtype: str, row_shape: Tuple[int, ...]):
        self.dtype, self.row_shape, self.rows = np.dtype(dtype), row_shape, 0
        self.file = open(path, "wb")
        self.file.write(_npy_header(self.dtype, (0, *row_shape)))

    def append(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype).data)
        self.rows += len(values)

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, (self.rows, *self.row_shape)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _save(directory: str, name: str, values: np.ndarray) -> None:
    with open(os.path.join(directory, name + ".npy"), "wb") as f:
        np.save(f, values)
        f.flush()
        os.fsync(f.fileno())


class ProposalStoreWriter:
    """
    Write a store image by image, atomically::

        with ProposalStoreWriter("proposals/coco_train.store") as writer:
            for image_id, boxes, logits in source:
                writer.add(image_id, boxes, logits)

    Nothing but the image being added and the per-image index (ids, offsets, extents, flags:
    ~30 bytes per image) is held in memory. The store appears at ``path`` when the ``with``
    block ends without an exception (an existing store there is replaced; any other existing
    file or directory is refused); on an exception the temporary directory is removed.

    Args:
        path: the store directory to create.
        bbox_mode: mode of the boxes given to :meth:`add`; XYWH_ABS is converted, the store
            always holds XYXY_ABS.
    """

    def __init__(self, path: str, bbox_mode: BoxMode = BoxMode.XYXY_ABS):
        self.path = os.path.abspath(path)
        self.bbox_mode = BoxMode(bbox_mode)
        check_box_mode(self.bbox_mode, f"proposal store {path}")
        if os.path.exists(self.path) and not has_meta(self.path):
            raise FileExistsError(
                f"{self.path} exists and is not a proposal store: choose another output path"
            )
        parent = os.path.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(self.path) + ".")
        self.boxes = _AppendedArray(os.path.join(self.tmp, "boxes.npy"), "<f4", (4,))
        self.logits = _AppendedArray(os.path.join(self.tmp, "logits.npy"), "<f4", ())
        self.ids: List[str] = []
        self.all_int = True
        self.offsets = array("q", [0])
        self.extents = array("f")
        self.flags = array("B")

    def add(self, image_id: Any, boxes: Any, logits: Optional[Any] = None) -> None:
        """Append one image: boxes (N, 4) in ``bbox_mode``, logits (N,) (zeros when None)."""
        image_id = plain_id(image_id)
        where = f"proposal store {self.path}: image id {image_id!r}"
        boxes = as_boxes(boxes, where)
        if self.bbox_mode != BoxMode.XYXY_ABS:
            boxes = BoxMode.convert(boxes, self.bbox_mode, BoxMode.XYXY_ABS)
        logits = (
            np.zeros(len(boxes), np.float32)
            if logits is None
            else as_logits(logits, len(boxes), where)
        )
        flag = 0
        if not (np.isfinite(boxes).all() and np.isfinite(logits).all()):
            flag |= NON_FINITE
        if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            flag |= MALFORMED
        # the convention statistics read these as the pickle path computes them from the boxes
        self.extents.extend(image_extents([boxes])[0] if len(boxes) else [np.nan] * 4)
        self.flags.append(flag)
        self.boxes.append(boxes)
        self.logits.append(logits)
        self.offsets.append(self.offsets[-1] + len(boxes))
        self.all_int = self.all_int and isinstance(image_id, int)
        self.ids.append(str(image_id))

    def _index(self) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, id_order); ValueError naming the store and the id when an id repeats."""
        ids = np.array(self.ids, dtype=str) if self.ids else np.zeros(0, dtype="<U1")
        order = np.argsort(ids, kind="stable")
        repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
        if len(repeated):
            first = str(ids[order][repeated[0]])  # a plain str: numpy 2 shows np.str_ in a repr
            raise ValueError(
                f"proposal store {self.path}: image id {first!r} appears more "
                f"than once ({len(repeated)} repeated ids; ids are compared as str)"
            )
        return ids, order.astype(np.int64)

    def commit(self) -> None:
        """Finish the files and move the store into place."""
        self.boxes.close()
        self.logits.close()
        ids, order = self._index()
        _save(self.tmp, "ids", ids)
        _save(self.tmp, "id_order", order)
        _save(self.tmp, "offsets", np.frombuffer(self.offsets, dtype=np.int64))
        _save(self.tmp, "extents", np.frombuffer(self.extents, np.float32).reshape(-1, 4))
        _save(self.tmp, "flags", np.frombuffer(self.flags, dtype=np.uint8))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "num_images": len(ids),
            "num_boxes": self.offsets[-1],
            "bbox_mode": BoxMode.XYXY_ABS.name,
            "id_type": "int" if self.all_int and self.ids else "str",
            # 63 random bits: a store rewritten at the same path gets another uid.
            "uid": secrets.randbits(63),
        }
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _replace_directory(self.tmp, self.path)

    def abort(self) -> None:
        for part in (self.boxes, self.logits):
            if not part.file.closed:
                part.file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "ProposalStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def _replace_directory(tmp: str, path: str) -> None:
    """Rename the finished ``tmp`` onto ``path``; an old store there is moved aside first and
    removed after (directories cannot be renamed over non-empty ones)."""
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
        os.rename(path, os.path.join(old, "store"))
    os.rename(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_proposal_store(
    path: str, items: Iterable[Tuple[Any, Any, Any]], bbox_mode: BoxMode = BoxMode.XYXY_ABS
) -> Dict[str, int]:
    """
    Write ``items``, an iterable of (image id, (N, 4) boxes, (N,) logits or None), as a store.
    The iterable is consumed once, image by image (a generator keeps memory flat).

    Returns:
        {"num_images", "num_boxes"}
    """
    with ProposalStoreWriter(path, bbox_mode) as writer:
        for image_id, boxes, logits in items:
            writer.add(image_id, boxes, logits)
    return {"num_images": len(writer.ids), "num_boxes": writer.offsets[-1]}
