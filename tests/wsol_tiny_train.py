"""tools/train_net.py on the tests' tiny synthetic WSOL data (registered as tinywsol_{train,val,
test} at TINYWSOL_ROOT), for tests that need a subprocess.

Usage: TINYWSOL_ROOT=... python tests/wsol_tiny_train.py [train_net args]."""

import os
import sys

from detectron2.engine import default_argument_parser

from wsod_d2.data.datasets import register_synthetic_wsol
from wsod_d2.data.synthetic_wsol import SyntheticWSOLSpec

TINY_WSOL = SyntheticWSOLSpec(
    num_classes=4, train_per_class=4, val_per_class=1, test_per_class=3, min_size=48, max_size=64
)

# Module level, so that every spawned training process registers the dataset too.
if "TINYWSOL_ROOT" in os.environ:
    register_synthetic_wsol("tinywsol", os.environ["TINYWSOL_ROOT"], TINY_WSOL)

if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
    import train_net  # noqa: E402  (a script, not a package module)

    train_net.launch_from_args(default_argument_parser().parse_args())
