"""A training step with an adversary (Concrete DropBlock's mask generator), as wetectron's
``do_train_cdb`` takes it: each iteration, on the same batch,

1. the detector's step: forward, backward, the main optimizer's step (detectron2's
   SimpleTrainer step; the main optimizer does not hold the adversary's parameters);
2. the adversary's step: a second forward of the updated detector with fresh masks, and its own
   optimizer's step on the gradient of -weight x (the total loss) with respect to the adversary's
   parameters only, so it learns to raise the detector's loss; then its own lr schedule steps.

Not a gradient-reversal layer: the two objectives are stepped one after the other, as in the
release. The second forward's scalars go to a throw-away EventStorage (the iteration's log keeps
the first forward's); "loss_cdb" and "lr_cdb" are logged.
"""
import torch
import torch.nn as nn
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import EventStorage, get_event_storage

__all__ = ["AdversarialTrainer"]


class _LastBatch:
    """Iterates over ``loader`` and keeps the batch it gave last."""

    def __init__(self, loader):
        self.loader = loader
        self.last = None

    def __iter__(self):
        for batch in self.loader:
            self.last = batch
            yield batch


class AdversarialTrainer(SimpleTrainer):
    """SimpleTrainer whose step is followed by the adversary's (module docstring).

    model: the detector as trained (possibly DDP-wrapped); adversary_model: the same detector
    unwrapped, for the second forward (a DDP forward would wait for a backward of all its
    parameters); adversary: its module whose parameters ``adversary_optimizer`` holds;
    adversary_weight: the generator minimises -adversary_weight x the total loss.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        *,
        adversary_model: nn.Module,
        adversary: nn.Module,
        adversary_optimizer: torch.optim.Optimizer,
        adversary_scheduler,
        adversary_weight: float,
    ):
        main_params = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if any(id(p) in main_params for p in adversary.parameters()):
            raise ValueError(
                "AdversarialTrainer: the main optimizer holds parameters of the adversary; build "
                "it with build_optimizer(cfg, model, exclude=adversary.parameters())"
            )
        super().__init__(model, _LastBatch(data_loader), optimizer)
        self.adversary_model = adversary_model
        self.adversary = adversary
        self.adversary_optimizer = adversary_optimizer
        self.adversary_scheduler = adversary_scheduler
        self.adversary_weight = adversary_weight

    def run_step(self):
        super().run_step()
        self.adversary_step(self.data_loader.last)

    def adversary_step(self, data):
        params = [p for p in self.adversary.parameters() if p.requires_grad]
        with EventStorage(self.iter):
            loss_dict = self.adversary_model(data)
        loss = -self.adversary_weight * sum(loss_dict.values())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        world_size = comm.get_world_size()
        for param, grad in zip(params, grads):
            grad = torch.zeros_like(param) if grad is None else grad
            if world_size > 1:
                torch.distributed.all_reduce(grad)
                grad = grad / world_size
            param.grad = grad
        self.adversary_optimizer.step()
        self.adversary_optimizer.zero_grad(set_to_none=True)
        storage = get_event_storage()
        storage.put_scalar("loss_cdb", float(loss.detach()))
        storage.put_scalar("lr_cdb", self.adversary_optimizer.param_groups[0]["lr"])
        self.adversary_scheduler.step()

    def state_dict(self):
        ret = super().state_dict()
        ret["adversary_optimizer"] = self.adversary_optimizer.state_dict()
        ret["adversary_scheduler"] = self.adversary_scheduler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.adversary_optimizer.load_state_dict(state_dict["adversary_optimizer"])
        self.adversary_scheduler.load_state_dict(state_dict["adversary_scheduler"])
