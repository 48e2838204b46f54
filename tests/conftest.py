"""The tiny synthetic VOC-format dataset, generated once per session (the specs and configs are
in wsod_d2.testing)."""

import pytest
import torch

from wsod_d2.data.datasets import register_synthetic_voc
from wsod_d2.testing import TINY_SPEC

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """(dataset root, {"trainval": name, "test": name}, {split: proposal file})."""
    base = tmp_path_factory.mktemp("datasets")
    root = str(base / "tinyvoc" / "VOC2007")
    register_synthetic_voc("tinyvoc", root, TINY_SPEC)
    proposals = {s: str(base / "tinyvoc" / f"ss_{s}.pkl") for s in ("trainval", "test")}
    return root, {s: f"tinyvoc_{s}" for s in ("trainval", "test")}, proposals
