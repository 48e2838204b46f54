"""The data-path benchmark runs each recipe's training mapper and reports every stage (its
numbers are not checked: speed lives in tools/benchmark.py)."""
import os

from wsod_d2.benchmarks.data_path import STAGES, benchmark_data_path
from wsod_d2.testing import REPO_ROOT

CONFIGS = [
    os.path.join(REPO_ROOT, "configs", "PascalVOC-Detection", name)
    for name in ("oicr_vgg16.yaml", "casd/full_aug.yaml")
]


def test_rows_for_single_and_multi_view_mappers():
    rows = benchmark_data_path(CONFIGS, num_images=3, num_proposals=100, repeats=1)
    assert [(r["mapper"], r["views"]) for r in rows] == [
        ("WSODDatasetMapper", 1),
        ("MultiViewWSODDatasetMapper", 4),
    ]
    for row in rows:
        assert row["images_per_s"] > 0 and row["ms_per_image"] > 0
        assert set(row["breakdown"]) == set(STAGES)
        for stage in ("decode", "resize", "proposals", "to-tensor"):
            assert row["breakdown"][stage] > 0
