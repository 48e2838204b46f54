"""Selective-search proposals for a dataset, written as a detectron2 proposal file.

``selective_search`` computes one image's boxes; ``generate_proposals`` runs it over dataset
dicts in worker processes, one resumable chunk file per ``chunk_size`` images, and merges the
chunks into a proposal file (format: ``wsod_d2.data.proposals.io``).

Selective search gives no scores; boxes keep the backend's own ranking (OpenCV: the paper's
pseudo-random "level x random" ranking) and get ``rank_logits`` (0, -1, -2, ...), so top-k by
score keeps that order.
"""

import ctypes
import logging
import multiprocessing
import os
import pickle
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from wsod_d2.data.proposals.io import atomic_pickle_dump, rank_logits, save_proposal_file

__all__ = ["MODES", "BACKENDS", "selective_search", "generate_proposals", "skipped_images_file"]

logger = logging.getLogger(__name__)

# Strategy names shared by both backends -> OpenCV's switch method.
_OPENCV_SWITCH = {
    "single": "switchToSingleStrategy",
    "fast": "switchToSelectiveSearchFast",
    "quality": "switchToSelectiveSearchQuality",
}
MODES = tuple(_OPENCV_SWITCH)
BACKENDS = ("opencv", "selective_search")


def _seed_c_rand(seed: int) -> None:
    """
    OpenCV's selective search ranks regions with C ``rand()``, so its output order depends on
    every earlier call in the process; re-seeding libc makes each image's result reproducible
    (and independent of which worker handles it).
    """
    if os.name == "posix":
        # glibc treats srand(0) as srand(1): shift so that seeds 0 and 1 differ.
        ctypes.CDLL(None).srand(ctypes.c_uint(seed + 1))


def _opencv_boxes(image_bgr: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """(M, 4) float64 XYXY boxes of OpenCV's selective search, in OpenCV's order."""
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(image_bgr)
    getattr(ss, _OPENCV_SWITCH[mode])()
    _seed_c_rand(seed)
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
    # cv::Rect (x, y, w, h) covers pixels x..x+w-1, i.e. the continuous box [x, x + w].
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)


def _package_boxes(image_bgr: np.ndarray, mode: str) -> np.ndarray:
    """(M, 4) float64 XYXY boxes of the PyPI ``selective-search`` package, in its order."""
    try:
        from selective_search import selective_search as package_selective_search
    except ImportError as e:
        raise ImportError(
            "backend='selective_search' needs the PyPI package selective-search: "
            "pip install selective-search (or use backend='opencv')"
        ) from e
    # The package takes RGB and returns (x1, y1, x2, y2) with exclusive x2, y2 (slice stops).
    boxes = package_selective_search(np.ascontiguousarray(image_bgr[:, :, ::-1]), mode=mode)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _check_options(
    mode: str, backend: str, max_side: int, min_box_size: int, max_proposals: int
) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if max_side < 1 or max_proposals < 1 or min_box_size < 0:
        raise ValueError(
            f"need max_side >= 1, max_proposals >= 1, min_box_size >= 0; got {max_side}, "
            f"{max_proposals}, {min_box_size}"
        )


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 BGR."""
    if image.dtype != np.uint8:
        raise ValueError(f"selective_search expects a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"selective_search expects an (H, W[, 1|3|4]) image, got {image.shape}")


def selective_search(
    image_bgr: np.ndarray,
    *,
    mode: str = "fast",
    max_side: int = 500,
    min_box_size: int = 10,
    max_proposals: int = 2000,
    backend: str = "opencv",
    seed: int = 0,
) -> np.ndarray:
    """
    Selective-search proposals of one image.

    The image is downscaled (never upscaled) so its longer side is at most ``max_side``, the
    search runs there, and boxes are scaled back per axis to the original image.

    Args:
        image_bgr: (H, W, 3) uint8 BGR (as ``cv2.imread``); gray and BGRA are converted.
        mode: "single", "fast" or "quality" strategy set (Uijlings et al., IJCV 2013).
        max_side: longest side, in pixels, of the image the search runs on.
        min_box_size: drop boxes whose width or height, in original pixels, is below this.
        max_proposals: keep at most this many boxes, the first ones in the backend's order.
        backend: "opencv" (cv2.ximgproc) or "selective_search" (PyPI package).
        seed: seed of C ``rand()`` for OpenCV's ranking, set before every image.

    Returns:
        (N, 4) float32 XYXY_ABS boxes in the original image's coordinates, unique, in the
        backend's ranking order; N may be 0 if every box is smaller than ``min_box_size``.
    """
    _check_options(mode, backend, max_side, min_box_size, max_proposals)
    image = _as_bgr(image_bgr)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (small_w, small_h) != (width, height):
        image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)

    if backend == "opencv":
        boxes = _opencv_boxes(image, mode, seed)
    else:
        boxes = _package_boxes(image, mode)

    boxes = boxes * np.array([width / small_w, height / small_h] * 2)
    np.clip(boxes[:, 0::2], 0.0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height, out=boxes[:, 1::2])
    sides = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(sides >= min_box_size).all(axis=1)]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    return boxes[:max_proposals].astype(np.float32)


def _init_worker() -> None:
    # One OpenCV thread per worker process: the pool is the parallelism.
    cv2.setNumThreads(1)


class UnreadableImageError(ValueError):
    """An image file that is missing or does not decode completely."""


def skipped_images_file(output_file: str) -> str:
    """Where generate_proposals(skip_unreadable=True) lists the images it left out."""
    return output_file + ".skipped.txt"


def _read_image_fully(file_name: str, image_id: Any) -> np.ndarray:
    """(H, W, 3) uint8 BGR; UnreadableImageError naming the file unless every byte decodes (a
    truncated JPEG otherwise decodes to a gray tail with only libjpeg's warning)."""
    where = f"image {file_name!r} (image id {image_id!r})"
    try:
        with Image.open(file_name) as pil_image:
            pil_image.load()
    except Exception as e:
        raise UnreadableImageError(
            f"cannot decode {where} completely (missing, unreadable, truncated or corrupt file): "
            f"{e}"
        ) from e
    image = cv2.imread(file_name, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(f"cannot read {where}: missing, unreadable or corrupt file")
    return image


def _image_proposals(record: Tuple[Any, str, Optional[int], Optional[int]], params: Dict):
    """(N, 4) float32 boxes of one (image_id, file_name, height, width) record."""
    image_id, file_name, height, width = record
    image = _read_image_fully(file_name, image_id)
    if height is not None and width is not None and image.shape[:2] != (height, width):
        raise ValueError(
            f"image {file_name!r} (image id {image_id!r}) is {image.shape[1]}x{image.shape[0]} "
            f"(WxH) but its dataset dict says {width}x{height}"
        )
    boxes = selective_search(image, **params)
    if len(boxes) == 0:
        # An image without proposals cannot be trained on; the whole image is a valid proposal.
        logger.warning(
            "No selective-search box >= min_box_size for %s (image id %r); using the full image.",
            file_name,
            image_id,
        )
        boxes = np.array([[0, 0, image.shape[1], image.shape[0]]], dtype=np.float32)
    return boxes


def _process_chunk(task) -> Tuple[int, int]:
    """Compute and atomically write one chunk file; returns (chunk index, number of images)."""
    index, path, records, params, skip_unreadable = task
    # "boxes" is None for an image left out; "ids" stay those of the whole chunk (its identity).
    boxes, skipped = [], []
    for record in records:
        try:
            boxes.append(_image_proposals(record, params))
        except UnreadableImageError as e:
            if not skip_unreadable:
                raise UnreadableImageError(
                    f"{e}; fix or remove the image, or pass --skip-unreadable to leave it out "
                    "of the proposal file (listed in <output>.skipped.txt)"
                ) from None
            logger.warning("Skipping %s", e)
            boxes.append(None)
            skipped.append((record[0], record[1], str(e)))
    chunk = {
        "ids": [r[0] for r in records],
        "boxes": boxes,
        "objectness_logits": [None if b is None else rank_logits(len(b)) for b in boxes],
        "params": params,
        "skipped": skipped,
    }
    atomic_pickle_dump(chunk, path)
    return index, len(records)


def _load_chunk(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:
        logger.warning("Unreadable chunk %s (%r); recomputing it.", path, e)
        return None


def _reusable(path: str, ids: List[Any], params: Dict[str, Any]) -> bool:
    """Whether the chunk file at ``path`` holds exactly ``ids`` computed with ``params``."""
    if not os.path.isfile(path):
        return False
    chunk = _load_chunk(path)
    if chunk is None:
        return False
    if chunk.get("ids") != ids or chunk.get("params") != params or "skipped" not in chunk:
        logger.warning("Chunk %s was made for other images or parameters; recomputing it.", path)
        return False
    return True


def _record_skipped(output_file: str, skipped: List[Tuple[Any, str, str]]) -> None:
    """Write (or remove a stale) list of the images left out of ``output_file``."""
    path = skipped_images_file(output_file)
    if not skipped:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w") as f:
        f.write("# image_id\tfile_name\treason: left out by generate_proposals(skip_unreadable)\n")
        f.writelines(f"{i}\t{name}\t{reason}\n" for i, name, reason in skipped)
    logger.warning(
        "Left %d unreadable image(s) out of %s; listed in %s.", len(skipped), output_file, path
    )


def generate_proposals(
    dataset_dicts: Sequence[Dict[str, Any]],
    output_file: str,
    *,
    workers: int = 2,
    mode: str = "fast",
    max_side: int = 500,
    min_box_size: int = 10,
    max_proposals: int = 2000,
    backend: str = "opencv",
    seed: int = 0,
    chunk_size: int = 50,
    progress: bool = True,
    skip_unreadable: bool = False,
) -> str:
    """
    Selective search over a dataset, written as a detectron2 proposal file.

    Chunks of ``chunk_size`` images are computed by ``workers`` processes (1 = in this process)
    and written atomically to ``<output_file>.parts/chunk_XXXXX.pkl``; a rerun after a kill skips
    the chunks whose stored ids and parameters match. At the end the chunks are merged into
    ``output_file`` (ids in dataset order) and the parts directory is removed. Images whose
    boxes are all below ``min_box_size`` get the single full-image box.

    Args:
        dataset_dicts: detectron2 dataset dicts with ``image_id``, ``file_name`` and optionally
            ``height``/``width`` (checked against the decoded image).
        output_file: the proposal ``.pkl`` to write.
        workers: number of processes.
        chunk_size: images per chunk file (the unit of resumption).
        progress: show a tqdm bar.
        skip_unreadable: leave out images that do not decode completely (listed with the reason
            in ``skipped_images_file(output_file)``) instead of stopping on the first one.
        mode, max_side, min_box_size, max_proposals, backend, seed: see ``selective_search``.

    Returns:
        output_file
    """
    if workers < 1 or chunk_size < 1:
        raise ValueError(f"need workers >= 1 and chunk_size >= 1, got {workers}, {chunk_size}")
    _check_options(mode, backend, max_side, min_box_size, max_proposals)
    if not dataset_dicts:
        raise ValueError("generate_proposals got no dataset dicts")
    params = dict(
        mode=mode,
        max_side=max_side,
        min_box_size=min_box_size,
        max_proposals=max_proposals,
        backend=backend,
        seed=seed,
    )
    records, seen = [], set()
    for d in dataset_dicts:
        if str(d["image_id"]) in seen:
            raise ValueError(f"image id {d['image_id']!r} ({d['file_name']!r}) appears twice")
        seen.add(str(d["image_id"]))
        records.append((d["image_id"], d["file_name"], d.get("height"), d.get("width")))

    start = time.perf_counter()
    parts_dir = output_file + ".parts"
    os.makedirs(parts_dir, exist_ok=True)
    tasks, reused = [], 0
    chunk_paths = []
    for index, begin in enumerate(range(0, len(records), chunk_size)):
        chunk_records = records[begin : begin + chunk_size]
        path = os.path.join(parts_dir, f"chunk_{index:05d}.pkl")
        chunk_paths.append(path)
        if _reusable(path, [r[0] for r in chunk_records], params):
            reused += len(chunk_records)
        else:
            tasks.append((index, path, chunk_records, params, skip_unreadable))
    if reused:
        logger.info(
            "Resuming: %d of %d images already done in %s.", reused, len(records), parts_dir
        )

    with tqdm(
        total=len(records), initial=reused, disable=not progress, desc="selective search"
    ) as bar:
        if workers == 1:
            for task in tasks:
                bar.update(_process_chunk(task)[1])
        elif tasks:
            # spawn, not fork: a fork taken while OpenCV / torch threads hold locks deadlocks.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker) as pool:
                for _, num_images in pool.imap_unordered(_process_chunk, tasks):
                    bar.update(num_images)

    ids, boxes, logits, skipped = [], [], [], []
    for path in chunk_paths:
        with open(path, "rb") as f:
            chunk = pickle.load(f)
        kept = [i for i, b in enumerate(chunk["boxes"]) if b is not None]
        ids += [chunk["ids"][i] for i in kept]
        boxes += [chunk["boxes"][i] for i in kept]
        logits += [chunk["objectness_logits"][i] for i in kept]
        skipped += chunk["skipped"]
    if not ids:
        raise ValueError(f"no image could be read for {output_file}; see the warnings above")
    save_proposal_file(output_file, ids, boxes, logits)
    _record_skipped(output_file, skipped)
    shutil.rmtree(parts_dir)
    num_boxes = sum(len(b) for b in boxes)
    logger.info(
        "Wrote %s: %d images (%d computed now, %d resumed), %.1f proposals per image, %.1f s.",
        output_file,
        len(ids),
        len(ids) - reused,
        reused,
        num_boxes / len(ids),
        time.perf_counter() - start,
    )
    return output_file
