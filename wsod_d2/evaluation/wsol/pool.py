"""
The per-image work of the WSOL box metrics (resizing and normalising the CAM, thresholding it,
tracing contours, IoUs with the GT boxes) in-process or over a pool of worker processes.

Each image's contribution to a ``BoxAccumulator`` is a set of integer counts, so the accumulators
of any split of the images merge into exactly the counts, hence exactly the metrics, of one
process. Workers are forked from a forkserver: a clean process that imported this module once, so
they neither inherit the evaluating process's CUDA context and loader threads (as fork would) nor
import the package each (as spawn would).
"""

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from wsod_d2.evaluation.wsol.metrics import BoxAccumulator, normalize_scoremap, resize_scoremap

__all__ = ["BoxJob", "BoxMetricPool", "accumulate_boxes", "available_cores"]

# Images per task sent to a worker: enough to amortise the inter-process round trip (about a
# millisecond) over maps that take a few milliseconds each.
CHUNK_IMAGES = 16
# Tasks queued per worker before process() waits: keeps every worker busy without holding the
# maps of the whole test set in the queue.
PENDING_CHUNKS_PER_WORKER = 2
# Start method: the forkserver where the platform has one (Linux, macOS), else spawn.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass
class BoxJob:
    """One image's inputs to the box metrics."""

    image_id: Any
    cam: np.ndarray  # (h, w) float64 localisation map, any resolution
    grid_hw: Tuple[int, int]  # (H, W) evaluation grid the map is resized to
    gt_boxes: np.ndarray  # (G, 4) XYXY on the grid
    correct_class: bool  # top-1 class is a GT class
    correct_top_k: bool  # a GT class is among the top k


def accumulate_boxes(
    config: Dict[str, Any], jobs: Sequence[BoxJob], into: Optional[BoxAccumulator] = None
) -> BoxAccumulator:
    """Add ``jobs`` to ``into`` (default a new ``BoxAccumulator(**config)``) and return it."""
    accumulator = BoxAccumulator(**config) if into is None else into
    for job in jobs:
        scoremap = normalize_scoremap(resize_scoremap(job.cam, job.grid_hw))
        try:
            accumulator.add(
                scoremap,
                job.gt_boxes,
                correct_class=job.correct_class,
                image_size=job.grid_hw,
                correct_top_k=job.correct_top_k,
            )
        except ValueError as e:
            raise ValueError(f"Image {job.image_id!r}: {e}") from e
    return accumulator


def available_cores() -> int:
    """Cores this process may run on (its affinity where the platform reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism


class BoxMetricPool:
    """
    ``num_workers`` processes accumulating box metrics: ``add`` queues an image (sent by chunks
    of CHUNK_IMAGES), ``result`` waits for all and returns their merged accumulator, then shuts
    the pool down. Errors of an image (ValueError naming it) surface in ``add`` or ``result``.
    """

    def __init__(self, config: Dict[str, Any], num_workers: int):
        if num_workers < 1:
            raise ValueError(f"BoxMetricPool needs num_workers >= 1, got {num_workers}")
        self._config = dict(config)
        context = multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            context.set_forkserver_preload([__name__])
        self._executor = ProcessPoolExecutor(
            num_workers, mp_context=context, initializer=_init_worker
        )
        self._max_pending = PENDING_CHUNKS_PER_WORKER * num_workers
        self._buffer: List[BoxJob] = []
        self._pending: Deque[Future] = deque()
        self._total = BoxAccumulator(**self._config)

    def add(self, job: BoxJob) -> None:
        self._buffer.append(job)
        if len(self._buffer) >= CHUNK_IMAGES:
            self._submit()

    def _submit(self) -> None:
        if len(self._pending) >= self._max_pending:
            self._total.merge(self._pending.popleft().result())
        self._pending.append(self._executor.submit(accumulate_boxes, self._config, self._buffer))
        self._buffer = []

    def result(self) -> BoxAccumulator:
        try:
            if self._buffer:
                self._submit()
            while self._pending:
                self._total.merge(self._pending.popleft().result())
            return self._total
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers; queued work not yet started is dropped."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._buffer = []
        self._executor.shutdown(wait=True)
