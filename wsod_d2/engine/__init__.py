from .launch import launch
from .trainer import WSODTrainer, build_wsod_evaluator, create_ddp_model
