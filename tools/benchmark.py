#!/usr/bin/env python
"""Speed tables: ``tools/benchmark.py [--only SECTION ...] [--device cpu]``, sections below.

- pseudo-labels: each pseudo-labeller's time for R in {500, 2000, 5000}, C = 20, 3 positives.
- step: the share of a VGG16 training step (480 px, 2000 proposals, CPU) spent after RoI
  pooling outside fc6/fc7, for OICR, PCL and MIST refinement (target: under 5%); for MIST with
  Concrete DropBlock, also the share of its iteration (detector + generator step) that CDB adds.
- casd: a full-CASD step (IW + LW + IA, VGG16, 2 scales x flip = 4 views, 300 proposals, short
  sides 240/288) against the sum of plain refinement steps on each view (target: under 30%).
- wsol-metrics: WSOL box-metric throughput (maps/s at 224x224, 100 thresholds) against the
  reference protocol's one-findContours-per-threshold implementation on the same input.
- data: proposal memory at COCO size (118k images x 2000 boxes, synthetic): open time and
  memory per process of the pickle path against the proposal store, alone and as 2 processes
  x 2 DataLoader workers. The synthetic set is written once under $WSOD_D2_BENCHMARK_CACHE
  (default ~/.cache/wsod_d2/benchmark; ~10 GB).
"""
import argparse
import os

from wsod_d2.benchmarks.casd import benchmark_casd_overhead
from wsod_d2.benchmarks.proposal_store import benchmark_proposal_memory
from wsod_d2.benchmarks.pseudo_labels import benchmark_pseudo_labellers
from wsod_d2.benchmarks.step import benchmark_step_share
from wsod_d2.benchmarks.wsol_metrics import benchmark_wsol_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_CONFIGS = ("oicr_vgg16", "pcl_vgg16", "mist_reg_vgg16")


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
            cdb.append(
                f"| {name} | {r['plain_step_s']:.2f} | {r['cdb_step_s']:.2f} | "
                f"{100 * r['cdb_share']:.1f}% |"
            )
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


def wsol_metrics(device):
    r = benchmark_wsol_metrics()
    print("| implementation | maps/s |\n|---|---|")
    print(f"| wsod_d2 | {r['maps_per_s']:.0f} |")
    print(f"| reference protocol | {r['reference_maps_per_s']:.0f} |")
    print(f"\nspeed-up: {r['speedup']:.2f}x")


def _proposal_memory_tables(r):
    """The markdown tables of benchmark_proposal_memory's rows."""
    print(
        "| path | images | open (s) | open + checks + attach (s) | serialise (s) | serialised "
        "(MiB) | USS (MiB) | anonymous (MiB) | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in r["open"]:
        path = "dicts only (no proposals)" if row["path"] == "none" else row["path"]
        head = f"| {path} | {row['images']} |"
        if "after" not in row:
            print(f"{head} {row.get('note') or row.get('killed')} | | | | | | |")
            continue
        opened = "-" if row["open_s"] is None else f"{row['open_s']:.3f}"
        print(
            f"{head} {opened} | {row['attach_s']:.2f} | {row['serialize_s']:.2f} | "
            f"{row['serialized_mib']:.0f} | {row['after']['uss']:.0f} | "
            f"{row['after']['anon']:.0f} | {row['after']['peak_rss']:.0f} |"
        )
    base = [row["base"]["uss"] for row in r["open"] if "base" in row]
    if base:
        print(
            f"\nUSS after importing torch, detectron2 and wsod_d2, before any dataset: "
            f"{min(base):.0f}-{max(base):.0f} MiB."
        )
    print(
        "\n| path | images | images read per process | main process: anonymous / USS (MiB) "
        "| worker USS (MiB, max) | PSS of all processes and workers: anonymous / mapped files "
        "(MiB) |"
    )
    print("|---|---|---|---|---|---|")
    for row in r["loader"]:
        head = f"| {row['path']} | {row['images']} |"
        if "total_pss_anon" not in row:
            print(f"{head} {row['note']} | | | |")
            continue
        print(
            f"{head} {row['images_read']} | {row['main_anon']:.0f} / {row['main_uss']:.0f} | "
            f"{row['worker_uss']:.0f} | {row['total_pss_anon']:.0f} / "
            f"{row['total_pss_file']:.0f} |"
        )


def data(device):
    _proposal_memory_tables(benchmark_proposal_memory())


SECTIONS = {
    "pseudo-labels": pseudo_labels,
    "step": step,
    "casd": casd,
    "wsol-metrics": wsol_metrics,
    "data": data,
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
