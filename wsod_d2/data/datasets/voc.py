"""PASCAL VOC for WSOD: detectron2's VOC loader plus "difficult" flags and strict class names.

Registered under detectron2's own names (voc_2007_trainval, voc_2007_test, voc_2012_trainval,
...), replacing detectron2's loader of the same data: the dicts are the same plus a
"difficult" flag per annotation, which WSOD needs for image labels and CorLoc.
"""
import os
import xml.etree.ElementTree as ET
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES
from detectron2.structures import BoxMode

VOC_SPLITS = {
    "voc_2007_trainval": ("VOC2007", "trainval"),
    "voc_2007_train": ("VOC2007", "train"),
    "voc_2007_val": ("VOC2007", "val"),
    "voc_2007_test": ("VOC2007", "test"),
    "voc_2012_trainval": ("VOC2012", "trainval"),
    "voc_2012_train": ("VOC2012", "train"),
    "voc_2012_val": ("VOC2012", "val"),
}


def load_voc_wsod(dirname: str, split: str, class_names: Sequence[str]):
    """Dicts of one VOC split; boxes in detectron2's convention (VOC's 1-based xmin/ymin - 1)."""
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"VOC split file {split_file} not found (dataset root {dirname})")
    with open(split_file) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    class_index = {name: i for i, name in enumerate(class_names)}
    dicts = []
    for image_id in ids:
        anno_file = os.path.join(dirname, "Annotations", image_id + ".xml")
        try:
            tree = ET.parse(anno_file)
        except (OSError, ET.ParseError) as e:
            raise ValueError(f"cannot read annotation {anno_file}: {e}") from e
        annotations = []
        for obj in tree.findall("object"):
            name = obj.find("name").text.strip()
            if name not in class_index:
                raise ValueError(
                    f"{anno_file}: unknown class name {name!r} (image {image_id}); "
                    f"known: {', '.join(class_names)}"
                )
            difficult = obj.find("difficult")
            box = [float(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            box[0] -= 1.0
            box[1] -= 1.0
            annotations.append(
                {
                    "category_id": class_index[name],
                    "bbox": box,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "difficult": difficult is not None and int(difficult.text) == 1,
                }
            )
        dicts.append(
            {
                "file_name": os.path.join(dirname, "JPEGImages", image_id + ".jpg"),
                "image_id": image_id,
                "height": int(tree.find("./size/height").text),
                "width": int(tree.find("./size/width").text),
                "annotations": annotations,
            }
        )
    return dicts


def register_voc_wsod(
    name, dirname, split, year, class_names=CLASS_NAMES, prepare=None, **metadata
):
    """Register a VOC-layout dataset (replacing an existing registration of ``name``).

    ``prepare()``, if given, runs before each load (e.g. to generate missing data).
    """
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)

    def load():
        if prepare is not None:
            prepare()
        return load_voc_wsod(dirname, split, class_names)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        dirname=dirname,
        year=year,
        split=split,
        evaluator_type="pascal_voc",
        **metadata,
    )


def register_all_voc(root):
    for name, (folder, split) in VOC_SPLITS.items():
        register_voc_wsod(name, os.path.join(root, folder), split, int(folder[3:]))
