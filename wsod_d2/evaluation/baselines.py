"""Trivial WSOD baselines, scored by the same evaluators as the models.

Both know each image's labels (as CorLoc does) and output one box per present class:
"random_proposal" a proposal drawn uniformly at random, "whole_image" the full image.
"""
from typing import Dict

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from wsod_d2.data.proposals.references import image_proposals

BASELINES = ("random_proposal", "whole_image")


def baseline_instances(dataset_dict: Dict, kind: str, rng: np.random.Generator) -> Instances:
    """One box per image label of ``dataset_dict`` (with proposals attached, "image_labels")."""
    h, w = dataset_dict["height"], dataset_dict["width"]
    classes = list(dataset_dict["image_labels"])
    if kind == "whole_image":
        boxes = np.tile(np.array([[0.0, 0.0, w, h]], dtype=np.float32), (len(classes), 1))
    elif kind == "random_proposal":
        proposals, _ = image_proposals(dataset_dict)
        boxes = proposals[rng.integers(0, len(proposals), size=len(classes))]
    else:
        raise ValueError(f"unknown baseline {kind!r}; choose from {BASELINES}")
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.as_tensor(boxes).reshape(-1, 4))
    inst.scores = torch.ones(len(classes))
    inst.pred_classes = torch.as_tensor(classes, dtype=torch.long)
    return inst


def evaluate_baseline(dataset_dicts, evaluator, kind: str, seed: int = 0):
    """Run ``evaluator`` (a DatasetEvaluator) on the baseline's outputs for ``dataset_dicts``."""
    rng = np.random.default_rng(seed)
    evaluator.reset()
    for d in dataset_dicts:
        evaluator.process([d], [{"instances": baseline_instances(d, kind, rng)}])
    return evaluator.evaluate()
