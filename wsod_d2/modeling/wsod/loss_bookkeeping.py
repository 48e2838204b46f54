"""Loss bookkeeping: every weighted loss term also logs its raw (unweighted) value.

A term whose weight or scale makes it negligible (CASD's image-wise loss was ~1e-5 against ~1e-1
for the others in the released code) then shows as such in the log and in TensorBoard.
"""
from typing import Dict

import torch
import torch.distributed as dist
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

__all__ = ["put_loss"]


def put_loss(losses: Dict[str, torch.Tensor], name: str, raw: torch.Tensor, weight: float) -> None:
    """losses[name] = weight * raw; the raw value goes to the event storage as "raw/<name>".

    detectron2's trainer logs the weighted values (the losses dict, averaged over processes for
    the log); the raw value is averaged over processes the same way, so with several processes
    every process must call put_loss for the same terms in the same order (as the model's
    losses are). Outside a training loop (no event storage) only the dict is filled.
    """
    losses[name] = weight * raw
    try:
        storage = get_event_storage()
    except AssertionError:  # get_event_storage asserts when no EventStorage is open
        return
    value = raw.detach()
    world_size = comm.get_world_size()
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / world_size
    storage.put_scalar(f"raw/{name}", value)
