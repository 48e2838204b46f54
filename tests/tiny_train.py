"""tools/train_net.py on the tests' tiny synthetic dataset, for tests that need a subprocess
(a kill, several processes). Usage: TINYVOC_ROOT=... python tests/tiny_train.py [train_net args]."""
import os

from detectron2.engine import default_argument_parser

from wsod_d2.data.datasets import register_synthetic_voc
from wsod_d2.engine.defaults import launch_from_args, main
from wsod_d2.testing import TINY_SPEC

# Module level, so that every spawned training process registers the dataset too.
register_synthetic_voc("tinyvoc", os.environ["TINYVOC_ROOT"], TINY_SPEC)


def tiny_main(args):
    return main(args)


if __name__ == "__main__":
    launch_from_args(default_argument_parser().parse_args(), tiny_main)
