from .launch import launch
from .trainer import WSODTrainer, build_wsod_evaluator, create_ddp_model
from .wsol_trainer import WSOLTrainer, build_wsol_evaluator
