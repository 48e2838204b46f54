#!/usr/bin/env python
"""Install detectron2 v0.6's Python code from the PyPI sdist ``pb1-detectron2==0.6``.

That sdist lacks detectron2's C++ sources, so ``pip install`` of it fails. This script builds a
pure-Python wheel of its ``detectron2`` package, adds a stand-in ``detectron2._C`` that raises a
clear error if a C++ op is ever called, and pip-installs it into the running interpreter.
detectron2's own files are installed unchanged.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2"
VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
HERE = os.path.dirname(os.path.abspath(__file__))

SETUP_PY = """from setuptools import find_packages, setup
setup(
    name="detectron2",
    version="{version}",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
)
"""


def download_sdist(dest_dir):
    # pip honours the user's index settings; its metadata step imports torch, hence no isolation.
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.check_call(cmd + ["-d", dest_dir, f"{SDIST}=={VERSION}"])
    return os.path.join(dest_dir, f"{SDIST}-{VERSION}.tar.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sdist", help="local pb1-detectron2-0.6.tar.gz (default: from PyPI)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(tmp)
        with open(sdist, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SDIST_SHA256:
            sys.exit(f"{sdist}: sha256 {digest} does not match {SDIST}=={VERSION} ({SDIST_SHA256})")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp)
        src = os.path.join(tmp, f"{SDIST}-{VERSION}", "detectron2")
        build = os.path.join(tmp, "build")
        shutil.copytree(src, os.path.join(build, "detectron2"))
        shutil.copy(
            os.path.join(HERE, "detectron2_C_standin.py"),
            os.path.join(build, "detectron2", "_C.py"),
        )
        with open(os.path.join(build, "setup.py"), "w") as f:
            f.write(SETUP_PY.format(version=VERSION))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.check_call(cmd + [build])
    print(f"installed detectron2 {VERSION} (Python code of {SDIST}, C++ ops stand-in)")


if __name__ == "__main__":
    main()
