#!/usr/bin/env python
"""Train and evaluate a WSOD or WSOL model:
``tools/train_net.py --config-file CONFIG [--eval-only]``.

detectron2's usual flags (--resume, --num-gpus, --num-machines, --machine-rank, --dist-url and
trailing KEY VALUE overrides). With MODEL.DEVICE cpu, --num-gpus N runs N CPU processes. The
logic is ``wsod_d2.engine.defaults`` (setup, build_trainer, main).
"""
from detectron2.engine import default_argument_parser

from wsod_d2.engine.defaults import launch_from_args

if __name__ == "__main__":
    launch_from_args(default_argument_parser().parse_args())
