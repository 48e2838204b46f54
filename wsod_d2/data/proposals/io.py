"""Read, write, validate and convert precomputed proposal files.

The on-disk format is detectron2's (see ``detectron2.data.build.load_proposals_into_dataset``):
a pickle of a dict with

- ``ids``: list of image ids (str or int, matched to ``dataset_dict["image_id"]`` via ``str``),
- ``boxes``: list of (N_i, 4) float32 arrays,
- ``objectness_logits``: list of (N_i,) float32 arrays (higher = earlier in top-k),
- ``bbox_mode``: the ``BoxMode`` of ``boxes``; we always write ``XYXY_ABS`` (stored as its int).

Boxes are continuous 0-based pixel coordinates (detectron2's convention): a box covering the
pixel columns ``a..b`` (0-based, inclusive) is ``x1 = a, x2 = b + 1``; so a full-image box is
``[0, 0, W, H]``. See ``docs/proposals.md`` for the conventions of the converted formats.
"""

import logging
import os
import pickle
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import scipy.io
from detectron2.structures import BoxMode

__all__ = [
    "atomic_pickle_dump",
    "rank_logits",
    "read_image_set",
    "save_proposal_file",
    "load_proposal_file",
    "attach_proposals",
    "convert_selective_search_mat",
    "convert_wetectron_pkl",
]

logger = logging.getLogger(__name__)

# Detectron1 / wetectron key names, renamed on load exactly as detectron2 does.
_LEGACY_KEYS = {"indexes": "ids", "scores": "objectness_logits"}
# scipy.io.matlab.matfile_version() major number of MATLAB v7.3 (HDF5) files.
_MAT_V73_MAJOR = 2
# Box modes attach_proposals can convert to XYXY_ABS without the image size.
_ABS_MODES = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)


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


def _plain_id(image_id: Any) -> Any:
    """numpy scalars -> python int / str so pickles do not depend on numpy scalar types."""
    if isinstance(image_id, np.integer):
        return int(image_id)
    if isinstance(image_id, np.str_):
        return str(image_id)
    return image_id


def _as_boxes(boxes: Any, where: str) -> np.ndarray:
    """Any (N, 4) array-like (or an empty one of any shape) -> (N, 4) float32."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape (N, 4), got {arr.shape}")
    return arr


def _as_logits(logits: Any, num_boxes: int, where: str) -> np.ndarray:
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
        image_boxes = _as_boxes(boxes[i], where)
        if objectness_logits is None:
            image_logits = np.zeros(len(image_boxes), dtype=np.float32)
        else:
            image_logits = _as_logits(objectness_logits[i], len(image_boxes), where)
        out_ids.append(_plain_id(image_id))
        out_boxes.append(image_boxes)
        out_logits.append(image_logits)
    data = {
        "ids": out_ids,
        "boxes": out_boxes,
        "objectness_logits": out_logits,
        "bbox_mode": int(BoxMode(bbox_mode)),
    }
    atomic_pickle_dump(data, path)


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
    ids = [_plain_id(i) for i in data["ids"]]
    if len(data["boxes"]) != len(ids):
        raise ValueError(f"proposal file {path}: {len(ids)} ids but {len(data['boxes'])} boxes")
    boxes = [_as_boxes(b, f"{path}: image id {i!r}") for i, b in zip(ids, data["boxes"])]
    if "objectness_logits" in data:
        if len(data["objectness_logits"]) != len(ids):
            raise ValueError(
                f"proposal file {path}: {len(ids)} ids but "
                f"{len(data['objectness_logits'])} objectness_logits"
            )
        logits = [
            _as_logits(s, len(b), f"{path}: image id {i!r}")
            for i, b, s in zip(ids, boxes, data["objectness_logits"])
        ]
    else:
        logits = [np.zeros(len(b), dtype=np.float32) for b in boxes]
    try:
        bbox_mode = BoxMode(data.get("bbox_mode", BoxMode.XYXY_ABS))
    except ValueError as e:
        raise ValueError(f"proposal file {path}: unknown bbox_mode {data['bbox_mode']!r}") from e
    return {
        "ids": ids,
        "boxes": boxes,
        "objectness_logits": logits,
        "bbox_mode": bbox_mode,
        "has_bbox_mode": "bbox_mode" in data,
    }


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


def attach_proposals(
    dataset_dicts: List[Dict[str, Any]],
    proposal_file: str,
    *,
    bounds_tolerance: float = 1.0,
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
        raise ValueError(
            f"{_describe(proposal_file, missing[0])} has no proposals in the file "
            f"({len(missing)} of {len(dataset_dicts)} dataset images are missing; "
            "was the file made for another dataset or split?)"
        )

    out = []
    num_boxes = 0
    for record in dataset_dicts:
        i = index_of[str(record["image_id"])]
        boxes = BoxMode.convert(data["boxes"][i], mode, BoxMode.XYXY_ABS)
        logits = data["objectness_logits"][i]
        boxes = _check_image_boxes(boxes, logits, record, proposal_file, bounds_tolerance)
        order = np.argsort(-logits, kind="stable")
        new_record = dict(record)
        new_record["proposal_boxes"] = boxes[order]
        new_record["proposal_objectness_logits"] = logits[order]
        new_record["proposal_bbox_mode"] = BoxMode.XYXY_ABS
        out.append(new_record)
        num_boxes += len(boxes)
    logger.info(
        "Attached proposals from %s to %d images (%.1f per image).",
        proposal_file,
        len(out),
        num_boxes / max(len(out), 1),
    )
    return out


def _select_ids(
    ids: List[Any], image_ids: Optional[Sequence[str]], path: str, key_of=str
) -> List[int]:
    """
    Positions in ``ids`` of ``image_ids`` (in that order), matching ``key_of(image_id)`` against
    ``key_of(id)``; all positions when ``image_ids`` is None.
    """
    if image_ids is None:
        return list(range(len(ids)))
    position = {key_of(image_id): i for i, image_id in enumerate(ids)}
    selected = []
    for image_id in image_ids:
        key = key_of(image_id)
        if key not in position:
            raise ValueError(f"{path} has no proposals for image id {image_id!r}")
        selected.append(position[key])
    return selected


def _mat_scalar(value: Any) -> Any:
    """An entry of a .mat ``images`` array (nested 1-element arrays, str or number) -> str/int."""
    while isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            value = "".join(value.ravel().tolist())
        elif value.size == 1:
            value = value.ravel()[0]
        else:
            raise ValueError(f"cannot read an image id from an array of shape {value.shape}")
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("latin1")
    if isinstance(value, str):
        return value.strip()
    if float(value) != int(value):
        raise ValueError(f"non-integer numeric image id {value!r}")
    return int(value)


def _read_mat_v5(mat_path: str):
    """(boxes cells, image ids or None) of a MATLAB v4/v5/v7 file via scipy."""
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as e:
        raise ValueError(f"{mat_path} is not a readable MATLAB file ({e!r})") from e
    if "boxes" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{mat_path} has no variable 'boxes' (variables: {keys})")
    cells = mat["boxes"].ravel()
    # A 1-image cell array can come back as the bare numeric matrix.
    if cells.dtype != object:
        cells = [mat["boxes"]]
    images = None
    if "images" in mat:
        images = [_mat_scalar(v) for v in mat["images"].ravel()]
    return list(cells), images


def _h5_value(f, obj) -> Any:
    """A v7.3 dataset -> numpy in MATLAB's (row, column) layout, or a str for char arrays."""
    import h5py

    if isinstance(obj, h5py.Reference):
        obj = f[obj]
    if obj.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    # HDF5 stores MATLAB arrays column-major, i.e. transposed.
    value = obj[()].T
    matlab_class = obj.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode()
    if matlab_class == "char":
        return "".join(chr(c) for c in value.ravel())
    return value


def _read_mat_v73(mat_path: str):
    """(boxes cells, image ids or None) of a MATLAB v7.3 (HDF5) file via h5py."""
    try:
        import h5py
    except ImportError as e:
        raise ImportError(
            f"{mat_path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py"
        ) from e
    with h5py.File(mat_path, "r") as f:
        if "boxes" not in f:
            raise ValueError(f"{mat_path} has no variable 'boxes' (variables: {sorted(f.keys())})")
        cells = [_h5_value(f, ref) for ref in f["boxes"][()].ravel()]
        images = None
        if "images" in f:
            node = f["images"]
            if node.dtype.kind == "O":
                images = [_mat_scalar(_h5_value(f, ref)) for ref in node[()].ravel()]
            else:
                value = _h5_value(f, node)
                images = (
                    [value] if isinstance(value, str) else [_mat_scalar(v) for v in value.ravel()]
                )
    return cells, images


def convert_selective_search_mat(
    mat_path: str, image_ids: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """
    Convert a selective-search ``.mat`` file (Fast R-CNN / OICR / PCL distribution, e.g.
    ``voc_2007_trainval.mat``) to the detectron2 proposal format.

    The file holds ``boxes``, a 1 x N cell array of (N_i, 4) matrices, 1-based inclusive pixel
    indices in column order (y1, x1, y2, x2), and ``images``, the N image ids. A box covering the
    1-based pixels ``x1..x2`` is the continuous box ``[x1 - 1, x2]`` (as detectron2's VOC loader
    converts VOC annotations), so the result is ``(x1 - 1, y1 - 1, x2, y2)``.

    Args:
        mat_path: MATLAB v5 (read with scipy) or v7.3 (needs h5py) file.
        image_ids: keep only these ids, in this order (e.g. an ``ImageSets`` list); if the file
            has no ``images`` variable, they name the cells positionally.

    Returns:
        dict with ``ids``, ``boxes`` ((N_i, 4) float32 XYXY_ABS), ``objectness_logits``
        (``rank_logits``: the file's order) and ``bbox_mode``.
    """
    if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"selective-search .mat file not found: {mat_path}")
    try:
        major, _ = scipy.io.matlab.matfile_version(mat_path)
    except Exception as e:
        raise ValueError(f"{mat_path} is not a MATLAB file ({e!r})") from e
    if major == _MAT_V73_MAJOR:
        cells, images = _read_mat_v73(mat_path)
    else:
        cells, images = _read_mat_v5(mat_path)
    if images is None:
        if image_ids is None or len(image_ids) != len(cells):
            raise ValueError(
                f"{mat_path} has no 'images' variable; pass the image ids of its {len(cells)} "
                "cells in order (--image-set)"
            )
        images, image_ids = list(image_ids), None
    if len(images) != len(cells):
        raise ValueError(f"{mat_path}: {len(images)} images but {len(cells)} box cells")
    ids, boxes, logits = [], [], []
    for i in _select_ids(images, image_ids, mat_path):
        # float64 first: the files often store uint16, where "- 1" would wrap around 0.
        raw = np.asarray(cells[i], dtype=np.float64)
        raw = raw.reshape(0, 4) if raw.size == 0 else raw
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise ValueError(f"{mat_path}: image {images[i]!r} has boxes of shape {raw.shape}")
        y1, x1, y2, x2 = raw.T
        boxes.append(np.stack([x1 - 1, y1 - 1, x2, y2], axis=1).astype(np.float32))
        logits.append(rank_logits(len(raw)))
        ids.append(images[i])
    return {"ids": ids, "boxes": boxes, "objectness_logits": logits, "bbox_mode": BoxMode.XYXY_ABS}


def _wetectron_key(image_id: Any) -> str:
    """wetectron stores VOC ids as int("000005") == 5 and int("2008_000002") == 2008000002."""
    text = str(image_id)
    try:
        return str(int(text))
    except ValueError:
        return text


def convert_wetectron_pkl(
    pkl_path: str, image_ids: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """
    Convert a wetectron / Detectron1 proposal pickle (keys ``boxes``, ``scores``, ``indexes``)
    to the detectron2 proposal format.

    wetectron's boxes are 0-based inclusive pixel indices (maskrcnn-benchmark's ``TO_REMOVE = 1``
    convention; its VOC selective-search files are the Fast R-CNN ``.mat`` boxes minus 1 in all
    four coordinates), so the continuous box is ``(x1, y1, x2 + 1, y2 + 1)``. Its VOC ids are
    ints (``int("000005") == 5``); COCO ids are the COCO image ids.

    Args:
        pkl_path: the wetectron pickle.
        image_ids: keep only these ids, in this order, and use them as the output ids (restores
            VOC's zero-padded string ids: "000005" matches the file's 5).

    Returns:
        dict with ``ids``, ``boxes`` ((N_i, 4) float32 XYXY_ABS), ``objectness_logits`` (the
        file's scores, or ``rank_logits`` when the file has none or they are all equal, as in the
        selective-search files where they are all 0) and ``bbox_mode``.
    """
    data = load_proposal_file(pkl_path)
    if data["has_bbox_mode"]:
        raise ValueError(
            f"{pkl_path} has a 'bbox_mode' key: it is already a detectron2 proposal file "
            "(converting it again would shift x2, y2 by one pixel)"
        )
    ids, boxes, logits = [], [], []
    key_of = _wetectron_key if image_ids is not None else str
    for i, out_id in zip(
        _select_ids(data["ids"], image_ids, pkl_path, key_of=key_of),
        image_ids if image_ids is not None else data["ids"],
    ):
        image_boxes = data["boxes"][i].copy()
        image_boxes[:, 2:] += 1.0
        scores = data["objectness_logits"][i]
        if len(scores) and np.all(scores == scores[0]):
            scores = rank_logits(len(scores))
        ids.append(out_id)
        boxes.append(image_boxes)
        logits.append(scores)
    return {"ids": ids, "boxes": boxes, "objectness_logits": logits, "bbox_mode": BoxMode.XYXY_ABS}
