"""Timing of the online-refinement pseudo labellers (OICR, PCL, MIST) on random proposals."""

import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch

from wsod_d2.modeling.wsod.mist import mist_pseudo_labels
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels, oicr_pseudo_labels

__all__ = ["benchmark_pseudo_labellers", "random_proposals"]

LABELLERS: Dict[str, Callable[..., PseudoLabels]] = {
    "oicr": oicr_pseudo_labels,
    "pcl": pcl_pseudo_labels,
    "mist": mist_pseudo_labels,
}


def random_proposals(
    num_rois: int,
    num_classes: int,
    num_positive: int,
    seed: int = 0,
    image_size: float = 600.0,
    min_side: float = 16.0,
    device: Union[str, torch.device] = "cpu",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random image: boxes (R, 4) XYXY inside the image, scores (R, C), labels (C,)."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(num_rois, 2, generator=generator) * (image_size - min_side)
    room = image_size - corner - min_side
    size = min_side + torch.rand(num_rois, 2, generator=generator) * room
    boxes = torch.cat([corner, corner + size], dim=1)
    scores = torch.rand(num_rois, num_classes, generator=generator).softmax(dim=0)
    labels = torch.zeros(num_classes)
    labels[torch.randperm(num_classes, generator=generator)[:num_positive]] = 1.0
    return boxes.to(device), scores.to(device), labels.to(device)


def _time_ms(fn: Callable[[], PseudoLabels], repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up: first-call allocations and kernel loading are not the labeller's cost
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def benchmark_pseudo_labellers(
    sizes: Sequence[int] = (500, 2000, 5000),
    num_classes: int = 20,
    num_positive: int = 3,
    repeats: int = 3,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
) -> List[Dict[str, Union[str, int, float]]]:
    """Median wall time of each labeller per proposal count.

    Returns rows {"labeller": name, "R": proposals, "ms": median milliseconds over ``repeats``
    runs after one warm-up run}, labellers in the order oicr, pcl, mist for each size.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    if not 0 <= num_positive <= num_classes:
        raise ValueError(
            f"num_positive: expected 0..{num_classes} (num_classes), got {num_positive}"
        )
    device = torch.device(device)
    rows: List[Dict[str, Union[str, int, float]]] = []
    for num_rois in sizes:
        boxes, scores, labels = random_proposals(
            num_rois, num_classes, num_positive, seed=seed, device=device
        )
        for name, labeller in LABELLERS.items():
            ms = _time_ms(lambda: labeller(boxes, scores, labels), repeats, device)
            rows.append({"labeller": name, "R": int(num_rois), "ms": ms})
    return rows
