"""The adversary's step (Concrete DropBlock's generator): its own optimizer and schedule, the
update on -weight x the loss after the detector's step, its exclusion from the main optimizer."""
import pytest
import torch
import torch.nn as nn
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from wsod_d2.config import get_wsod_cfg
from wsod_d2.engine.adversarial import AdversarialTrainer
from wsod_d2.engine.wsod_trainer import WSODTrainer
from wsod_d2.solver.build import build_adversary_lr_scheduler, build_adversary_optimizer
from wsod_d2.testing import REPO_ROOT


class Toy(nn.Module):
    """loss = (w * a * data - 1)^2 with w the detector's parameter and a the adversary's."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))
        self.adversary = nn.Linear(1, 1, bias=False)
        nn.init.constant_(self.adversary.weight, 2.0)

    def forward(self, data):
        return {"loss": (self.w * self.adversary.weight[0, 0] * data - 1.0) ** 2}


def cdb_cfg(*opts):
    # fmt: off
    return get_wsod_cfg(None, [
        "SOLVER.MAX_ITER", 10, "SOLVER.CDB.BASE_LR", 1e-2, "SOLVER.CDB.GAMMA", 3.0,
        "SOLVER.CDB.STEPS", (2, 4), "SOLVER.CDB.WARMUP_ITERS", 0, "SOLVER.CDB.MOMENTUM", 0.0,
        "SOLVER.CDB.WEIGHT_DECAY", 0.0, *opts,
    ])
    # fmt: on


def run(trainer, steps):
    lrs = []
    with EventStorage(0) as storage:
        for it in range(steps):
            trainer.iter = it
            trainer.run_step()
            lrs.append(storage.history("lr_cdb").latest())
            storage.step()
    return lrs


def test_adversary_steps_after_the_detector_on_the_reversed_loss():
    cfg, toy = cdb_cfg(), Toy()
    main = torch.optim.SGD([toy.w], lr=0.1)
    adv_opt = build_adversary_optimizer(cfg, toy.adversary)
    trainer = AdversarialTrainer(
        toy, [torch.tensor(1.0)] * 10, main,
        adversary_model=toy, adversary=toy.adversary, adversary_optimizer=adv_opt,
        adversary_scheduler=build_adversary_lr_scheduler(cfg, adv_opt), adversary_weight=0.5,
    )  # fmt: skip
    with torch.no_grad():
        toy.w.fill_(0.3)
    run(trainer, 1)
    # Detector first: w1 = w0 - 0.1 dL/dw at (w0, a0), dL/dw = 2 (w a - 1) a.
    w0, a0 = 0.3, 2.0
    w1 = w0 - 0.1 * 2 * (w0 * a0 - 1) * a0
    # Then the adversary, on a second forward at the updated detector: a1 = a0 - lr d(-0.5 L)/da.
    a1 = a0 + 1e-2 * 0.5 * 2 * (w1 * a0 - 1) * w1
    assert toy.w.item() == pytest.approx(w1) and toy.adversary.weight.item() == pytest.approx(a1)
    assert a1 != a0
    # Its step raised the detector's loss.
    assert (w1 * a1 - 1) ** 2 > (w1 * a0 - 1) ** 2


def test_adversary_has_its_own_schedule_and_checkpoint_state():
    cfg, toy = cdb_cfg(), Toy()
    adv_opt = build_adversary_optimizer(cfg, toy.adversary)
    trainer = AdversarialTrainer(
        toy, [torch.tensor(1.0)] * 10, torch.optim.SGD([toy.w], lr=0.1),
        adversary_model=toy, adversary=toy.adversary, adversary_optimizer=adv_opt,
        adversary_scheduler=build_adversary_lr_scheduler(cfg, adv_opt), adversary_weight=0.5,
    )  # fmt: skip
    lrs = run(trainer, 5)
    # x GAMMA = 3 at iterations 2 and 4 (wetectron's VOC recipe raises the generator's lr).
    assert lrs == pytest.approx([1e-2, 1e-2, 3e-2, 3e-2, 9e-2])
    state = trainer.state_dict()
    assert {"optimizer", "adversary_optimizer", "adversary_scheduler"} <= set(state)


def test_main_optimizer_leaves_the_generator_out():
    config = f"{REPO_ROOT}/configs/Synthetic/mist_reg_cdb_tiny.yaml"
    cfg = get_wsod_cfg(config, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    generator = {id(p) for p in model.adversary.parameters()}
    assert generator
    main = WSODTrainer.build_optimizer(cfg, model)
    held = {id(p) for g in main.param_groups for p in g["params"]}
    assert not held & generator and held
    adv = build_adversary_optimizer(cfg, model.adversary)
    assert {id(p) for g in adv.param_groups for p in g["params"]} == generator
    assert {g["lr"] for g in adv.param_groups} == {1e-4, 2e-4}  # bias (BN) lr x2
    # A main optimizer over every parameter is refused.
    with pytest.raises(ValueError, match="exclude"):
        AdversarialTrainer(
            model, [], torch.optim.SGD(model.parameters(), lr=0.1), adversary_model=model,
            adversary=model.adversary, adversary_optimizer=adv, adversary_scheduler=None,
            adversary_weight=0.01,
        )  # fmt: skip
    assert model.eval().roi_heads.dropblock.training is False
