#!/usr/bin/env python
"""Install detectron2 v0.6's Python code from the PyPI sdist ``pb1-detectron2==0.6``.

That sdist lacks detectron2's C++ sources, so ``pip install`` of it fails. This script builds a
pure-Python wheel of its ``detectron2`` package, adds a stand-in ``detectron2._C`` that raises a
clear error if a C++ op is ever called, and pip-installs it into the running interpreter.

detectron2 v0.6 uses a few aliases that numpy 1.24 (``np.bool``, ``np.int``, ``np.float``,
``np.str``, ``np.object``) and Pillow 10 (``Image.LINEAR``, ``Image.ANTIALIAS``, ``Image.CUBIC``)
removed; the copy installed here has them replaced by the names they stood for, so it runs on
current numpy and Pillow as on old ones. Nothing else is changed; the patched lines are listed.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2"
VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
HERE = os.path.dirname(os.path.abspath(__file__))

# The local label tells tools/setup_env.sh that the installed copy has the aliases patched.
PATCHED_VERSION = f"{VERSION}+aliases.patched"
SETUP_PY = """from setuptools import find_packages, setup
setup(
    name="detectron2",
    version="{version}",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
)
"""

# Removed alias -> what it stood for (numpy 1.20 deprecation notes, Pillow 10 release notes).
# \b...\b(?!_) keeps np.bool_, np.int64, np.float32, np.str_ untouched.
REMOVED_ALIASES = {
    r"\bnp\.bool\b(?!_)": "bool",
    r"\bnp\.int\b(?!_)": "int",
    r"\bnp\.float\b(?!_)": "float",
    r"\bnp\.str\b(?!_)": "str",
    r"\bnp\.object\b(?!_)": "object",
    r"\bImage\.LINEAR\b": "Image.BILINEAR",
    r"\bImage\.ANTIALIAS\b": "Image.LANCZOS",
    r"\bImage\.CUBIC\b": "Image.BICUBIC",
}


def patch_removed_aliases(package_dir):
    """Replace REMOVED_ALIASES in every .py file under ``package_dir``; returns the patched
    lines as "path:line" strings."""
    patched = []
    for folder, _, files in os.walk(package_dir):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            changed = False
            for i, line in enumerate(lines):
                new = line
                for pattern, replacement in REMOVED_ALIASES.items():
                    new = re.sub(pattern, replacement, new)
                if new != line:
                    lines[i] = new
                    changed = True
                    patched.append(f"{os.path.relpath(path, package_dir)}:{i + 1}")
            if changed:
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines))
    return patched


def download_sdist(dest_dir):
    # pip honours the user's index settings; its metadata step imports torch, hence no isolation.
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.check_call(cmd + ["-d", dest_dir, f"{SDIST}=={VERSION}"])
    return os.path.join(dest_dir, f"{SDIST}-{VERSION}.tar.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sdist", help="local pb1-detectron2-0.6.tar.gz (default: from PyPI)")
    parser.add_argument(
        "--patch-only",
        metavar="DIR",
        help="only replace the removed aliases in the .py files under DIR (e.g. a detectron2 "
        "checkout), in place; install nothing",
    )
    args = parser.parse_args()
    if args.patch_only:
        patched = patch_removed_aliases(args.patch_only)
        print(f"patched {len(patched)} lines: {', '.join(patched)}")
        return
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
        patched = patch_removed_aliases(os.path.join(build, "detectron2"))
        print(f"patched {len(patched)} lines of removed numpy/Pillow aliases: {', '.join(patched)}")
        shutil.copy(
            os.path.join(HERE, "detectron2_C_standin.py"),
            os.path.join(build, "detectron2", "_C.py"),
        )
        with open(os.path.join(build, "setup.py"), "w") as f:
            f.write(SETUP_PY.format(version=PATCHED_VERSION))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.check_call(cmd + [build])
    print(f"installed detectron2 {VERSION} (Python code of {SDIST}, C++ ops stand-in)")


if __name__ == "__main__":
    main()
