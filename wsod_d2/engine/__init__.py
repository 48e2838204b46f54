from wsod_d2.engine.launch import launch
from wsod_d2.engine.wsod_trainer import WSODTrainer, build_wsod_evaluator, create_ddp_model
from wsod_d2.engine.wsol_trainer import WSOLTrainer, build_wsol_evaluator
