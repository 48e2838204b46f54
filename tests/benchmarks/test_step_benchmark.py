"""The step benchmark runs on the CPU: every timing present, the replayed step checked against the
real one inside (it raises when the losses differ), and the bf16 check reports every loss."""
import os

import pytest

from wsod_d2.benchmarks.step import benchmark_step, step_scales
from wsod_d2.config import get_wsod_cfg
from wsod_d2.testing import REPO_ROOT


@pytest.mark.parametrize(
    "config",
    ["configs/Synthetic/casd/full.yaml", "configs/Synthetic/mist_reg_cdb_tiny.yaml"],
)
def test_step_benchmark_on_cpu(config):
    r = benchmark_step(
        os.path.join(REPO_ROOT, config),
        scale_factor=0.5,
        num_proposals=40,
        repeats=1,
        warmup=0,
        bf16=True,
    )
    assert r["peak_bytes"] is None and r["bf16_peak_bytes"] is None  # CUDA only
    # the part outside backbone and fc6/fc7 is timed on its own: a share of the step, not all
    assert 0 < r["outside_s"] < r["step_s"] and 0 < r["share"] < 1
    assert 0 < r["num_rois"] <= 40  # the mapper de-duplicates the random boxes
    assert min(r["bf16_step_s"], r["step_s"]) > 0
    assert "loss_mil" in r["bf16_losses"]
    assert all(set(v) == {"fp32", "bf16", "rel", "pass"} for v in r["bf16_losses"].values())
    assert ("cdb_share" in r) == ("cdb" in config)


def test_step_scales_are_the_largest_recipe_scales():
    voc = os.path.join(REPO_ROOT, "configs", "PascalVOC-Detection")
    assert step_scales(get_wsod_cfg(os.path.join(voc, "oicr_vgg16.yaml"))) == [1200]
    casd = get_wsod_cfg(os.path.join(voc, "casd", "full.yaml"))
    assert step_scales(casd) == [864, 1200] and step_scales(casd, 0.5) == [432, 600]
