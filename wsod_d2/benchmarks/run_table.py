"""Train and evaluate a set of configs and write one markdown table.

``tools/run_table.py [--preset wsod|casd|wsol] [--configs C1.yaml C2.yaml ...] [--work-dir DIR]
[--table FILE] [--jobs J] [--num-gpus N] [--timeout S] [--train-script S] [KEY VALUE ...]``

Each config runs as ``tools/train_net.py --config-file C OUTPUT_DIR <work-dir>/<name> [KEY
VALUE ...]`` (or another script with train_net's command line) in its own process (log in
<work-dir>/<name>/run.log), timed from start to exit. Its metrics are read back from that
run's own metrics.json: the last record holding evaluation results, i.e. the final evaluation.
The table has, per config and test set, the metrics that any run reported: VOC mAP50, CorLoc
and COCO AP / AP50 (detectors); MaxBoxAccV2, Top-1 Loc, GT-known Loc and the size-bin accuracies
(WSOL evaluator); mAP (multi-label evaluator); an undefined metric (null) shows as "-"; then
the wall time and the hardware it ran on. ``--jobs J`` runs J configs at once, each with
cores / J threads. Presets: "wsod", the synthetic detector benchmark (WSDDN, OICR, OICR+Reg,
OICR+FRCNN branch, PCL, PCL+Reg, PCL+FRCNN branch, MIST+Reg, MIST+Reg+CDB); "casd", the
synthetic CASD ablation (one row
per configs/Synthetic/casd/ file); "wsol" (default), CAM, ADL, TS-CAM, SCM and
CAM + CropCAM on the synthetic WSOL data, CSRA vs. plain GAP on synthetic VOC.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import torch

from wsod_d2.utils.env import REPO_ROOT
from wsod_d2.utils.strict_json import metric_value

PRESETS = {
    "wsod": [
        f"configs/Synthetic/{name}_tiny.yaml"
        for name in (
            "wsddn",
            "oicr",
            "oicr_reg",
            "oicr_frcnn",
            "pcl",
            "pcl_reg",
            "pcl_frcnn",
            "mist_reg",
            "mist_reg_cdb",
        )
    ],
    "casd": [
        f"configs/Synthetic/casd/{name}.yaml"
        for name in (
            "baseline",
            "iw_no_ia",
            "iw",
            "lw",
            "full",
            "full_reg",
            "full_aug",
            "oicr_baseline",
            "oicr_full",
            "cln_baseline",
            "cln_full",
            "release",
            "release_wsddn",
        )
    ],
    "wsol": [
        f"configs/Synthetic/wsol/{name}.yaml"
        for name in (
            "cam_vgg_tiny",
            "adl_vgg_tiny",
            "tscam_vit_tiny",
            "scm_vit_tiny",
            "cam_vgg_tiny_cropcam",
            "gap_vgg_tiny_synthvoc",
            "csra_vgg_tiny_synthvoc",
        )
    ],
}
# (metric name under the evaluator's task, column title); a column shows when a run reports it.
FIXED_COLUMNS = [
    ("bbox/AP50", "mAP50"),
    ("corloc/CorLoc", "CorLoc"),
    ("coco_bbox/AP", "COCO AP"),
    ("coco_bbox/AP50", "COCO AP50"),
    ("wsol/MaxBoxAccV2", "MaxBoxAccV2"),
    ("wsol/Top-1 Loc", "Top-1 Loc"),
    ("wsol/GT-known Loc", "GT-known Loc"),
]
SIZE_PREFIX = "wsol/size("
MAP_KEY = "cls/mAP"
# Tasks of the VOC, COCO, CorLoc, WSOL, PxAP and multi-label evaluators.
EVAL_TASKS = ("bbox", "coco_bbox", "corloc", "wsol", "pxap", "cls")


def hardware(threads: int, jobs: int) -> str:
    """One line: CPU model and cores, torch with the runs' threads, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    text += (
        f" ({threads} thread{'s' * (threads > 1)} per run, {jobs} run{'s' * (jobs > 1)} at a time)"
    )
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def final_metrics(metrics_file: str) -> Dict[str, Dict[str, float]]:
    """{test set ("" for a run with one): {"<task>/<metric>": value}} of the last evaluation."""
    if not os.path.isfile(metrics_file):
        raise FileNotFoundError(f"{metrics_file} not found: the run wrote no metrics")
    last = None
    with open(metrics_file) as f:
        for line in f:
            record = json.loads(line)
            if any(_split_eval_key(key) for key in record):
                last = record
    if last is None:
        raise ValueError(f"{metrics_file} holds no evaluation results")
    by_set: Dict[str, Dict[str, float]] = {}
    for key, value in last.items():
        split = _split_eval_key(key)
        if split:
            by_set.setdefault(split[0], {})[split[1]] = metric_value(value)
    return by_set


def _split_eval_key(key: str):
    """ "[<test set>/]<task>/<metric>" -> (test set, "<task>/<metric>"); None for other keys."""
    parts = key.split("/")
    if len(parts) < 2 or parts[-2] not in EVAL_TASKS:
        return None
    return "/".join(parts[:-2]), "/".join(parts[-2:])


def _cell(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def markdown_table(rows: List[Dict], hardware_line: str) -> str:
    """rows: {"config", "test set", "metrics": {key: value}, "wall": seconds}."""
    size_keys = sorted(
        {k for r in rows for k in r["metrics"] if k.startswith(SIZE_PREFIX) and "images" not in k},
        key=lambda k: float(k[len(SIZE_PREFIX) :].split(",")[0]),
    )
    fixed = [(k, t) for k, t in FIXED_COLUMNS if any(k in r["metrics"] for r in rows)]
    has_map = any(MAP_KEY in r["metrics"] for r in rows)
    titles = ["config", "test set"] + [t for _, t in fixed]
    titles += [k[len("wsol/") :] for k in size_keys] + ["mAP"] * has_map + ["wall time (s)"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for r in rows:
        m = r["metrics"]
        cells = [r["config"], r["test set"] or "-"]
        cells += [_cell(m.get(k)) for k, _ in fixed + [(k, k) for k in size_keys]]
        cells += [_cell(m.get(MAP_KEY))] * has_map + [f"{r['wall']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Hardware: {hardware_line}."]
    return "\n".join(lines) + "\n"


def run_config(
    config: str,
    out_dir: str,
    opts: List[str],
    num_gpus: int,
    timeout: float,
    script: str,
    threads: int,
) -> float:
    """Train + evaluate one config in a subprocess with ``threads`` intra-op threads; returns
    the wall time in seconds."""
    os.makedirs(out_dir, exist_ok=True)
    cmd = [
        sys.executable,
        script,
        "--config-file",
        config,
        "--num-gpus",
        str(num_gpus),
        "OUTPUT_DIR",
        out_dir,
        *opts,
    ]
    start = time.perf_counter()
    with open(os.path.join(out_dir, "run.log"), "w") as log:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed (exit {proc.returncode}); see {out_dir}/run.log")
    return wall


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="wsol")
    parser.add_argument("--configs", nargs="+", help="default: the preset's configs")
    parser.add_argument("--jobs", type=int, default=1, help="configs run at once")
    parser.add_argument("--work-dir", default="output/table")
    parser.add_argument("--table", help="markdown file (default: <work-dir>/table.md)")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per run")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds per run")
    parser.add_argument(
        "--train-script",
        default=os.path.join(REPO_ROOT, "tools", "train_net.py"),
        help="script with tools/train_net.py's command line",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    configs = args.configs or PRESETS[args.preset]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    def run(config):
        name = os.path.splitext(os.path.basename(config))[0]
        out_dir = os.path.join(args.work_dir, name)
        wall = run_config(
            config, out_dir, args.opts, args.num_gpus, args.timeout, args.train_script, threads
        )
        print(f"{name}: done in {wall:.0f}s", flush=True)
        metrics = final_metrics(os.path.join(out_dir, "metrics.json"))
        return [
            {"config": name, "test set": test_set, "metrics": m, "wall": wall}
            for test_set, m in metrics.items()
        ]

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [row for rows_of_config in pool.map(run, configs) for row in rows_of_config]
    table = markdown_table(rows, hardware(threads, args.jobs))
    path = args.table or os.path.join(args.work_dir, "table.md")
    with open(path, "w") as f:
        f.write(table)
    print(table)
    return path
