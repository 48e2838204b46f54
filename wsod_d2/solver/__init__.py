"""Optimizers."""
from wsod_d2.solver.build import build_optimizer
