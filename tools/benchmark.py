#!/usr/bin/env python
"""Speed tables: ``tools/benchmark.py [--only SECTION ...] [--device cpu]``, sections below.

- pseudo-labels: each pseudo-labeller's time for R in {500, 2000, 5000}, C = 20, 3 positives.
- step: a training step (one image, random init) of each VOC VGG16 recipe at its largest training
  scale (CASD: its two largest x flip) and proposal count, on --device: seconds per image, peak
  device memory, and the time and share outside the backbone and fc6/fc7; for Concrete DropBlock,
  the share of its iteration the generator's step adds; with --bf16, the step under bf16 autocast
  and its losses against fp32; each recipe's pseudo labeller alone, next to the authors' released
  function when --authors-code names their checkout.
- casd: a full-CASD step (IW + LW + IA, VGG16, 2 scales x flip = 4 views, 300 proposals, short
  sides 240/288) against the sum of plain refinement steps on each view (target: under 30%).
- wsol-metrics: WSOL box-metric throughput (maps/s at 224x224, 100 thresholds) against the
  reference protocol's one-findContours-per-threshold implementation on the same input, and
  the evaluator's process pool (TEST.WSOL.NUM_WORKERS) against its number of processes.
- data: proposal memory at COCO size (118k images x 2000 boxes, synthetic): time to open and
  memory per process of the pickle path against the proposal store, at 10k / 50k / 118k images,
  alone and as 2 processes x 2 DataLoader workers (the synthetic set is written once under
  $WSOD_D2_BENCHMARK_CACHE, default ~/.cache/wsod_d2/benchmark, ~10 GB); then images/s of the
  training mapper on one core (one process, one thread) on VOC-size JPEG files with 2000
  proposals: OICR's single view, CASD's 4 views, CASD's 4 views with photometric augmentation,
  with the time per image of each stage (cProfile). --data-parts runs one of the two.
"""
import argparse
import os

from wsod_d2.benchmarks.authors_code import REPOSITORIES
from wsod_d2.benchmarks.casd import benchmark_casd_overhead
from wsod_d2.benchmarks.data_path import STAGES, benchmark_data_path
from wsod_d2.benchmarks.mixed_precision import BF16_ATOL, BF16_RTOL
from wsod_d2.benchmarks.processes import GIB
from wsod_d2.benchmarks.proposal_store import benchmark_proposal_memory
from wsod_d2.benchmarks.pseudo_labels import (
    benchmark_labellers_vs_authors,
    benchmark_pseudo_labellers,
)
from wsod_d2.benchmarks.step import benchmark_step
from wsod_d2.benchmarks.wsol_metrics import benchmark_wsol_metrics, benchmark_wsol_pool
from wsod_d2.evaluation.wsol.pool import available_cores
from wsod_d2.utils.env import REPO_ROOT

VOC = os.path.join(REPO_ROOT, "configs", "PascalVOC-Detection")
# Every VOC recipe training a VGG16 WSOD detector, one per model: the VOC 07+12 and VOC 12 MIST
# configs train mist_reg_vgg16's model at its scales; CASD's ablation rows are its parts.
STEP_CONFIGS = (
    "wsddn_vgg16", "contextlocnet_vgg16", "oicr_vgg16", "oicr_reg_vgg16", "pcl_vgg16",
    "pcl_reg_vgg16", "mist_reg_vgg16", "mist_reg_paper_vgg16", "casd/baseline", "casd/full",
)  # fmt: skip
# The recipe whose settings each labeller is timed at.
LABELLER_CONFIGS = ("oicr_vgg16", "pcl_vgg16", "mist_reg_vgg16")
DATA_PATH_CONFIGS = ("oicr_vgg16.yaml", "casd/full.yaml", "casd/full_aug.yaml")


def pseudo_labels(args):
    rows = benchmark_pseudo_labellers(device=args.device)
    _table(["labeller", "R", "ms"], [[r["labeller"], r["R"], f"{r['ms']:.2f}"] for r in rows])


def _gib(num_bytes):
    return "-" if num_bytes is None else f"{num_bytes / GIB:.2f}"


def _table(header, rows):
    """A markdown table: header cells, then one list of cells per row."""
    lines = [header, ["---"] * len(header), *rows]
    print("\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines))


def step(args):
    results = {}
    for name in args.step_configs:
        results[name] = benchmark_step(
            os.path.join(VOC, f"{name}.yaml"),
            device=args.device,
            scale_factor=args.scale_factor,
            num_proposals=args.num_proposals,
            repeats=args.repeats,
            warmup=args.warmup,
            bf16=args.bf16,
        )
    header = ["config", "views x short side", "RoIs", "s / image", "peak GiB"]
    header += ["outside backbone, fc6/fc7 (s)", "share"]
    _table(header, [
        [name, f"{r['num_views']} x {'/'.join(map(str, r['scales']))}", r["num_rois"],
         f"{r['step_s']:.3f}", _gib(r["peak_bytes"]), f"{r['outside_s']:.3f}",
         f"{100 * r['share']:.1f}%"]
        for name, r in results.items()
    ])  # fmt: skip
    print()
    _table(["config", "step without CDB (s)", "step + generator step (s)", "CDB share"], [
        [name, f"{r['plain_step_s']:.3f}", f"{r['cdb_step_s']:.3f}", f"{100 * r['cdb_share']:.1f}%"]
        for name, r in results.items()
        if "cdb_share" in r
    ])  # fmt: skip
    if args.bf16:
        print(f"\nbf16 autocast; a loss passes when |bf16 - fp32| <= {BF16_RTOL} |fp32| + "
              f"{BF16_ATOL} (fp32 without TF32; dropout and Concrete DropBlock off)\n")  # fmt: skip
        rows = []
        for name, r in results.items():
            losses = r["bf16_losses"]
            worst = max(losses, key=lambda k: losses[k]["rel"])
            check = "pass" if all(v["pass"] for v in losses.values()) else "FAIL"
            rows.append([name, f"{r['bf16_step_s']:.3f}", _gib(r["bf16_peak_bytes"]),
                         f"{r['step_s'] / r['bf16_step_s']:.2f}x",
                         f"{worst} ({losses[worst]['rel']:.1e})", check])  # fmt: skip
        header = ["config", "bf16 s / image", "bf16 peak GiB", "speed-up", "worst loss (rel.)"]
        _table(header + ["check"], rows)
    labellers, notes = benchmark_labellers_vs_authors(
        [os.path.join(VOC, f"{name}.yaml") for name in LABELLER_CONFIGS],
        sizes=args.labeller_rois,
        repeats=args.repeats,
        device=args.device,
        authors=args.authors_code,
    )
    print()
    _table(["labeller", "R", "code", "ms", "same labels as wsod_d2"], [
        [r["labeller"], r["R"], r["code"], f"{r['ms']:.2f}", f"{100 * r['same_labels']:.1f}%"]
        for r in labellers
    ])  # fmt: skip
    print("".join(f"\n{note}" for note in notes))


def casd(args):
    r = benchmark_casd_overhead(os.path.join(VOC, "casd", "full.yaml"), device=args.device)
    rows = [["plain refinement, one view at a time, summed", f"{r['views_s']:.2f}", "-"]]
    rows += [[v["name"], f"{v['s']:.2f}", f"{100 * v['overhead']:.0f}%"] for v in r["variants"]]
    _table([f"step over the {r['num_views']} views", "s", "overhead"], rows)


def _mib(value):
    return f"{value:.0f}"


def proposal_memory():
    r = benchmark_proposal_memory()
    header = ["path", "images", "open (s)", "open + checks + attach (s)", "serialise (s)"]
    header += ["serialised (MiB)", "USS before / after the heap trim (MiB)", "anonymous (MiB)"]
    header += ["USS over imports (MiB)", "peak RSS (MiB)"]
    rows, measured = [], {}
    for row in r["open"]:
        cells = ["dicts only (no proposals)" if row["path"] == "none" else row["path"]]
        cells.append(row["images"])
        if "after" not in row:  # not run, or killed: say why
            cells.append(row.get("note") or row["killed"])
            rows.append(cells + [""] * (len(header) - len(cells)))
            continue
        after = row["after"]
        measured.setdefault(cells[0], []).append((row["images"], after))
        cells.append("-" if row["open_s"] is None else f"{row['open_s']:.3f}")
        cells += [f"{row['attach_s']:.2f}", f"{row['serialize_s']:.2f}"]
        cells += [_mib(row["serialized_mib"]), f"{_mib(row['held']['uss'])} / {_mib(after['uss'])}"]
        cells += [_mib(after["anon"]), _mib(after["uss"] - row["base"]["uss"])]
        cells.append(_mib(after["peak_rss"]))
        rows.append(cells)
    _table(header, rows)
    print()
    for path, sizes in measured.items():
        (n0, first), (n1, last) = sizes[0], sizes[-1]
        growth = {k: 100 * (last[k] / first[k] - 1) for k in ("uss", "anon")}
        print(f"{path}: from {n0} to {n1} images, USS {growth['uss']:+.1f}%, anonymous "
              f"{growth['anon']:+.1f}%.")  # fmt: skip
    base = [(row["base"]["uss"], row["base"]["anon"]) for row in r["open"] if "base" in row]
    if base:
        uss, anon = zip(*base)
        print(f"\nAfter importing torch, detectron2 and wsod_d2, before any dataset: USS "
              f"{min(uss):.0f}-{max(uss):.0f} MiB, anonymous "
              f"{min(anon):.0f}-{max(anon):.0f} MiB.\n")  # fmt: skip
    header = ["path", "images", "images read per process", "main process: anonymous / USS (MiB)"]
    header += ["worker USS (MiB, max)", "PSS of all: anonymous / mapped files (MiB)"]
    rows = []
    for row in r["loader"]:
        cells = [row["path"], row["images"]]
        if "total_pss_anon" not in row:
            cells.append(row["note"])
            rows.append(cells + [""] * (len(header) - len(cells)))
            continue
        cells += [row["images_read"], f"{_mib(row['main_anon'])} / {_mib(row['main_uss'])}"]
        cells.append(_mib(row["worker_uss"]))
        cells.append(f"{_mib(row['total_pss_anon'])} / {_mib(row['total_pss_file'])}")
        rows.append(cells)
    _table(header, rows)


def data_path():
    rows = benchmark_data_path([os.path.join(VOC, c) for c in DATA_PATH_CONFIGS])
    header = ["config", "mapper", "views", "images/s per core", "ms/image"]
    _table(header + [f"{stage} (ms)" for stage in STAGES], [
        [os.path.relpath(r["config"], VOC), r["mapper"], r["views"], f"{r['images_per_s']:.1f}",
         f"{r['ms_per_image']:.1f}",
         *("-" if r["breakdown"][s] is None else f"{r['breakdown'][s]:.1f}" for s in STAGES)]
        for r in rows
    ])  # fmt: skip


DATA_PARTS = {"proposal-memory": proposal_memory, "data-path": data_path}


def data(args):
    for name in args.data_parts:
        print(f"### {name}\n")
        DATA_PARTS[name]()
        print()


def wsol_metrics(args):
    r = benchmark_wsol_metrics()
    _table(["implementation", "maps/s"], [
        ["wsod_d2", f"{r['maps_per_s']:.0f}"],
        ["reference protocol", f"{r['reference_maps_per_s']:.0f}"],
    ])  # fmt: skip
    print(f"\nspeed-up: {r['speedup']:.2f}x")
    counts = args.wsol_processes or range(1, available_cores() + 1)
    pool = benchmark_wsol_pool(counts, num_maps=args.wsol_maps)
    print(f"\nWSOLEvaluator's box metrics on {args.wsol_maps} maps by TEST.WSOL.NUM_WORKERS (the "
          "first pass also starts the workers, the first pool the forkserver):\n")  # fmt: skip
    _table(["TEST.WSOL.NUM_WORKERS", "processes", "maps/s", "first pass (s)", "metrics"], [
        [p["num_workers"], p["processes"], f"{p['maps_per_s']:.0f}", f"{p['first_pass_s']:.2f}",
         "identical" if p["identical"] else "DIFFERENT"]
        for p in pool
    ])  # fmt: skip


SECTIONS = {
    "pseudo-labels": pseudo_labels,
    "step": step,
    "casd": casd,
    "wsol-metrics": wsol_metrics,
    "data": data,
}


def _checkouts(text):
    """Parse "pcl=PATH,wetectron=PATH" into {"pcl": PATH, "wetectron": PATH}."""
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(p) != 2 or p[0] not in REPOSITORIES for p in pairs):
        expected = ",".join(f"{key}=PATH" for key in REPOSITORIES)
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return dict(pairs)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument(
        "--device", default="cpu", help="device of the step, pseudo-labeller and CASD timings"
    )
    group = parser.add_argument_group("step")
    group.add_argument(
        "--step-configs",
        nargs="+",
        default=STEP_CONFIGS,
        metavar="NAME",
        help="configs under configs/PascalVOC-Detection, without .yaml",
    )
    group.add_argument(
        "--scale-factor",
        type=float,
        default=1.0,
        help="times the recipes' training scales (e.g. 0.2 for a CPU smoke run)",
    )
    group.add_argument(
        "--num-proposals", type=int, help="proposals per image (default: the recipe's)"
    )
    group.add_argument("--repeats", type=int, default=5, help="timed runs, their median reported")
    group.add_argument("--warmup", type=int, default=2, help="untimed steps before")
    group.add_argument(
        "--bf16",
        action="store_true",
        help="also the step under bf16 autocast, its losses checked against fp32",
    )
    group.add_argument(
        "--labeller-rois",
        type=int,
        nargs="+",
        default=(2000, 5000),
        metavar="R",
        help="proposal counts of the pseudo-labeller timings",
    )
    group.add_argument(
        "--authors-code",
        type=_checkouts,
        default={},
        metavar="pcl=PATH,wetectron=PATH",
        help="checkouts of ppengtang/pcl.pytorch and NVlabs/wetectron whose "
        "labellers are timed next to ours (imported by file path)",
    )
    group = parser.add_argument_group("wsol-metrics")
    group.add_argument(
        "--wsol-processes",
        type=int,
        nargs="+",
        metavar="N",
        help="pool sizes to time (default: 1 up to the core count)",
    )
    group.add_argument("--wsol-maps", type=int, default=400, help="maps per pool timing")
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-parts",
        nargs="+",
        choices=tuple(DATA_PARTS),
        default=tuple(DATA_PARTS),
        help="which parts of the data section to run (default: both)",
    )
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        print(f"\n## {name}\n")
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
