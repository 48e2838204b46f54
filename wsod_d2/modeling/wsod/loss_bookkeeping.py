"""Loss bookkeeping: every weighted loss term also logs its raw (unweighted) value.

A term whose weight or scale makes it negligible (CASD's image-wise loss was ~1e-5 against ~1e-1
for the others in the released code) then shows as such in the log and in TensorBoard.
"""
from typing import Dict

import torch
from detectron2.utils.events import get_event_storage

__all__ = ["put_loss"]


def put_loss(losses: Dict[str, torch.Tensor], name: str, raw: torch.Tensor, weight: float) -> None:
    """losses[name] = weight * raw; the raw value goes to the event storage as "raw/<name>".

    detectron2's trainer logs the weighted values (the losses dict); outside a training loop
    (no event storage) only the dict is filled.
    """
    losses[name] = weight * raw
    try:
        storage = get_event_storage()
    except AssertionError:  # get_event_storage asserts when no EventStorage is open
        return
    storage.put_scalar(f"raw/{name}", raw.detach())
