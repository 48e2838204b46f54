"""Training sets read from COCO-format instances files, e.g. the pseudo ground truth that
tools/export_pseudo_gt.py writes, registered under the names of DATASETS.TRAIN."""
import os
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from wsod_d2.data.wsod.build import resolve_dataset_path


def register_pseudo_gt_datasets(names: Sequence[str], files: Sequence[str]) -> None:
    """Register each ``files[i]`` under ``names[i]`` with ``register_coco_instances`` (image
    root "": the file names in the file are used as they are). Nothing to do when ``files`` is
    empty; a name already registered from the same file is left as it is."""
    if not files:
        return
    if len(files) != len(names):
        raise ValueError(
            f"DATASETS.PSEUDO_GT_FILES_TRAIN has {len(files)} files {list(files)} for "
            f"{len(names)} DATASETS.TRAIN names {list(names)}: give one file per name"
        )
    for name, path in zip(names, files):
        path = resolve_dataset_path(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"DATASETS.PSEUDO_GT_FILES_TRAIN: {path} (for {name}) not found; write it with "
                "tools/export_pseudo_gt.py from a trained WSOD model"
            )
        if name in DatasetCatalog.list():
            if MetadataCatalog.get(name).get("json_file", None) == path:
                continue
            raise ValueError(
                f"DATASETS.TRAIN: {name} is already a registered dataset; pseudo ground truth "
                f"from {path} needs a name of its own"
            )
        register_coco_instances(name, {}, path, "")
