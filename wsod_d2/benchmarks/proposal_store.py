"""Proposal memory at COCO size: detectron2's pickle path against the proposal store (issue #15).

A synthetic COCO-size proposal set (118,287 images x 2000 random boxes inside each image,
float32, seeded) is written once under the cache directory (``$WSOD_D2_BENCHMARK_CACHE``, else
``~/.cache/wsod_d2/benchmark``) as a proposal store (4.7 GB) and reused by later runs; the
pickle of the first N images is written next to it when measured (the full one, 4.7 GB, is
kept too; smaller ones are removed after use, so the cache stays under ~10 GB but for a
transient 2 GB at N = 50k).

For each N in SIZES and each path (and, as a control, the same dataset dicts without proposals),
in a fresh process that has imported torch, detectron2 and wsod_d2 as a training process has:

- **open**: N synthetic dataset dicts (COCO-like: file name, id, size, image labels), proposals
  attached with :func:`wsod_d2.data.proposals.attach.attach_proposals` (pickle: load, check,
  attach the arrays; store: open, check the index, attach references), then detectron2's
  ``DatasetFromList`` serialisation as ``build_detection_train_loader`` does, and the heap trim
  the WSOD loaders make then (:func:`wsod_d2.utils.heap.release_free_heap`); time, and memory
  before the trim ("held") and after (USS, anonymous, peak RSS;
  :func:`wsod_d2.benchmarks.processes.memory`).
- **loader**: PROCESSES such processes at once (as one per GPU), each with a DataLoader of
  WORKERS workers reading the proposals of IMAGES_READ images spread over the dataset (the
  mapper's :func:`~wsod_d2.data.proposals.references.image_proposals`); memory of each process
  and worker once all have read.

A run is started only when its estimated peak (from the previous size's measured peak,
linearly; for the loader, the open run's peak times PROCESSES) fits the budget, MEM_BUDGET_GIB
or the machine's available memory less MIN_AVAILABLE_GIB if smaller. Each child is limited to
its share of the budget and killed first by the kernel, and the run is killed if the machine's
available memory still falls under MIN_AVAILABLE_GIB (:func:`~.processes.run_guarded`): what
does not fit is a row that says so.
"""

import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from wsod_d2.benchmarks.processes import (
    GIB,
    MIB,
    available_gib,
    memory,
    run_guarded,
    wait_for_all,
)
from wsod_d2.data.proposals.io import save_proposal_file
from wsod_d2.data.proposals.references import image_proposals
from wsod_d2.data.proposals.store import ProposalStore
from wsod_d2.data.proposals.store_writer import write_proposal_store
from wsod_d2.utils.heap import release_free_heap

__all__ = ["benchmark_proposal_memory", "ensure_synthetic_store", "synthetic_dicts"]

logger = logging.getLogger(__name__)

COCO_TRAIN_IMAGES = 118287  # COCO 2017 train
BOXES_PER_IMAGE = 2000
SIZES = (10000, 50000, COCO_TRAIN_IMAGES)
SEED = 0
# Range of the synthetic images' widths and heights (COCO's are mostly 240-640 px).
MIN_SIDE, MAX_SIDE = 240, 640
# Image labels per synthetic image, out of COCO's 80 classes.
LABELS_PER_IMAGE, NUM_CLASSES = 3, 80
# Paths measured: the dataset dicts alone (the control: what any dataset of N images costs),
# the proposal store, the pickle.
KINDS = ("none", "store", "pickle")
PROCESSES = 2
WORKERS = 2
IMAGES_READ = 10000
# Images per DataLoader batch in the loader runs (fewer round trips between worker and process).
BATCH_SIZE = 16
# Sum of the estimated peak RSS of the children of one run must fit this (and each child's
# heap is limited to its share).
MEM_BUDGET_GIB = 16.0
# The guard kills a run's children when the machine's available memory falls under this.
MIN_AVAILABLE_GIB = 2.0
# A child that runs longer is killed (the slowest, the 118k pickle, takes a few minutes).
CHILD_TIMEOUT_S = 1800
CACHE_ENV = "WSOD_D2_BENCHMARK_CACHE"
DEFAULT_CACHE = "~/.cache/wsod_d2/benchmark"
# How the benchmark starts a fresh process that measures one spec (_child).
_CHILD = [sys.executable, "-m", "wsod_d2.benchmarks.proposal_store"]


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get(CACHE_ENV, DEFAULT_CACHE))


def image_sizes(total_images: int, seed: int) -> np.ndarray:
    """(total_images, 2) int64 (width, height) of the synthetic images."""
    return np.random.default_rng(seed).integers(MIN_SIDE, MAX_SIDE + 1, size=(total_images, 2))


def synthetic_images(total_images: int, boxes_per_image: int, seed: int):
    """Per image: (id 1..total, (B, 4) float32 XYXY boxes uniform inside it, (B,) logits)."""
    sizes = image_sizes(total_images, seed).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    for i in range(total_images):
        corners = rng.random((boxes_per_image, 2, 2), dtype=np.float32) * sizes[i]
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        yield i + 1, boxes, rng.standard_normal(boxes_per_image, dtype=np.float32)


def synthetic_dicts(num_images: int, total_images: int, seed: int) -> List[Dict[str, Any]]:
    """Training dataset dicts of the first ``num_images`` synthetic images, as COCO's look
    after image labels are derived (no annotations)."""
    sizes = image_sizes(total_images, seed)[:num_images].tolist()
    return [
        {
            "file_name": f"datasets/coco/train2017/{i + 1:012d}.jpg",
            "image_id": i + 1,
            "width": w,
            "height": h,
            "image_labels": sorted({(i * (k + 7)) % NUM_CLASSES for k in range(LABELS_PER_IMAGE)}),
        }
        for i, (w, h) in enumerate(sizes)
    ]


def ensure_synthetic_store(cache: str, total_images: int, boxes_per_image: int, seed: int) -> str:
    """The store of the synthetic set under ``cache``, written (streaming) if missing."""
    path = os.path.join(cache, f"coco_synthetic_{total_images}x{boxes_per_image}_seed{seed}.store")
    if os.path.isdir(path):
        meta = ProposalStore(path).meta
        if (meta["num_images"], meta["num_boxes"]) == (
            total_images,
            total_images * boxes_per_image,
        ):
            return path
    start = time.perf_counter()
    write_proposal_store(path, synthetic_images(total_images, boxes_per_image, seed))
    logger.info("Wrote %s in %.0f s.", path, time.perf_counter() - start)
    return path


def ensure_pickle(store_path: str, num_images: int) -> str:
    """The detectron2 pickle of the store's first ``num_images`` images, next to it, written
    (from memory-mapped views of the store, never all in RAM) if missing."""
    path = f"{store_path[: -len('.store')]}_first{num_images}.pkl"
    if os.path.isfile(path):
        return path
    start = time.perf_counter()
    store = ProposalStore(store_path)
    offsets = np.asarray(store.offsets[: num_images + 1])
    spans = list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    boxes = [np.asarray(store.boxes[a:b]) for a, b in spans]
    logits = [np.asarray(store.logits[a:b]) for a, b in spans]
    save_proposal_file(path, store.ids(range(num_images)), boxes, logits)
    logger.info("Wrote %s in %.0f s.", path, time.perf_counter() - start)
    return path


class _Reader:
    """Index -> (worker pid, number of boxes) through the mapper's proposal reading."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        boxes, _ = image_proposals(self.dataset[i])
        return os.getpid(), len(boxes)


def _read_with_workers(dataset, spec: Dict[str, Any]) -> Dict[str, Any]:
    import torch

    count = min(spec["images_read"], len(dataset))
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    loader = torch.utils.data.DataLoader(
        _Reader(dataset),
        batch_size=BATCH_SIZE,
        sampler=indices,
        num_workers=spec["workers"],
        collate_fn=list,
        persistent_workers=True,
    )
    start, pids, boxes = time.perf_counter(), set(), 0
    for batch in loader:
        pids.update(pid for pid, _ in batch)
        boxes += sum(n for _, n in batch)
    read_s = time.perf_counter() - start
    rank, world, barrier = spec["rank"], spec["world"], spec["barrier"]
    wait_for_all(barrier, "read", rank, world, CHILD_TIMEOUT_S)  # every process has read
    workers = [memory(pid) for pid in sorted(pids)]
    main = memory()
    wait_for_all(barrier, "measured", rank, world, CHILD_TIMEOUT_S)
    return {
        "read_s": read_s,
        "images_read": count,
        "boxes_read": boxes,
        "main": main,
        "workers": workers,
    }


def _child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement in this (fresh) process; see the module docstring."""
    import torch  # noqa: F401  (a training process has it)
    from detectron2.data import DatasetFromList

    from wsod_d2.data.proposals.attach import attach_proposals

    gc.collect()
    base = memory()
    dicts = synthetic_dicts(spec["num_images"], spec["total_images"], spec["seed"])
    start = time.perf_counter()
    open_s = None
    if spec["kind"] == "store":
        ProposalStore(spec["path"])
        open_s = time.perf_counter() - start
    attached = dicts if spec["kind"] == "none" else attach_proposals(dicts, spec["path"])
    attach_s = time.perf_counter() - start
    del dicts
    start = time.perf_counter()
    dataset = DatasetFromList(attached, copy=False, serialize=True)
    serialize_s = time.perf_counter() - start
    del attached
    gc.collect()
    held = memory()
    release_free_heap()  # as the WSOD loaders do once their dataset is serialised
    out = {"base": base, "held": held, "after": memory(), "open_s": open_s, "attach_s": attach_s}
    out.update(serialize_s=serialize_s, serialized_mib=dataset._lst.nbytes / MIB)
    if spec["mode"] == "loader":
        out.update(_read_with_workers(dataset, spec))
    return out


def _estimate_peak_gib(history: List[Dict[str, Any]], num_images: int) -> Optional[float]:
    """Peak RSS of a process at ``num_images``, linear from the last measured size (None when
    nothing was measured yet)."""
    if not history:
        return None
    last = history[-1]
    base, peak = last["base"]["rss"], last["after"]["peak_rss"]
    return (base + (peak - base) * num_images / last["num_images"]) * MIB / GIB


def benchmark_proposal_memory(
    *,
    sizes: Sequence[int] = SIZES,
    total_images: int = COCO_TRAIN_IMAGES,
    boxes_per_image: int = BOXES_PER_IMAGE,
    seed: int = SEED,
    cache: Optional[str] = None,
    processes: int = PROCESSES,
    workers: int = WORKERS,
    images_read: int = IMAGES_READ,
    mem_budget_gib: float = MEM_BUDGET_GIB,
    min_available_gib: float = MIN_AVAILABLE_GIB,
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Dict[str, List[Dict[str, Any]]]:
    """
    Returns:
        {"open": rows, "loader": rows}: one row per (path, N) with the measurements of the
        module docstring, or a "note" saying why it was not measured.
    """
    cache = cache or cache_dir()
    os.makedirs(cache, exist_ok=True)
    progress(f"synthetic set: {total_images} x {boxes_per_image} under {cache}")
    store = ensure_synthetic_store(cache, total_images, boxes_per_image, seed)
    base_spec = {"total_images": total_images, "seed": seed, "workers": workers}
    base_spec.update(images_read=images_read)
    rows: Dict[str, List[Dict[str, Any]]] = {"open": [], "loader": []}
    for kind in KINDS:
        history: List[Dict[str, Any]] = []
        for n in sizes:
            row = {"path": kind, "images": n}
            budget = min(mem_budget_gib, available_gib() - min_available_gib)
            estimate = _estimate_peak_gib(history, n)
            if estimate is not None and estimate > budget:
                note = f"not run: estimated peak {estimate:.1f} GiB > {budget:.1f} GiB budget"
                rows["open"].append(dict(row, note=note))
                if kind != "none":
                    rows["loader"].append(dict(row, note=note))
                continue
            path = ensure_pickle(store, n) if kind == "pickle" else store
            progress(f"open: {kind}, {n} images")
            spec = dict(base_spec, mode="open", kind=kind, path=path, num_images=n)
            (result,) = run_guarded(
                _CHILD,
                [spec],
                min_available_gib=min_available_gib,
                timeout_s=CHILD_TIMEOUT_S,
                max_data_gib=budget,
            )
            rows["open"].append(dict(row, **result))
            if "killed" not in result:
                history.append(dict(result, num_images=n))
            if kind != "none":
                rows["loader"].append(
                    _loader_row(row, spec, result, processes, budget, min_available_gib, cache)
                )
            if kind == "pickle" and n != total_images:
                os.remove(path)
    return rows


def _loader_row(row, spec, opened, processes, budget, min_available_gib, cache):
    """Run the loader measurement with ``processes`` processes if their peaks fit."""
    if "killed" in opened:
        return dict(row, note="not run: one process did not fit")
    estimate = processes * opened["after"]["peak_rss"] * MIB / GIB
    if estimate > budget:
        return dict(
            row,
            note=f"not run: {processes} x {estimate / processes:.1f} GiB estimated peak > "
            f"{budget:.1f} GiB budget",
        )
    barrier = tempfile.mkdtemp(dir=cache, prefix=".barrier.")
    specs = [
        dict(spec, mode="loader", rank=r, world=processes, barrier=barrier)
        for r in range(processes)
    ]
    try:
        results = run_guarded(
            _CHILD,
            specs,
            min_available_gib=min_available_gib,
            timeout_s=CHILD_TIMEOUT_S,
            max_data_gib=budget / processes,
        )
    finally:
        shutil.rmtree(barrier)
    killed = [r["killed"] for r in results if "killed" in r]
    if killed:
        return dict(row, note=killed[0])
    mains = [r["main"] for r in results]
    workers = [w for r in results for w in r["workers"]]
    return dict(
        row,
        processes=processes,
        workers=len(workers),
        images_read=results[0]["images_read"],
        # the main processes' pages are shared with the workers they forked: their USS hides
        # the dataset; anonymous memory (shared with the workers or not) shows it
        main_anon=max(m["anon"] for m in mains),
        main_uss=max(m["uss"] for m in mains),
        worker_uss=max(w["uss"] for w in workers),
        total_pss_anon=sum(p["pss_anon"] for p in mains + workers),
        total_pss_file=sum(p["pss_file"] for p in mains + workers),
        read_s=max(r["read_s"] for r in results),
    )


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
