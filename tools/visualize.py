#!/usr/bin/env python
"""Draw a trained model's detections on a dataset's images as PNG files.

``tools/visualize.py --config-file CONFIG --output DIR [--dataset NAME] [--weights FILE]
[--num-images N] [--score-thresh S] [--show-gt] [--show-proposals K] [KEY VALUE ...]``
"""
import argparse

from detectron2.utils.logger import setup_logger

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data import build_wsod_test_loader
from wsod_d2.engine.defaults import build_trained_model
from wsod_d2.utils.visualizer import visualize_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--dataset", help="a name in DATASETS.TEST (default: the first)")
    parser.add_argument("--weights", help="model file (default: the last checkpoint in OUTPUT_DIR)")
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--score-thresh", type=float, default=0.05)
    parser.add_argument("--show-gt", action="store_true", help="also draw the GT boxes")
    parser.add_argument("--show-proposals", type=int, default=0, help="also draw K proposals")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    setup_logger(name="wsod_d2")
    cfg = get_wsod_cfg(args.config_file, args.opts)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    model = build_trained_model(cfg, args.weights)
    loader = build_wsod_test_loader(cfg, dataset)
    paths = visualize_dataset(
        model,
        loader,
        dataset,
        args.output,
        num_images=args.num_images,
        score_thresh=args.score_thresh,
        show_gt=args.show_gt,
        num_proposals=args.show_proposals,
    )
    print(f"wrote {len(paths)} images to {args.output}")


if __name__ == "__main__":
    main()
