#!/usr/bin/env python
"""Score the trivial baselines (a random proposal per present class; the whole image) with the
evaluators of a config's test sets: ``tools/baselines.py --config-file CONFIG [KEY VALUE ...]``."""
import argparse

from detectron2.utils.logger import setup_logger

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsod.build import dataset_dicts_from_config
from wsod_d2.evaluation.baselines import BASELINES, evaluate_baseline
from wsod_d2.evaluation.build import build_wsod_evaluator
from wsod_d2.utils.strict_json import dump_strict


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-proposal draw")
    parser.add_argument("--output", help="also write all figures to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    setup_logger(name="wsod_d2")
    setup_logger(name="detectron2")
    cfg = get_wsod_cfg(args.config_file, args.opts)
    results = {}
    for name, proposal_file in zip(cfg.DATASETS.TEST, cfg.DATASETS.PROPOSAL_FILES_TEST):
        dicts = dataset_dicts_from_config(cfg, [name], [proposal_file], is_train=False)
        for kind in BASELINES:
            evaluator = build_wsod_evaluator(cfg, name)
            results[f"{kind}/{name}"] = evaluate_baseline(dicts, evaluator, kind, args.seed)
    print("| baseline | dataset | mAP50 (VOC) | CorLoc |\n|---|---|---|---|")
    for key, res in results.items():
        kind, name = key.split("/")
        ap50 = res.get("bbox", {}).get("AP50", float("nan"))
        print(f"| {kind} | {name} | {ap50:.2f} | {res['corloc']['CorLoc']:.2f} |")
    if args.output:
        dump_strict(results, args.output, indent=1)


if __name__ == "__main__":
    main()
