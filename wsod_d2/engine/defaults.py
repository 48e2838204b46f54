"""The command line of ``tools/train_net.py`` as library functions, like detectron2's
``engine/defaults.py``: ``setup(args)`` -> cfg, ``build_trainer(cfg)`` -> the trainer class that
fits the model, ``main(args)`` trains or evaluates, ``launch_from_args`` runs it in processes."""
import logging
import os

from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from wsod_d2.config import get_wsod_cfg
from wsod_d2.engine.launch import launch
from wsod_d2.engine.resume import trim_logs_for_resume
from wsod_d2.engine.supervised_trainer import SupervisedTrainer
from wsod_d2.engine.wsod_trainer import WSODTrainer
from wsod_d2.engine.wsol_trainer import WSOLTrainer
from wsod_d2.modeling.checkpoint import WSODCheckpointer
from wsod_d2.utils.env import check_environment

# Meta-architectures trained by a trainer other than WSODTrainer (GeneralizedRCNN: detectron2's
# Faster R-CNN re-trained on pseudo ground truth).
TRAINERS = {"WSOLClassifier": WSOLTrainer, "GeneralizedRCNN": SupervisedTrainer}


def load_config(args):
    """The frozen config of ``--config-file`` and the trailing ``KEY VALUE`` overrides."""
    return get_wsod_cfg(args.config_file, args.opts)


def setup(args):
    """``load_config`` plus detectron2's ``default_setup`` (output dir, logs, seed) and the
    wsod_d2 logger; first, the check that detectron2 runs with the installed numpy / Pillow and,
    for ``--resume``, the trim of what the previous run logged after its checkpoint."""
    check_environment()
    cfg = load_config(args)
    if args.resume and not args.eval_only and comm.is_main_process():
        trim_logs_for_resume(cfg.OUTPUT_DIR)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wsod_d2")
    return cfg


def build_trainer(cfg):
    """The trainer class for ``cfg.MODEL.META_ARCHITECTURE`` (WSODTrainer unless in TRAINERS)."""
    return TRAINERS.get(cfg.MODEL.META_ARCHITECTURE, WSODTrainer)


def build_trained_model(cfg, weights=None):
    """The model of ``cfg`` in eval mode, with ``weights`` (a file) or else the last checkpoint
    in OUTPUT_DIR; FileNotFoundError when there is neither."""
    model = build_trainer(cfg).build_model(cfg)
    checkpointer = WSODCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    if weights:
        checkpointer.load(weights)
    elif checkpointer.has_checkpoint():
        checkpointer.resume_or_load("", resume=True)
    else:
        raise FileNotFoundError(f"no weights given and no checkpoint in {cfg.OUTPUT_DIR}")
    return model.eval()


def main(args):
    """Train (``trainer.train()``'s results) or, with ``--eval-only``, evaluate MODEL.WEIGHTS."""
    cfg = setup(args)
    Trainer = build_trainer(cfg)
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
    if args.resume and not trainer.checkpointer.has_checkpoint():
        logging.getLogger("wsod_d2").warning(
            f"--resume, but OUTPUT_DIR {os.path.abspath(cfg.OUTPUT_DIR)} has no checkpoint (no "
            "last_checkpoint file): training starts FROM SCRATCH at iteration 0 (MODEL.WEIGHTS "
            "only). If you meant to continue a run, stop and check OUTPUT_DIR."
        )
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_from_args(args, main_func=main):
    """Run ``main_func(args)`` in the processes that the command-line flags ask for (CPU
    processes over gloo when MODEL.DEVICE is cpu)."""
    launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        use_cuda=load_config(args).MODEL.DEVICE.startswith("cuda"),
    )
