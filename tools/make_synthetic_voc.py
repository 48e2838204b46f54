#!/usr/bin/env python
"""Write the synthetic PASCAL-VOC-format dataset.

Example:
    python tools/make_synthetic_voc.py --root datasets/synthvoc/VOC2007 \
        --num-trainval 500 --num-test 300 --num-classes 20 --seed 0

Every field of wsod_d2.data.synthetic.voc.SyntheticVOCSpec is an option (--field-name).
"""

import argparse
import dataclasses
import logging

from wsod_d2.data.synthetic.voc import SyntheticVOCSpec
from wsod_d2.data.synthetic.voc_writer import ensure_synthetic_voc, generate_synthetic_voc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--root", required=True, help="dataset folder, e.g. .../synthvoc/VOC2007")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="generate only if root does not already hold this dataset (else regenerate)",
    )
    for field in dataclasses.fields(SyntheticVOCSpec):
        option = "--" + field.name.replace("_", "-")
        if isinstance(field.default, tuple):
            parser.add_argument(
                option,
                type=type(field.default[0]),
                nargs="+",
                default=field.default,
                help=f"default: {' '.join(map(str, field.default))}",
            )
        else:
            parser.add_argument(
                option,
                type=type(field.default),
                default=field.default,
                help=f"default: {field.default}",
            )
    return parser


def main(argv=None) -> None:
    args = vars(build_parser().parse_args(argv))
    root, if_missing = args.pop("root"), args.pop("if_missing")
    spec = SyntheticVOCSpec(**args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if if_missing:
        if not ensure_synthetic_voc(root, spec):
            logging.getLogger(__name__).info(f"{root} already holds this dataset")
    else:
        generate_synthetic_voc(root, spec)


if __name__ == "__main__":
    main()
