"""tools/train_net.py on the tests' tiny synthetic dataset, for tests that need a subprocess
(a kill, several processes). Usage: TINYVOC_ROOT=... python tests/tiny_train.py [train_net args]."""
import os
import sys

from detectron2.engine import default_argument_parser

from conftest import REPO, TINY_SPEC
from wsod_d2.data.datasets import register_synthetic_voc

sys.path.insert(0, os.path.join(REPO, "tools"))  # train_net is a script, not a package module
import train_net  # noqa: E402

# Module level, so that every spawned training process registers the dataset too.
register_synthetic_voc("tinyvoc", os.environ["TINYVOC_ROOT"], TINY_SPEC)


def main(args):
    return train_net.main(args)


if __name__ == "__main__":
    train_net.launch_from_args(default_argument_parser().parse_args(), main)
