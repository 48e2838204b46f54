"""Selective-search proposals for registered detectron2 datasets.

Writes one detectron2 proposal file covering every image of the given datasets (ids in dataset
order); rerunning the same command after a kill resumes from ``<output>.parts/``.

Example:
    python tools/generate_proposals.py --dataset voc_2007_trainval --dataset voc_2007_test \
        --output datasets/proposals/ss_voc_2007.pkl --workers 8 --mode fast
"""

import argparse
import logging
from typing import List, Optional

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

try:
    import wsod_d2  # noqa: F401  (importing it registers the project's datasets)
    from wsod_d2.data.proposals.selective_search import (
        BACKENDS,
        MODES,
        UnreadableImageError,
        generate_proposals,
    )
except ImportError as e:
    raise SystemExit(
        f"cannot import wsod_d2 ({e}); run `pip install -e .` in the repository root or put the "
        "repository root on PYTHONPATH"
    ) from e

logger = logging.getLogger("wsod_d2.proposals.generate")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        action="append",
        required=True,
        help="registered detectron2 dataset name; repeat to cover several in one file",
    )
    parser.add_argument("--output", required=True, help="proposal .pkl to write")
    parser.add_argument("--workers", type=int, default=2, help="processes (1 = in-process)")
    parser.add_argument("--mode", choices=MODES, default="fast", help="selective-search strategy")
    parser.add_argument(
        "--max-side", type=int, default=500, help="search on images downscaled to this longer side"
    )
    parser.add_argument(
        "--min-box-size", type=int, default=10, help="drop boxes thinner than this (pixels)"
    )
    parser.add_argument("--max-proposals", type=int, default=2000, help="boxes kept per image")
    parser.add_argument("--backend", choices=BACKENDS, default="opencv")
    parser.add_argument("--seed", type=int, default=0, help="seed of OpenCV's box ranking")
    parser.add_argument("--chunk-size", type=int, default=50, help="images per resumable chunk")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out images that do not decode completely (listed in OUTPUT.skipped.txt) "
        "instead of stopping on the first one",
    )
    args = parser.parse_args(argv)
    registered = set(DatasetCatalog.list())
    unknown = [name for name in args.dataset if name not in registered]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; registered: {sorted(registered)}")
    return args


def main(args: argparse.Namespace) -> str:
    setup_logger(name="wsod_d2")
    dataset_dicts = []
    for name in args.dataset:
        dicts = DatasetCatalog.get(name)
        logger.info("%s: %d images", name, len(dicts))
        dataset_dicts += dicts
    return generate_proposals(
        dataset_dicts,
        args.output,
        workers=args.workers,
        mode=args.mode,
        max_side=args.max_side,
        min_box_size=args.min_box_size,
        max_proposals=args.max_proposals,
        backend=args.backend,
        seed=args.seed,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        skip_unreadable=args.skip_unreadable,
    )


if __name__ == "__main__":
    try:
        main(parse_args())
    except UnreadableImageError as e:
        raise SystemExit(f"error: {e}") from None
