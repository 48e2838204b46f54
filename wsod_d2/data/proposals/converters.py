"""Convert third-party proposal files to the detectron2 format of :mod:`wsod_d2.data.proposals.io`.

Two sources: the selective-search ``.mat`` files of Fast R-CNN / OICR / PCL (MATLAB v5 through
scipy, v7.3 through h5py) and the wetectron / Detectron1 pickles. Their box conventions are in
``docs/proposals.md`` and in each converter's docstring. Each has an ``iter_*`` form that yields
one converted image at a time (id, boxes, logits), the input of the streaming store writer
(:func:`wsod_d2.data.proposals.store_writer.write_proposal_store`): the source is held once,
the converted boxes only image by image. :func:`convert_proposals` writes either a pickle or
a store (``tools/convert_proposals.py``).
"""

import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import scipy.io
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.io import (
    check_box_mode,
    proposal_image,
    rank_logits,
    read_proposal_pickle,
    save_proposal_file,
)
from wsod_d2.data.proposals.store_writer import write_proposal_store

__all__ = [
    "OUTPUT_FORMATS",
    "SOURCES",
    "convert_proposals",
    "convert_selective_search_mat",
    "convert_wetectron_pkl",
    "iter_detectron2_pkl",
    "iter_selective_search_mat",
    "iter_wetectron_pkl",
]

# One converted image: (image id, (N, 4) float32 XYXY_ABS boxes, (N,) float32 logits).
Image = Tuple[Any, np.ndarray, np.ndarray]

# scipy.io.matlab.matfile_version() major number of MATLAB v7.3 (HDF5) files.
_MAT_V73_MAJOR = 2


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


def _collect(images: Iterable[Image]) -> Dict[str, Any]:
    """The detectron2 proposal dict of converted images."""
    ids, boxes, logits = [], [], []
    for image_id, image_boxes, image_logits in images:
        ids.append(image_id)
        boxes.append(image_boxes)
        logits.append(image_logits)
    return {"ids": ids, "boxes": boxes, "objectness_logits": logits, "bbox_mode": BoxMode.XYXY_ABS}


def convert_selective_search_mat(
    mat_path: str, image_ids: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """:func:`iter_selective_search_mat` collected into a detectron2 proposal dict (``ids``,
    ``boxes``, ``objectness_logits``, ``bbox_mode``)."""
    return _collect(iter_selective_search_mat(mat_path, image_ids))


def iter_selective_search_mat(
    mat_path: str, image_ids: Optional[Sequence[str]] = None
) -> Iterator[Image]:
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

    Yields:
        per image (id, boxes (N_i, 4) float32 XYXY_ABS, logits (N_i,) ``rank_logits``: the
        file's order).
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
    for i in _select_ids(images, image_ids, mat_path):
        # float64 first: the files often store uint16, where "- 1" would wrap around 0.
        raw = np.asarray(cells[i], dtype=np.float64)
        raw = raw.reshape(0, 4) if raw.size == 0 else raw
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise ValueError(f"{mat_path}: image {images[i]!r} has boxes of shape {raw.shape}")
        y1, x1, y2, x2 = raw.T
        boxes = np.stack([x1 - 1, y1 - 1, x2, y2], axis=1).astype(np.float32)
        yield images[i], boxes, rank_logits(len(raw))


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
    """:func:`iter_wetectron_pkl` collected into a detectron2 proposal dict (``ids``, ``boxes``,
    ``objectness_logits``, ``bbox_mode``)."""
    return _collect(iter_wetectron_pkl(pkl_path, image_ids))


def iter_wetectron_pkl(pkl_path: str, image_ids: Optional[Sequence[str]] = None) -> Iterator[Image]:
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

    Yields:
        per image (id, boxes (N_i, 4) float32 XYXY_ABS, logits (N_i,): the file's scores, or
        ``rank_logits`` when the file has none or they are all equal, as in the selective-search
        files where they are all 0).
    """
    data = read_proposal_pickle(pkl_path)
    if data["has_bbox_mode"]:
        raise ValueError(
            f"{pkl_path} has a 'bbox_mode' key: it is already a detectron2 proposal file "
            "(converting it again would shift x2, y2 by one pixel)"
        )
    key_of = _wetectron_key if image_ids is not None else str
    for i, out_id in zip(
        _select_ids(data["ids"], image_ids, pkl_path, key_of=key_of),
        image_ids if image_ids is not None else data["ids"],
    ):
        _, image_boxes, scores = proposal_image(data, i, pkl_path)
        # as_boxes returns the file's own array when it is float32 already: never edit it.
        image_boxes = image_boxes + np.array([0, 0, 1, 1], dtype=np.float32)
        if len(scores) and np.all(scores == scores[0]):
            scores = rank_logits(len(scores))
        yield out_id, image_boxes, scores


def iter_detectron2_pkl(
    pkl_path: str, image_ids: Optional[Sequence[str]] = None
) -> Iterator[Image]:
    """
    The images of a detectron2 proposal pickle (ours, or any in detectron2's format), one at a
    time, as XYXY_ABS float32; with ``image_ids``, only those (matched as ``str``), in that order.
    """
    data = read_proposal_pickle(pkl_path)
    mode = data["bbox_mode"]
    check_box_mode(mode, pkl_path)
    for i in _select_ids(data["ids"], image_ids, pkl_path):
        image_id, boxes, logits = proposal_image(data, i, pkl_path)
        yield image_id, BoxMode.convert(boxes, mode, BoxMode.XYXY_ABS), logits


# Source formats of convert_proposals: name -> per-image iterator (path, image_ids).
SOURCES = {
    "mat": iter_selective_search_mat,
    "wetectron": iter_wetectron_pkl,
    "pickle": iter_detectron2_pkl,
}
OUTPUT_FORMATS = ("pickle", "store")


def convert_proposals(
    source: str,
    input_path: str,
    output: str,
    *,
    output_format: str = "pickle",
    image_ids: Optional[Sequence[str]] = None,
) -> Dict[str, int]:
    """
    Convert ``input_path`` (a format of SOURCES) to a detectron2 proposal pickle or a proposal
    store at ``output``, both written atomically. A store is written image by image as the
    source is converted (the source held once, never all converted boxes); a pickle needs them
    all first.

    Returns:
        {"num_images", "num_boxes"}
    """
    if source not in SOURCES:
        raise ValueError(
            f"unknown proposal source format {source!r}; choose from {sorted(SOURCES)}"
        )
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; choose from {OUTPUT_FORMATS}")
    images = SOURCES[source](input_path, image_ids)
    if output_format == "store":
        return write_proposal_store(output, images)
    data = _collect(images)
    save_proposal_file(output, data["ids"], data["boxes"], data["objectness_logits"])
    return {"num_images": len(data["ids"]), "num_boxes": sum(len(b) for b in data["boxes"])}
