#!/usr/bin/env python
"""Draw a trained WSOL model's localization maps with their boxes as PNG files.

``tools/visualize_cam.py --config-file CONFIG --output DIR [--dataset NAME] [--weights FILE]
[--num-images N] [--cam-threshold T] [--cam-class gt|top1] [KEY VALUE ...]``

What each picture shows: ``wsod_d2.evaluation.wsol.visualizer``.
"""
import argparse

from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.wsol.build import build_wsol_test_loader
from wsod_d2.engine.defaults import build_trained_model
from wsod_d2.evaluation.wsol.visualizer import draw_cams


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--dataset", help="a name in DATASETS.TEST (default: the first)")
    parser.add_argument("--weights", help="model file (default: the last checkpoint in OUTPUT_DIR)")
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--cam-threshold", type=float, default=0.2, help="box threshold T")
    parser.add_argument("--cam-class", choices=("gt", "top1"), help="overrides TEST_CAM_CLASS")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    setup_logger(name="wsod_d2")
    cfg = get_wsod_cfg(args.config_file, args.opts, freeze=False)
    cfg.TEST.WSOL.IMS_PER_BATCH = 1
    if args.cam_class:
        cfg.MODEL.WSOL.TEST_CAM_CLASS = args.cam_class
    cfg.freeze()
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    model = build_trained_model(cfg, args.weights)
    written = draw_cams(
        model,
        build_wsol_test_loader(cfg, dataset),
        MetadataCatalog.get(dataset).thing_classes,
        args.output,
        num_images=args.num_images,
        cam_threshold=args.cam_threshold,
    )
    print(f"wrote {written} images to {args.output}")
    return written


if __name__ == "__main__":
    main()
