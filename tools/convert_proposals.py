"""Convert third-party proposal files to detectron2 proposal files (see docs/proposals.md).

Examples:
    python tools/convert_proposals.py mat selective_search_data/voc_2007_trainval.mat \
        --output datasets/proposals/ss_voc_2007_trainval.pkl
    python tools/convert_proposals.py wetectron SS-voc_2007_trainval-boxes.pkl \
        --output datasets/proposals/ss_voc_2007_trainval.pkl \
        --image-set datasets/VOC2007/ImageSets/Main/trainval.txt
"""

import argparse
import logging
from typing import List, Optional

from detectron2.utils.logger import setup_logger

try:
    from wsod_d2.data.proposals.converters import (
        convert_selective_search_mat,
        convert_wetectron_pkl,
    )
    from wsod_d2.data.proposals.io import read_image_set, save_proposal_file
except ImportError as e:
    raise SystemExit(
        f"cannot import wsod_d2 ({e}); run `pip install -e .` in the repository root or put the "
        "repository root on PYTHONPATH"
    ) from e

logger = logging.getLogger("wsod_d2.proposals.convert")

CONVERTERS = {"mat": convert_selective_search_mat, "wetectron": convert_wetectron_pkl}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "format",
        choices=sorted(CONVERTERS),
        help="mat: Fast R-CNN/OICR/PCL selective-search .mat; wetectron: wetectron/Detectron1 .pkl",
    )
    parser.add_argument("input", help="file to convert")
    parser.add_argument("--output", required=True, help="detectron2 proposal .pkl to write")
    parser.add_argument(
        "--image-set",
        help="image-set file (one id per line, e.g. ImageSets/Main/trainval.txt): keep these "
        "images in this order and use these ids (restores VOC's zero-padded ids for wetectron)",
    )
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> str:
    setup_logger(name="wsod_d2")
    image_ids = read_image_set(args.image_set) if args.image_set else None
    data = CONVERTERS[args.format](args.input, image_ids)
    save_proposal_file(
        args.output, data["ids"], data["boxes"], data["objectness_logits"], data["bbox_mode"]
    )
    num_boxes = sum(len(b) for b in data["boxes"])
    logger.info(
        "Wrote %s: %d images, %.1f proposals per image.",
        args.output,
        len(data["ids"]),
        num_boxes / max(len(data["ids"]), 1),
    )
    return args.output


if __name__ == "__main__":
    main(parse_args())
