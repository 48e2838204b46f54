"""The proposal file format: write, read, rank logits and image-set lists.

The on-disk format is detectron2's (see ``detectron2.data.build.load_proposals_into_dataset``):
a pickle of a dict with

- ``ids``: list of image ids (str or int, matched to ``dataset_dict["image_id"]`` via ``str``),
- ``boxes``: list of (N_i, 4) float32 arrays,
- ``objectness_logits``: list of (N_i,) float32 arrays (higher = earlier in top-k),
- ``bbox_mode``: the ``BoxMode`` of ``boxes``; we always write ``XYXY_ABS`` (stored as its int).

Boxes are continuous 0-based pixel coordinates (detectron2's convention): a box covering the
pixel columns ``a..b`` (0-based, inclusive) is ``x1 = a, x2 = b + 1``; so a full-image box is
``[0, 0, W, H]``. Checking a file against a dataset is :mod:`wsod_d2.data.proposals.attach`;
other formats are converted by :mod:`wsod_d2.data.proposals.converters` (conventions in
``docs/proposals.md``). COCO-size sets are better kept as a memory-mapped proposal store
(:mod:`wsod_d2.data.proposals.store`), read per image instead of held by every process.
"""

import os
import pickle
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode

__all__ = [
    "ABS_BOX_MODES",
    "as_boxes",
    "as_logits",
    "atomic_pickle_dump",
    "check_box_mode",
    "plain_id",
    "proposal_image",
    "read_proposal_pickle",
    "rank_logits",
    "read_image_set",
    "save_proposal_file",
    "load_proposal_file",
]

# Box modes a proposal source may use: convertible to XYXY_ABS without the image size.
ABS_BOX_MODES = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)


def check_box_mode(mode: BoxMode, source: str) -> None:
    """ValueError naming ``source`` unless ``mode`` is one of ABS_BOX_MODES."""
    if mode not in ABS_BOX_MODES:
        raise ValueError(
            f"{source}: bbox_mode {mode.name} is not supported; "
            f"use one of {[m.name for m in ABS_BOX_MODES]}"
        )


# Detectron1 / wetectron key names, renamed on load exactly as detectron2 does.
_LEGACY_KEYS = {"indexes": "ids", "scores": "objectness_logits"}


def atomic_pickle_dump(obj: Any, path: str) -> None:
    """
    Pickle ``obj`` to ``path`` so that readers never see a partial file: write a temporary file
    in the same directory, fsync it, then ``os.replace`` it over ``path``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def rank_logits(num_boxes: int) -> np.ndarray:
    """
    Scores for proposals that have none (selective search): ``0, -1, -2, ...``.

    They strictly decrease with the position in the list, so sorting by score (as detectron2's
    loader and ``transform_proposals``' top-k do) keeps the generator's own order.

    Returns:
        (num_boxes,) float32
    """
    return -np.arange(num_boxes, dtype=np.float32)


def read_image_set(path: str) -> List[str]:
    """Image ids of a VOC-style image-set file (``ImageSets/Main/trainval.txt``), one per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image-set file not found: {path}")
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f"image-set file {path} lists no image ids")
    return ids


def plain_id(image_id: Any) -> Any:
    """numpy scalars -> python int / str so pickles do not depend on numpy scalar types."""
    if isinstance(image_id, np.integer):
        return int(image_id)
    if isinstance(image_id, np.str_):
        return str(image_id)
    return image_id


def as_boxes(boxes: Any, where: str) -> np.ndarray:
    """Any (N, 4) array-like (or an empty one of any shape) -> (N, 4) float32."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape (N, 4), got {arr.shape}")
    return arr


def as_logits(logits: Any, num_boxes: int, where: str) -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float32).reshape(-1)
    if arr.shape[0] != num_boxes:
        raise ValueError(f"{where}: {arr.shape[0]} objectness logits for {num_boxes} boxes")
    return arr


def save_proposal_file(
    path: str,
    ids: Sequence[Any],
    boxes: Sequence[Any],
    objectness_logits: Optional[Sequence[Any]] = None,
    bbox_mode: BoxMode = BoxMode.XYXY_ABS,
) -> None:
    """
    Write a detectron2 proposal file atomically.

    Args:
        path: output ``.pkl`` path; parent directories are created.
        ids: image ids, unique (compared as ``str``).
        boxes: per image, (N_i, 4) boxes in ``bbox_mode``.
        objectness_logits: per image, (N_i,) scores; all 0 when None.
        bbox_mode: mode of ``boxes``; stored as its int value so that unpickling does not need
            detectron2 (its loader accepts it through ``BoxMode(int)``).
    """
    if len(ids) != len(boxes):
        raise ValueError(f"{path}: {len(ids)} ids but {len(boxes)} box arrays")
    if objectness_logits is not None and len(objectness_logits) != len(ids):
        raise ValueError(f"{path}: {len(ids)} ids but {len(objectness_logits)} logit arrays")
    seen = set()
    out_ids, out_boxes, out_logits = [], [], []
    for i, image_id in enumerate(ids):
        key = str(image_id)
        if key in seen:
            raise ValueError(f"{path}: image id {image_id!r} appears more than once")
        seen.add(key)
        where = f"{path}: image id {image_id!r}"
        image_boxes = as_boxes(boxes[i], where)
        if objectness_logits is None:
            image_logits = np.zeros(len(image_boxes), dtype=np.float32)
        else:
            image_logits = as_logits(objectness_logits[i], len(image_boxes), where)
        out_ids.append(plain_id(image_id))
        out_boxes.append(image_boxes)
        out_logits.append(image_logits)
    data = {
        "ids": out_ids,
        "boxes": out_boxes,
        "objectness_logits": out_logits,
        "bbox_mode": int(BoxMode(bbox_mode)),
    }
    atomic_pickle_dump(data, path)


def read_proposal_pickle(path: str) -> Dict[str, Any]:
    """
    The dict of a proposal pickle with the legacy keys renamed, the list lengths checked,
    ``ids`` as plain ints / strs, ``bbox_mode`` a BoxMode and ``has_bbox_mode``; the arrays as
    stored (not converted: :func:`proposal_image` converts one image).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"proposal file not found: {path}")
    try:
        with open(path, "rb") as f:
            # latin1 reads the Python 2 pickles distributed by Detectron1 and wetectron.
            raw = pickle.load(f, encoding="latin1")
    except Exception as e:
        raise ValueError(f"proposal file {path} is not a readable pickle ({e!r})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"proposal file {path} holds a {type(raw).__name__}, expected a dict")
    data = dict(raw)
    for old, new in _LEGACY_KEYS.items():
        if old in data and new not in data:
            data[new] = data.pop(old)
    missing = [k for k in ("ids", "boxes") if k not in data]
    if missing:
        raise ValueError(
            f"proposal file {path} lacks key(s) {missing}; found {sorted(raw.keys())} "
            "(expected ids/indexes, boxes, objectness_logits/scores, bbox_mode)"
        )
    data["ids"] = [plain_id(i) for i in data["ids"]]
    num = len(data["ids"])
    if len(data["boxes"]) != num:
        raise ValueError(f"proposal file {path}: {num} ids but {len(data['boxes'])} boxes")
    if "objectness_logits" in data and len(data["objectness_logits"]) != num:
        raise ValueError(
            f"proposal file {path}: {num} ids but "
            f"{len(data['objectness_logits'])} objectness_logits"
        )
    try:
        data["has_bbox_mode"] = "bbox_mode" in data
        data["bbox_mode"] = BoxMode(data.get("bbox_mode", BoxMode.XYXY_ABS))
    except ValueError as e:
        raise ValueError(f"proposal file {path}: unknown bbox_mode {data['bbox_mode']!r}") from e
    return data


def proposal_image(data: Dict[str, Any], i: int, path: str) -> Tuple[Any, np.ndarray, np.ndarray]:
    """(id, (N_i, 4) float32 boxes, (N_i,) float32 logits) of image ``i`` of a
    :func:`read_proposal_pickle` dict, converted now (logits all 0 when the file has none)."""
    image_id = data["ids"][i]
    where = f"{path}: image id {image_id!r}"
    boxes = as_boxes(data["boxes"][i], where)
    if "objectness_logits" not in data:
        return image_id, boxes, np.zeros(len(boxes), dtype=np.float32)
    return image_id, boxes, as_logits(data["objectness_logits"][i], len(boxes), where)


def load_proposal_file(path: str) -> Dict[str, Any]:
    """
    Read a detectron2 (or Detectron1 / wetectron) proposal file.

    The legacy keys ``indexes`` and ``scores`` are renamed to ``ids`` and ``objectness_logits``,
    as detectron2 does; missing ``objectness_logits`` become zeros and a missing ``bbox_mode``
    means ``XYXY_ABS``.

    Returns:
        dict with ``ids`` (list), ``boxes`` (list of (N_i, 4) float32), ``objectness_logits``
        (list of (N_i,) float32), ``bbox_mode`` (BoxMode) and ``has_bbox_mode`` (whether the
        file stored one).
    """
    data = read_proposal_pickle(path)
    converted = [proposal_image(data, i, path) for i in range(len(data["ids"]))]
    return {
        "ids": data["ids"],
        "boxes": [boxes for _, boxes, _ in converted],
        "objectness_logits": [logits for _, _, logits in converted],
        "bbox_mode": data["bbox_mode"],
        "has_bbox_mode": data["has_bbox_mode"],
    }
