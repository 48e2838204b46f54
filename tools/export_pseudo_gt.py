#!/usr/bin/env python
"""Write a trained WSOD model's pseudo ground truth on DATASETS.TRAIN as a COCO-format JSON.

``tools/export_pseudo_gt.py --config-file CONFIG --output FILE [--weights FILE]
[--rule top1|threshold] [--score-thresh S] [--nms-thresh T] [--tta] [KEY VALUE ...]``

Per image, per image-level class: its top-scoring box ("top1", the OICR / PCL "+FRCNN"
protocol), or every box scoring >= S after class-wise NMS at IoU T ("threshold"; a class with
none keeps its top box). The model keeps all its detections for this (no score floor, no
per-image top-k; ``wsod_d2.engine.pseudo_gt.EXPORT_OPTS``). ``--tta`` runs TEST.AUG's scales
and flips. Train a detector on the file with DATASETS.PSEUDO_GT_FILES_TRAIN
(configs/*/retrain/). The logic is ``wsod_d2.engine.pseudo_gt.export_pseudo_gt``.
"""
import argparse

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.logger import setup_logger

from wsod_d2.engine.defaults import build_trained_model
from wsod_d2.engine.pseudo_gt import export_pseudo_gt, pseudo_gt_config
from wsod_d2.evaluation.pseudo_gt import RULES


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the WSOD model's config")
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument("--weights", help="model file (default: the last checkpoint in OUTPUT_DIR)")
    parser.add_argument("--rule", choices=RULES, default="top1")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="'threshold' rule")
    parser.add_argument("--nms-thresh", type=float, default=0.3, help="'threshold' rule")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (TEST.AUG)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    setup_logger(name="wsod_d2")
    setup_logger(name="detectron2")
    cfg = pseudo_gt_config(args.config_file, args.opts)
    model = build_trained_model(cfg, args.weights)
    weights = args.weights or DetectionCheckpointer(model, cfg.OUTPUT_DIR).get_checkpoint_file()
    info = {"config": args.config_file, "weights": weights, "opts": args.opts}
    export_pseudo_gt(
        cfg,
        model,
        args.output,
        rule=args.rule,
        score_thresh=args.score_thresh,
        nms_thresh=args.nms_thresh,
        tta=args.tta,
        model_info=info,
    )


if __name__ == "__main__":
    main()
