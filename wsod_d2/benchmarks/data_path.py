"""Images per second of the detector's training data path on one core: the training mapper of a
config called in a loop, in one process with one thread, as one DataLoader worker runs it, on
VOC-size JPEG files with ~2000 proposals each, attached as training attaches them; with a
breakdown of where the time goes (cProfile, cumulative seconds of the stages' functions).

Times are the process's CPU time, which other jobs on a shared machine inflate less than wall
time (a worker's file reads hit the page cache here, so it barely waits otherwise)."""
import cProfile
import inspect
import os
import pstats
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes
from PIL import Image

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.common import read_image_checked, with_image_labels
from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.io import rank_logits, save_proposal_file
from wsod_d2.data.wsod.build import build_wsod_train_mapper
from wsod_d2.data.wsod.mapper import WSODDatasetMapper, transform_boxes

__all__ = ["benchmark_data_path", "write_voc_like_dataset"]

# (width, height) of the images, used in turn: VOC 2007's images are 500 px on the long side.
VOC_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))
# The random content is a smooth colour field (this many cells per side) plus pixel noise of
# this amplitude, saved at this JPEG quality: files of ~85 KB, near VOC 2007's mean file size.
CONTENT_CELLS = (24, 32)
NOISE = 20
JPEG_QUALITY = 90
# Random proposals are at least this many pixels wide and tall.
MIN_PROPOSAL_SIDE = 10

# Stages of the breakdown: the functions whose cumulative time each is.
STAGES = {
    "decode": [read_image_checked],
    "photometric": [
        T.BlendTransform.apply_image,
        T.RandomBrightness.get_transform,
        T.RandomContrast.get_transform,
        T.RandomSaturation.get_transform,
    ],
    "resize": [T.ResizeTransform.apply_image],
    "proposals": [WSODDatasetMapper.select_proposals, transform_boxes, Boxes.clip],
    "to-tensor": [np.ascontiguousarray],
}


def _random_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    cells = rng.integers(0, 256, (*CONTENT_CELLS, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC))
    noisy = smooth.astype(np.int16) + rng.integers(-NOISE, NOISE + 1, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _random_proposals(rng: np.random.Generator, width: int, height: int, num: int) -> np.ndarray:
    """(num, 4) integer-valued XYXY boxes inside the image, the first the whole image (as
    selective search's last merge), sides log-uniform between MIN_PROPOSAL_SIDE and the image's."""
    size = np.array([width, height], np.float64)
    side = np.exp(rng.uniform(np.log(MIN_PROPOSAL_SIDE), np.log(size), (num, 2)))
    corner = rng.uniform(0.0, 1.0, (num, 2)) * (size - side)
    boxes = np.round(np.concatenate([corner, corner + side], axis=1))
    boxes[0] = [0, 0, width, height]
    return boxes.astype(np.float32)


def write_voc_like_dataset(
    directory: str, num_images: int, num_proposals: int, num_classes: int, seed: int
) -> List[Dict]:
    """Write ``num_images`` random JPEG files of VOC_SIZES and their proposal file into
    ``directory``; return the training dataset dicts with the proposals attached and checked,
    as the training loader makes them, each with one random image label."""
    rng = np.random.default_rng(seed)
    dicts, boxes = [], []
    for i in range(num_images):
        width, height = VOC_SIZES[i % len(VOC_SIZES)]
        path = os.path.join(directory, f"{i:06d}.jpg")
        _random_image(rng, width, height).save(path, quality=JPEG_QUALITY)
        dicts.append({"file_name": path, "image_id": f"{i:06d}", "height": height, "width": width})
        dicts[-1]["image_labels"] = [int(rng.integers(num_classes))]
        boxes.append(_random_proposals(rng, width, height, num_proposals))
    proposal_file = os.path.join(directory, "proposals.pkl")
    ids = [d["image_id"] for d in dicts]
    save_proposal_file(proposal_file, ids, boxes, [rank_logits(len(b)) for b in boxes])
    dicts = attach_proposals(dicts, proposal_file)
    return with_image_labels("bench", dicts, is_train=True, labels_from_difficult=False)


def _profile_key(function) -> Tuple[str, int, str]:
    """The key of ``function`` in cProfile's statistics."""
    if inspect.isbuiltin(function):
        return ("~", 0, f"<built-in method {function.__module__}.{function.__name__}>")
    code = function.__code__
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _breakdown(mapper, dicts, seed: int) -> Dict[str, Optional[float]]:
    """Milliseconds per image of each of STAGES in one profiled pass (None: none of its
    functions ran)."""
    np.random.seed(seed)
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(lambda: [mapper(d) for d in dicts])
    stats = pstats.Stats(profiler).stats
    out = {}
    for stage, functions in STAGES.items():
        seconds = [stats[k][3] for k in map(_profile_key, functions) if k in stats]
        out[stage] = 1000.0 * sum(seconds) / len(dicts) if seconds else None
    return out


def benchmark_data_path(
    config_files: Sequence[str],
    *,
    num_images: int = 60,
    num_proposals: int = 2000,
    repeats: int = 3,
    seed: int = 0,
) -> List[Dict]:
    """Per config: its training mapper ("mapper", the class name), "views" per image,
    "images_per_s" and "ms_per_image" (median over ``repeats`` passes over ``num_images`` images,
    after one warm-up pass, each pass from the same numpy seed), and the
    "breakdown" of ms per image by stage (from one extra profiled pass, which is slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            cfgs = [get_wsod_cfg(f, ["MODEL.DEVICE", "cpu"]) for f in config_files]
            num_classes = cfgs[0].MODEL.ROI_HEADS.NUM_CLASSES
            dicts = write_voc_like_dataset(directory, num_images, num_proposals, num_classes, seed)
            for path, cfg in zip(config_files, cfgs):
                mapper = build_wsod_train_mapper(cfg)

                def one_pass():
                    np.random.seed(seed)
                    start = time.process_time()
                    outputs = [mapper(d) for d in dicts]
                    return time.process_time() - start, outputs

                _, outputs = one_pass()
                seconds = statistics.median(one_pass()[0] for _ in range(repeats))
                row = {
                    "config": path,
                    "mapper": type(mapper).__name__,
                    "views": len(outputs[0].get("views", [outputs[0]])),
                    "images_per_s": len(dicts) / seconds,
                    "ms_per_image": 1000.0 * seconds / len(dicts),
                    "breakdown": _breakdown(mapper, dicts, seed),
                }
                rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return rows
