"""Training and evaluation: the WSOD and WSOL trainers (siblings over WeakSupervisionTrainer),
CPU-capable ``launch()``, and train_net's command line as functions (``defaults``)."""
from wsod_d2.engine.base_trainer import WeakSupervisionTrainer, create_ddp_model
from wsod_d2.engine.launch import launch
from wsod_d2.engine.supervised_trainer import SupervisedTrainer
from wsod_d2.engine.wsod_trainer import WSODTrainer
from wsod_d2.engine.wsol_trainer import WSOLTrainer
