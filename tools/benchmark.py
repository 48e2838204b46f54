#!/usr/bin/env python
"""Speed tables: ``tools/benchmark.py [--only SECTION ...] [--device cpu]``, sections below.

- pseudo-labels: each pseudo-labeller's time for R in {500, 2000, 5000}, C = 20, 3 positives.
- step: the share of a VGG16 training step (480 px, 2000 proposals, CPU) spent after RoI
  pooling outside fc6/fc7, for OICR, PCL and MIST refinement (target: under 5%); for MIST with
  Concrete DropBlock, also the share of its iteration (detector + generator step) that CDB adds.
- casd: a full-CASD step (IW + LW + IA, VGG16, 2 scales x flip = 4 views, 300 proposals, short
  sides 240/288) against the sum of plain refinement steps on each view (target: under 30%).
- data-path: images/s of the training mapper on one core (one process, one thread) on VOC-size
  JPEG files with 2000 proposals: OICR's single view, CASD's 4 views, CASD's 4 views with
  photometric augmentation; with the time per image of each stage (cProfile).
- wsol-metrics: WSOL box-metric throughput (maps/s at 224x224, 100 thresholds) against the
  reference protocol's one-findContours-per-threshold implementation on the same input.
"""
import argparse
import os

from wsod_d2.benchmarks.casd import benchmark_casd_overhead
from wsod_d2.benchmarks.data_path import STAGES, benchmark_data_path
from wsod_d2.benchmarks.pseudo_labels import benchmark_pseudo_labellers
from wsod_d2.benchmarks.step import benchmark_step_share
from wsod_d2.benchmarks.wsol_metrics import benchmark_wsol_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_CONFIGS = ("oicr_vgg16", "pcl_vgg16", "mist_reg_vgg16")
DATA_PATH_CONFIGS = ("oicr_vgg16.yaml", "casd/full.yaml", "casd/full_aug.yaml")


def pseudo_labels(device):
    print("| labeller | R | ms |\n|---|---|---|")
    for row in benchmark_pseudo_labellers(device=device):
        print(f"| {row['labeller']} | {row['R']} | {row['ms']:.2f} |")


def step(device):
    cdb = []
    print("| config | step (s) | after fc7, outside fc6/fc7 (s) | share |\n|---|---|---|---|")
    for name in STEP_CONFIGS:
        path = os.path.join(REPO, "configs", "PascalVOC-Detection", f"{name}.yaml")
        r = benchmark_step_share(path)
        print(f"| {name} | {r['step_s']:.2f} | {r['after_fc7_s']:.3f} | {100 * r['share']:.1f}% |")
        if "cdb_share" in r:
            cdb.append(f"| {name} | {r['plain_step_s']:.2f} | {r['cdb_step_s']:.2f} | "
                       f"{100 * r['cdb_share']:.1f}% |")
    print("\n| config | step without CDB (s) | step + generator step (s) | CDB share |")
    print("|---|---|---|---|")
    print("\n".join(cdb))


def casd(device):
    path = os.path.join(REPO, "configs", "PascalVOC-Detection", "casd", "full.yaml")
    r = benchmark_casd_overhead(path, device=device)
    print(f"| step over the {r['num_views']} views | s | overhead |\n|---|---|---|")
    print(f"| plain refinement, one view at a time, summed | {r['views_s']:.2f} | - |")
    for v in r["variants"]:
        print(f"| {v['name']} | {v['s']:.2f} | {100 * v['overhead']:.0f}% |")


def data_path(device):
    root = os.path.join(REPO, "configs", "PascalVOC-Detection")
    rows = benchmark_data_path([os.path.join(root, c) for c in DATA_PATH_CONFIGS])
    print(
        "| config | mapper | views | images/s per core | ms/image | "
        + " | ".join(f"{stage} (ms)" for stage in STAGES)
        + " |"
    )
    print("|---" * (5 + len(STAGES)) + "|")
    for r in rows:
        ms = [r["breakdown"][stage] for stage in STAGES]
        stages = " | ".join("-" if m is None else f"{m:.1f}" for m in ms)
        print(
            f"| {os.path.relpath(r['config'], root)} | {r['mapper']} | {r['views']} | "
            f"{r['images_per_s']:.1f} | {r['ms_per_image']:.1f} | {stages} |"
        )


def wsol_metrics(device):
    r = benchmark_wsol_metrics()
    print("| implementation | maps/s |\n|---|---|")
    print(f"| wsod_d2 | {r['maps_per_s']:.0f} |")
    print(f"| reference protocol | {r['reference_maps_per_s']:.0f} |")
    print(f"\nspeed-up: {r['speedup']:.2f}x")


SECTIONS = {
    "pseudo-labels": pseudo_labels,
    "step": step,
    "casd": casd,
    "data-path": data_path,
    "wsol-metrics": wsol_metrics,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument(
        "--device", default="cpu", help="device of the pseudo-labeller and CASD timings"
    )
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        print(f"\n## {name}\n")
        SECTIONS[name](args.device)


if __name__ == "__main__":
    main()
