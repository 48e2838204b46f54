#!/usr/bin/env python
from setuptools import find_packages, setup

setup(
    name="wsod_d2",
    version="0.1.0",
    description="Weakly supervised object detection and localization for detectron2",
    packages=find_packages(include=["wsod_d2", "wsod_d2.*"]),
    python_requires=">=3.8",
    # torch and detectron2 are installed by tools/setup_env.sh (detectron2 is not on PyPI).
    install_requires=["numpy", "opencv-contrib-python-headless", "scipy", "tqdm", "tabulate"],
)
