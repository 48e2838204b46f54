"""Dataset dicts and data loaders for the WSOL classifier: image labels, no proposals."""
from typing import Dict, List, Sequence

from detectron2.data import (
    DatasetCatalog,
    DatasetFromList,
    MapDataset,
    build_detection_train_loader,
)
from detectron2.data.build import trivial_batch_collator
from detectron2.data.samplers import InferenceSampler
from torch.utils.data import BatchSampler, DataLoader

from wsod_d2.data.common import with_image_labels
from wsod_d2.data.wsol.mapper import WSOLDatasetMapper
from wsod_d2.utils.heap import release_free_heap


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
    loader = build_detection_train_loader(cfg, mapper=WSOLDatasetMapper(cfg, True), dataset=dicts)
    del dicts  # serialised by the loader: the dicts themselves go before the heap is trimmed
    release_free_heap()
    return loader


def build_wsol_test_loader(cfg, dataset_name: str) -> DataLoader:
    """Every image of ``dataset_name`` once, in batches of TEST.WSOL.IMS_PER_BATCH."""
    dicts = get_wsol_dataset_dicts(
        [dataset_name], is_train=False, labels_from_difficult=cfg.DATASETS.LABELS_FROM_DIFFICULT
    )
    dataset = MapDataset(DatasetFromList(dicts, copy=False), WSOLDatasetMapper(cfg, False))
    del dicts  # serialised by DatasetFromList
    release_free_heap()
    batches = BatchSampler(
        InferenceSampler(len(dataset)), cfg.TEST.WSOL.IMS_PER_BATCH, drop_last=False
    )
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )
