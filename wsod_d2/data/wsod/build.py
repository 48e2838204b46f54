"""Dataset dicts and data loaders for WSOD: proposals attached, image-level labels derived."""
import logging
import os
from typing import Sequence

from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)

from wsod_d2.data.common import with_image_labels
from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.selective_search import generate_proposals
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.utils.locks import exclusive_lock

logger = logging.getLogger(__name__)


def resolve_dataset_path(path: str) -> str:
    """Expand ``$DETECTRON2_DATASETS`` (default "datasets") and ``~`` in a config path."""
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    for var in ("${DETECTRON2_DATASETS}", "$DETECTRON2_DATASETS"):
        path = path.replace(var, root)
    return os.path.expanduser(path)


def ensure_proposals(dataset_name: str, dicts, proposal_file: str, workers: int):
    """Generate a missing proposal file for datasets whose metadata "auto_proposals" holds the
    selective-search options to do it with."""
    if os.path.isfile(proposal_file):
        return
    options = MetadataCatalog.get(dataset_name).get("auto_proposals", None)
    if options is None:
        raise FileNotFoundError(
            f"proposal file {proposal_file} for dataset {dataset_name} not found; make it with "
            f"`python tools/generate_proposals.py --dataset {dataset_name} "
            f"--output {proposal_file}` "
            "or convert a published one with tools/convert_proposals.py"
        )
    with exclusive_lock(proposal_file):
        if not os.path.isfile(proposal_file):
            logger.info(
                f"Generating selective-search proposals for {dataset_name} -> {proposal_file}"
            )
            generate_proposals(dicts, proposal_file, workers=workers, **options)


def get_wsod_dataset_dicts(
    names: Sequence[str],
    proposal_files: Sequence[str],
    *,
    is_train: bool,
    labels_from_difficult: bool,
    bounds_tolerance: float,
    proposal_workers: int,
):
    """Dicts of the named datasets with proposals and "image_labels" (class ids); see
    :func:`with_image_labels` for what training dicts keep."""
    if len(names) != len(proposal_files):
        raise ValueError(
            f"{len(names)} datasets {list(names)} but {len(proposal_files)} proposal files "
            f"{list(proposal_files)}: DATASETS.PROPOSAL_FILES_{'TRAIN' if is_train else 'TEST'} "
            "needs one file per dataset"
        )
    out = []
    for name, proposal_file in zip(names, proposal_files):
        dicts = DatasetCatalog.get(name)
        proposal_file = resolve_dataset_path(proposal_file)
        ensure_proposals(name, dicts, proposal_file, proposal_workers)
        dicts = attach_proposals(dicts, proposal_file, bounds_tolerance=bounds_tolerance)
        dicts = with_image_labels(
            name, dicts, is_train=is_train, labels_from_difficult=labels_from_difficult
        )
        logger.info(f"{name}: {len(dicts)} images with proposals from {proposal_file}")
        out.extend(dicts)
    return out


def dataset_dicts_from_config(cfg, names, proposal_files, is_train: bool):
    """:func:`get_wsod_dataset_dicts` with the options of ``cfg``."""
    return get_wsod_dataset_dicts(
        names,
        proposal_files,
        is_train=is_train,
        labels_from_difficult=cfg.DATASETS.LABELS_FROM_DIFFICULT,
        bounds_tolerance=cfg.DATASETS.PROPOSAL_BOUNDS_TOLERANCE,
        proposal_workers=cfg.DATASETS.PROPOSAL_WORKERS,
    )


def build_wsod_train_loader(cfg, mapper=None):
    dicts = dataset_dicts_from_config(
        cfg, cfg.DATASETS.TRAIN, cfg.DATASETS.PROPOSAL_FILES_TRAIN, True
    )
    if mapper is None:
        multi_view = cfg.INPUT.VIEWS.NUM_SCALES > 0
        mapper = MultiViewWSODDatasetMapper(cfg) if multi_view else WSODDatasetMapper(cfg, True)
    return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)


def build_wsod_test_loader(cfg, dataset_name: str, mapper=None):
    index = list(cfg.DATASETS.TEST).index(dataset_name)
    proposal_file = cfg.DATASETS.PROPOSAL_FILES_TEST[index]
    dicts = dataset_dicts_from_config(cfg, [dataset_name], [proposal_file], False)
    mapper = mapper or WSODDatasetMapper(cfg, False)
    return build_detection_test_loader(dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)
