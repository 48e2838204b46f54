"""A stack that cannot work is named before training: detectron2 v0.6's uses of the numpy /
Pillow aliases that numpy 1.24 / Pillow 10 removed (the installer patches them), and a venv
whose packages moved since tools/setup_env.sh set it up."""
import os
import subprocess
import sys

import pytest

from wsod_d2.testing import REPO_ROOT
from wsod_d2.utils.env import (
    REMOVED_ALIASES,
    alias_problem,
    alias_uses,
    check_environment,
    missing_aliases,
)

OLD_DETECTRON2 = """import numpy as np
from PIL import Image
difficult = np.array(x).astype(np.bool)  # np.bool here is a comment
hist = np.zeros((3,), dtype=np.int)
ok = np.zeros(2, dtype=np.bool_) + np.int64(1) + np.float32(2)
interp = Image.LINEAR
"""


@pytest.fixture
def old_detectron2(tmp_path):
    package = tmp_path / "detectron2" / "evaluation"
    package.mkdir(parents=True)
    (package / "pascal_voc_evaluation.py").write_text(OLD_DETECTRON2)
    return str(tmp_path / "detectron2")


def test_the_installed_stack_works():
    check_environment()  # raises when detectron2 uses an alias this numpy / Pillow lack
    assert set(missing_aliases()) <= {
        f"{m}.{n}" for m, names in REMOVED_ALIASES.items() for n in names
    }


def test_unpatched_detectron2_with_new_numpy_is_named(old_detectron2):
    every = [f"{m}.{n}" for m, names in REMOVED_ALIASES.items() for n in names]
    uses = alias_uses(old_detectron2, every)
    assert uses == [
        ("evaluation/pascal_voc_evaluation.py:3", "np.bool"),
        ("evaluation/pascal_voc_evaluation.py:4", "np.int"),
        ("evaluation/pascal_voc_evaluation.py:6", "Image.LINEAR"),
    ]
    message = alias_problem(old_detectron2, ["np.bool", "np.int"])
    assert "np.bool (evaluation/pascal_voc_evaluation.py:3), np.int (" in message
    assert "(2 uses)" in message and "rerun `bash tools/setup_env.sh`" in message
    assert alias_problem(old_detectron2, ["np.float"]) is None


def test_installer_patches_the_aliases(old_detectron2):
    tool = os.path.join(REPO_ROOT, "tools", "install_detectron2.py")
    done = subprocess.run(
        [sys.executable, tool, "--patch-only", old_detectron2], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "patched 3 lines" in done.stdout
    every = [f"{m}.{n}" for m, names in REMOVED_ALIASES.items() for n in names]
    assert alias_uses(old_detectron2, every) == []
    text = open(os.path.join(old_detectron2, "evaluation", "pascal_voc_evaluation.py")).read()
    assert ".astype(bool)" in text and "dtype=int)" in text and "Image.BILINEAR" in text
    assert "np.bool_) + np.int64(1) + np.float32(2)" in text


def test_setup_stamp_notices_a_moved_package(tmp_path):
    """`pip install scikit-learn` moving numpy: the next `make` sees it (--check says what)."""
    venv, site = tmp_path / "venv", tmp_path / "site"
    (venv / "bin").mkdir(parents=True)
    site.mkdir()
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    env = dict(os.environ, WSOD_D2_VENV=str(venv), WSOD_D2_DEPS="locked", PYTHONPATH=str(site))
    script = ["bash", os.path.join(REPO_ROOT, "tools", "setup_env.sh")]

    def run(flag):
        return subprocess.run(script + [flag], env=env, capture_output=True, text=True)

    assert run("--check").returncode == 1
    assert run("--record").returncode == 0
    checked = run("--check")
    assert checked.returncode == 0 and "is as set up" in checked.stdout
    moved = site / "numpy-9.0.0.dist-info"
    moved.mkdir()
    (moved / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 9.0.0\n")
    checked = run("--check")
    assert checked.returncode == 1
    assert "changed since it was set up" in checked.stdout and "> numpy==9.0.0" in checked.stdout
