"""Wall-clock timing shared by the benchmarks, on the CPU or a CUDA device: asynchronous CUDA
work is waited for before each clock reading, so a time is that of the work, not of its launch."""
import statistics
import time
from typing import Callable, Union

import torch

__all__ = ["median_seconds", "synchronize"]


def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object],
    repeats: int,
    device: Union[str, torch.device] = "cpu",
    warmup: int = 1,
) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (first-call
    allocations, kernel loading and autotuning are not the cost being measured)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
