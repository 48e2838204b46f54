"""WSOLTrainer: the WSOD trainer for classification-with-maps models (WSOLClassifier).

Differences from WSODTrainer: data without proposals (WSOLDatasetMapper), batched testing
(TEST.WSOL.IMS_PER_BATCH), WSOL / PxAP / multi-label evaluators, and an optimizer with a larger
learning rate for the new layers (SOLVER.WSOL) and optionally AdamW.
"""

from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.data import (
    DatasetCatalog,
    DatasetFromList,
    MapDataset,
    MetadataCatalog,
    build_detection_train_loader,
)
from detectron2.data.build import trivial_batch_collator
from detectron2.data.samplers import InferenceSampler
from detectron2.evaluation import DatasetEvaluators
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

from wsod_d2.data.wsod.build import with_image_labels
from wsod_d2.data.wsol.mapper import WSOLDatasetMapper
from wsod_d2.evaluation.multilabel import VOCClassificationEvaluator
from wsod_d2.evaluation.wsol.evaluators import PxAPEvaluator, WSOLEvaluator
from wsod_d2.engine.wsod_trainer import WSODTrainer

__all__ = [
    "get_wsol_dataset_dicts",
    "build_wsol_train_loader",
    "build_wsol_test_loader",
    "build_wsol_evaluator",
    "build_wsol_optimizer",
    "WSOLTrainer",
]


# Evaluators by the dataset's evaluator_type when TEST.EVALUATORS is empty.
DEFAULT_WSOL_EVALUATORS = {
    "wsol_box": ["wsol"],
    "wsol_mask": ["pxap"],
    "pascal_voc": ["voc_cls"],
}
_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def get_wsol_dataset_dicts(
    names: Sequence[str], *, is_train: bool, labels_from_difficult: bool
) -> List[Dict]:
    """Dicts of the named datasets with "image_labels"; see :func:`with_image_labels`."""
    out = []
    for name in names:
        out.extend(
            with_image_labels(
                name,
                DatasetCatalog.get(name),
                is_train=is_train,
                labels_from_difficult=labels_from_difficult,
            )
        )
    return out


def build_wsol_train_loader(cfg):
    dicts = get_wsol_dataset_dicts(
        cfg.DATASETS.TRAIN,
        is_train=True,
        labels_from_difficult=cfg.DATASETS.LABELS_FROM_DIFFICULT,
    )
    return build_detection_train_loader(cfg, mapper=WSOLDatasetMapper(cfg, True), dataset=dicts)


def build_wsol_test_loader(cfg, dataset_name: str) -> DataLoader:
    """Every image of ``dataset_name`` once, in batches of TEST.WSOL.IMS_PER_BATCH."""
    dicts = get_wsol_dataset_dicts(
        [dataset_name], is_train=False, labels_from_difficult=cfg.DATASETS.LABELS_FROM_DIFFICULT
    )
    dataset = MapDataset(DatasetFromList(dicts, copy=False), WSOLDatasetMapper(cfg, False))
    batches = BatchSampler(
        InferenceSampler(len(dataset)), cfg.TEST.WSOL.IMS_PER_BATCH, drop_last=False
    )
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )


def build_wsol_evaluator(cfg, dataset_name: str) -> DatasetEvaluators:
    """
    TEST.EVALUATORS kinds, or by the dataset's evaluator_type (wsol_box: "wsol", wsol_mask:
    "pxap", pascal_voc: "voc_cls"): "wsol" (MaxBoxAccV2, Top-1 Loc, size bins...), "pxap",
    "voc_cls" (multi-label mAP).
    """
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    kinds = list(cfg.TEST.EVALUATORS) or DEFAULT_WSOL_EVALUATORS.get(evaluator_type)
    if not kinds:
        raise ValueError(
            f"dataset {dataset_name} has evaluator_type {evaluator_type!r} with no default WSOL "
            "evaluator; set TEST.EVALUATORS to some of wsol, pxap, voc_cls"
        )
    builders = _evaluator_builders(cfg, dataset_name)
    unknown = [k for k in kinds if k not in builders]
    if unknown:
        raise ValueError(f"TEST.EVALUATORS: unknown {unknown}; choose from {sorted(builders)}")
    return DatasetEvaluators([builders[k]() for k in kinds])


def _evaluator_builders(cfg, dataset_name: str) -> Dict:
    cam_thresholds = np.arange(0, 1, cfg.TEST.WSOL.CAM_CURVE_INTERVAL)
    eval_size = tuple(cfg.TEST.WSOL.EVAL_SIZE) or None
    return {
        "wsol": lambda: WSOLEvaluator(
            dataset_name,
            iou_thresholds=cfg.TEST.WSOL.IOU_THRESHOLDS,
            cam_thresholds=cam_thresholds,
            multi_contour=cfg.TEST.WSOL.MULTI_CONTOUR,
            size_bins=cfg.TEST.WSOL.SIZE_BINS,
            top_k=cfg.TEST.WSOL.TOP_K,
            eval_size=eval_size,
        ),
        "pxap": lambda: PxAPEvaluator(
            dataset_name, cam_thresholds=cam_thresholds, eval_size=eval_size
        ),
        "voc_cls": lambda: VOCClassificationEvaluator(dataset_name),
    }


def build_wsol_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """
    SGD, Adam or AdamW (SOLVER.OPTIMIZER). Parameters named with a SOLVER.WSOL.HEAD_LR_PREFIXES
    prefix get HEAD_LR_FACTOR x SOLVER.BASE_LR; normalization parameters get
    SOLVER.WEIGHT_DECAY_NORM, biases SOLVER.WEIGHT_DECAY_BIAS when set, others
    SOLVER.WEIGHT_DECAY.
    """
    base_lr = cfg.SOLVER.BASE_LR
    prefixes = tuple(cfg.SOLVER.WSOL.HEAD_LR_PREFIXES)
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, _NORM_TYPES)
        for p in m.parameters(recurse=False)
    }
    groups = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        weight_decay = cfg.SOLVER.WEIGHT_DECAY
        if id(param) in norm_params:
            weight_decay = cfg.SOLVER.WEIGHT_DECAY_NORM
        elif name.endswith(".bias") and cfg.SOLVER.WEIGHT_DECAY_BIAS is not None:
            weight_decay = cfg.SOLVER.WEIGHT_DECAY_BIAS
        factor = cfg.SOLVER.WSOL.HEAD_LR_FACTOR if name.startswith(prefixes) else 1.0
        groups.append({"params": [param], "lr": base_lr * factor, "weight_decay": weight_decay})
    groups = reduce_param_groups(groups)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
            groups, lr=base_lr, momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV
        )
    adams = {"ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}
    if name not in adams:
        raise ValueError(
            f"SOLVER.OPTIMIZER: unknown {cfg.SOLVER.OPTIMIZER!r}; choose SGD, ADAM or ADAMW"
        )
    return maybe_add_gradient_clipping(cfg, adams[name])(
        groups, lr=base_lr, betas=tuple(cfg.SOLVER.WSOL.ADAM_BETAS), eps=cfg.SOLVER.WSOL.ADAM_EPS
    )


class WSOLTrainer(WSODTrainer):
    """WSODTrainer with the WSOL data, evaluators and optimizer (module docstring)."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_wsol_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_wsol_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_wsol_evaluator(cfg, dataset_name)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_wsol_optimizer(cfg, model)
