"""Dataset dicts and data loaders for WSOD: proposals attached, image-level labels derived."""
import logging
import os
from typing import Optional, Sequence

from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)

from wsod_d2.data.common import with_image_labels
from wsod_d2.data.progress import DeferredLoader
from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.selective_search import generate_proposals
from wsod_d2.data.wsod.checks import check_image_files, check_num_classes
from wsod_d2.data.wsod.gt_leak import refuse_gt_leak, warn_gt_leak
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.utils.heap import release_free_heap
from wsod_d2.utils.locks import exclusive_lock

logger = logging.getLogger(__name__)


def resolve_dataset_path(path: str) -> str:
    """Expand ``$DETECTRON2_DATASETS`` (default "datasets") and ``~`` in a config path."""
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    for var in ("${DETECTRON2_DATASETS}", "$DETECTRON2_DATASETS"):
        path = path.replace(var, root)
    return os.path.expanduser(path)


def ensure_proposals(dataset_name: str, dicts, proposal_file: str, workers: int):
    """Generate a missing proposal file (a pickle) for datasets whose metadata "auto_proposals"
    holds the selective-search options to do it with. An existing file or store is kept."""
    if os.path.exists(proposal_file):
        return
    options = MetadataCatalog.get(dataset_name).get("auto_proposals", None)
    if options is None:
        raise FileNotFoundError(
            f"proposal file {proposal_file} for dataset {dataset_name} not found; make it with "
            f"`python tools/generate_proposals.py --dataset {dataset_name} "
            f"--output {proposal_file}` "
            "or convert a published one (or a pickle, to a proposal store: --output-format "
            "store) with tools/convert_proposals.py"
        )
    with exclusive_lock(proposal_file):
        if not os.path.exists(proposal_file):
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
    accepted_files: Sequence[str] = (),
    num_classes: Optional[int] = None,
    check_images: bool = False,
):
    """Dicts of the named datasets with proposals and "image_labels" (class ids); see
    :func:`with_image_labels` for what training dicts keep.

    accepted_files: proposal files whose convention statistics are not checked
    (DATASETS.PROPOSAL_FILES_ACCEPTED). num_classes: when given, the datasets' class counts
    must equal it. check_images: read every image's header first."""
    key = f"DATASETS.PROPOSAL_FILES_{'TRAIN' if is_train else 'TEST'}"
    if len(names) != len(proposal_files):
        raise ValueError(
            f"{len(names)} datasets {list(names)} but {len(proposal_files)} proposal files "
            f"{list(proposal_files)}: {key} needs one file per dataset, in the order of "
            f"DATASETS.{'TRAIN' if is_train else 'TEST'}"
        )
    accepted = {resolve_dataset_path(f) for f in accepted_files}
    out = []
    for name, proposal_file in zip(names, proposal_files):
        dicts = DatasetCatalog.get(name)
        proposal_file = resolve_dataset_path(proposal_file)
        ensure_proposals(name, dicts, proposal_file, proposal_workers)
        dicts = attach_proposals(
            dicts,
            proposal_file,
            bounds_tolerance=bounds_tolerance,
            accept_conventions=proposal_file in accepted,
        )
        dicts = with_image_labels(
            name, dicts, is_train=is_train, labels_from_difficult=labels_from_difficult
        )
        if num_classes is not None:
            check_num_classes(name, dicts, num_classes)
        if check_images:
            check_image_files(name, dicts)
        logger.info(f"{name}: {len(dicts)} images with proposals from {proposal_file}")
        out.extend(dicts)
    if is_train and names and not out:
        raise ValueError(
            f"no training image of {list(names)} has an image-level label (none has an "
            "annotation, or all are 'difficult' while DATASETS.LABELS_FROM_DIFFICULT is False): "
            "check the dataset's annotations"
        )
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
        accepted_files=cfg.DATASETS.PROPOSAL_FILES_ACCEPTED,
        num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        check_images=cfg.DATASETS.CHECK_IMAGE_FILES,
    )


def build_wsod_train_mapper(cfg):
    """The training mapper of ``cfg``: several views per image when INPUT.VIEWS.NUM_SCALES > 0."""
    if cfg.INPUT.VIEWS.NUM_SCALES > 0:
        return MultiViewWSODDatasetMapper(cfg)
    return WSODDatasetMapper(cfg, True)


def build_wsod_train_loader(cfg, mapper=None):
    refuse_gt_leak(cfg, "building the training loader")
    dicts = dataset_dicts_from_config(
        cfg, cfg.DATASETS.TRAIN, cfg.DATASETS.PROPOSAL_FILES_TRAIN, True
    )
    if mapper is None:
        mapper = build_wsod_train_mapper(cfg)
    loader = build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)
    del dicts  # serialised by the loader: the dicts themselves go before the heap is trimmed
    release_free_heap()
    # Started at the first batch, when the trainer has written the (resumed) iteration that
    # mappers read (wsod_d2.data.progress).
    return DeferredLoader(loader)


def check_wsod_test_data(cfg):
    """Load every DATASETS.TEST set with its proposals, as evaluation will, so that a missing or
    wrong test proposal file or image stops the run before training, not after it."""
    dataset_dicts_from_config(cfg, cfg.DATASETS.TEST, cfg.DATASETS.PROPOSAL_FILES_TEST, False)


def build_wsod_test_loader(cfg, dataset_name: str, mapper=None):
    names, files = list(cfg.DATASETS.TEST), list(cfg.DATASETS.PROPOSAL_FILES_TEST)
    if len(names) != len(files):
        raise ValueError(
            f"DATASETS.TEST has {len(names)} datasets {names} but DATASETS.PROPOSAL_FILES_TEST "
            f"{len(files)} files {files}: give one proposal file per test dataset, in order"
        )
    proposal_file = files[names.index(dataset_name)]
    dicts = dataset_dicts_from_config(cfg, [dataset_name], [proposal_file], False)
    mapper = mapper or WSODDatasetMapper(cfg, False)
    warn_gt_leak(cfg, f"building the test loader of {dataset_name}")
    loader = build_detection_test_loader(
        dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
    )
    del dicts  # serialised by the loader
    release_free_heap()
    return loader
