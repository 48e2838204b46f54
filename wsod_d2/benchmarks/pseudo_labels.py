"""Timing of the online-refinement pseudo labellers (OICR, PCL, MIST) on random proposals: with
their default settings, and at a recipe's settings next to the authors' released functions."""

from typing import Callable, Dict, List, Mapping, Sequence, Tuple, Union

import torch

from wsod_d2.benchmarks.authors_code import AUTHORS_CODE, REPOSITORIES, authors_labeller
from wsod_d2.benchmarks.timing import median_seconds
from wsod_d2.config import get_wsod_cfg
from wsod_d2.modeling.wsod.mist import mist_pseudo_labels
from wsod_d2.modeling.wsod.pcl import pcl_pseudo_labels
from wsod_d2.modeling.wsod.pseudo_labelers import build_pseudo_labeler
from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels, oicr_pseudo_labels

__all__ = ["benchmark_labellers_vs_authors", "benchmark_pseudo_labellers", "random_proposals"]

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


def _time_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    # one warm-up run: first-call allocations and kernel loading are not the labeller's cost
    return 1000.0 * median_seconds(fn, repeats, device, warmup=1)


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


def benchmark_labellers_vs_authors(
    config_files: Sequence[str],
    sizes: Sequence[int] = (2000, 5000),
    num_positive: int = 3,
    repeats: int = 3,
    device: Union[str, torch.device] = "cpu",
    authors: Mapping[str, str] = (),
    seed: int = 0,
) -> Tuple[List[Dict[str, Union[str, int, float]]], List[str]]:
    """
    Each config's pseudo labeller (MODEL.REFINEMENT.PSEUDO_LABELER at its settings) on ``device``,
    and the authors' function for it (``AUTHORS_CODE``) from the checkout ``authors[key]``, on the
    same random inputs (C = MODEL.ROI_HEADS.NUM_CLASSES).

    Returns:
        rows {"labeller", "R", "code" ("wsod_d2", "pcl.pytorch" or "wetectron"), "ms" (median),
        "same_labels" (share of RoIs whose label equals ours; 1.0 on our own rows)};
        notes: one line per authors' row that was skipped, saying why.
    """
    device = torch.device(device)
    authors = dict(authors)
    rows: List[Dict[str, Union[str, int, float]]] = []
    notes: List[str] = []
    for path in config_files:
        cfg = get_wsod_cfg(path, ["MODEL.DEVICE", str(device)])
        name = cfg.MODEL.REFINEMENT.PSEUDO_LABELER
        ours = build_pseudo_labeler(cfg)
        key = AUTHORS_CODE[name]
        theirs, code = None, REPOSITORIES[key]
        if key not in authors:
            notes.append(f"{name}: no {code} checkout given (--authors-code {key}=PATH); skipped")
        else:
            try:
                theirs = authors_labeller(name, authors[key], cfg, device)
            except (OSError, ImportError, AttributeError, SyntaxError) as e:
                notes.append(f"{name}: {code} from {authors[key]} could not be loaded: {e}")
        for num_rois in sizes:
            boxes, scores, labels = random_proposals(
                num_rois, cfg.MODEL.ROI_HEADS.NUM_CLASSES, num_positive, seed=seed, device=device
            )
            mine = ours(boxes, scores, labels).labels
            ms = _time_ms(lambda: ours(boxes, scores, labels), repeats, device)
            rows.append(
                {"labeller": name, "R": num_rois, "code": "wsod_d2", "ms": ms, "same_labels": 1.0}
            )
            if theirs is None:
                continue
            run = theirs(boxes, scores, labels)
            try:
                same = float((run().to(mine) == mine).float().mean())
            except RuntimeError as e:  # a stand-in that was called (scikit-learn missing)
                notes.append(f"{name}, R = {num_rois}: {code}'s function failed: {e}")
                continue
            rows.append(
                {
                    "labeller": name,
                    "R": num_rois,
                    "code": code,
                    "ms": _time_ms(run, repeats, device),
                    "same_labels": same,
                }
            )
    return rows, notes
