"""Convert proposal files to detectron2 proposal pickles or proposal stores (docs/proposals.md).

Examples:
    python tools/convert_proposals.py mat selective_search_data/voc_2007_trainval.mat \
        --output datasets/proposals/ss_voc_2007_trainval.pkl
    python tools/convert_proposals.py wetectron SS-voc_2007_trainval-boxes.pkl \
        --output datasets/proposals/ss_voc_2007_trainval.pkl \
        --image-set datasets/VOC2007/ImageSets/Main/trainval.txt
    python tools/convert_proposals.py pickle datasets/proposals/mcg_coco_2017_train.pkl \
        --output-format store --output datasets/proposals/mcg_coco_2017_train.store
"""

import argparse
import logging
from typing import List, Optional

from detectron2.utils.logger import setup_logger

try:
    from wsod_d2.data.proposals.converters import OUTPUT_FORMATS, SOURCES, convert_proposals
    from wsod_d2.data.proposals.io import read_image_set
except ImportError as e:
    raise SystemExit(
        f"cannot import wsod_d2 ({e}); run `pip install -e .` in the repository root or put the "
        "repository root on PYTHONPATH"
    ) from e

logger = logging.getLogger("wsod_d2.proposals.convert")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "format",
        choices=sorted(SOURCES),
        help="mat: Fast R-CNN/OICR/PCL selective-search .mat; wetectron: wetectron/Detectron1 "
        ".pkl; pickle: a detectron2 proposal pickle (ours), e.g. to make a store of it",
    )
    parser.add_argument("input", help="file to convert")
    parser.add_argument(
        "--output", required=True, help="detectron2 proposal .pkl, or store directory, to write"
    )
    parser.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="pickle",
        help="pickle: detectron2's proposal pickle; store: a directory of memory-mapped arrays, "
        "read per image (constant memory per process; for COCO-size sets)",
    )
    parser.add_argument(
        "--image-set",
        help="image-set file (one id per line, e.g. ImageSets/Main/trainval.txt): keep these "
        "images in this order and use these ids (restores VOC's zero-padded ids for wetectron)",
    )
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> str:
    setup_logger(name="wsod_d2")
    image_ids = read_image_set(args.image_set) if args.image_set else None
    counts = convert_proposals(
        args.format,
        args.input,
        args.output,
        output_format=args.output_format,
        image_ids=image_ids,
    )
    logger.info(
        "Wrote %s (%s): %d images, %.1f proposals per image.",
        args.output,
        args.output_format,
        counts["num_images"],
        counts["num_boxes"] / max(counts["num_images"], 1),
    )
    return args.output


if __name__ == "__main__":
    main(parse_args())
