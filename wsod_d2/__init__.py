"""wsod_d2: weakly supervised object detection and localization for detectron2.

Importing the package registers its datasets, backbones, heads and meta-architectures.
"""
from wsod_d2 import data, modeling  # noqa: F401  (registration)
from wsod_d2.config import add_wsod_config, get_wsod_cfg

__all__ = ["add_wsod_config", "get_wsod_cfg"]
