"""tools/train_net.py on the tests' tiny synthetic WSOL data (registered as tinywsol_{train,val,
test} at TINYWSOL_ROOT), for tests that need a subprocess.

Usage: TINYWSOL_ROOT=... python tests/wsol_tiny_train.py [train_net args]."""

import os

from detectron2.engine import default_argument_parser

from wsod_d2.data.datasets import register_synthetic_wsol
from wsod_d2.engine.defaults import launch_from_args, main
from wsod_d2.testing import TINY_WSOL

# Module level, so that every spawned training process registers the dataset too.
register_synthetic_wsol("tinywsol", os.environ["TINYWSOL_ROOT"], TINY_WSOL)


def tiny_main(args):
    return main(args)


if __name__ == "__main__":
    launch_from_args(default_argument_parser().parse_args(), tiny_main)
