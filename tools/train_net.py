#!/usr/bin/env python
"""Train and evaluate a WSOD model: ``tools/train_net.py --config-file CONFIG [--eval-only]``.

detectron2's usual flags (--resume, --num-gpus, --num-machines, --machine-rank, --dist-url and
trailing KEY VALUE overrides). With MODEL.DEVICE cpu, --num-gpus N runs N CPU processes.
"""
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from wsod_d2 import add_wsod_config
from wsod_d2.engine import WSODTrainer, WSOLTrainer, launch
from wsod_d2.modeling import WSODCheckpointer

# Meta-architectures trained by a trainer other than WSODTrainer.
TRAINERS = {"WSOLClassifier": WSOLTrainer}


def load_config(args):
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args):
    cfg = load_config(args)
    default_setup(cfg, args)
    Trainer = TRAINERS.get(cfg.MODEL.META_ARCHITECTURE, WSODTrainer)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wsod_d2")
    if args.eval_only:
        model = Trainer.build_model(cfg)
        WSODCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_from_args(args, main_func=main):
    """Run ``main_func(args)`` in the processes that the command-line flags ask for."""
    launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        use_cuda=load_config(args).MODEL.DEVICE.startswith("cuda"),
    )


if __name__ == "__main__":
    launch_from_args(default_argument_parser().parse_args())
