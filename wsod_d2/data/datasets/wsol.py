"""Datasets in the wsolevaluation metadata format: CUB, ILSVRC, OpenImages30k and the synthetic one.

A split is a folder of text files (clovaai/wsolevaluation's layout), image ids being image paths
relative to an image root:

- ``image_ids.txt``: one id per line;
- ``class_labels.txt``: ``<id>,<class index>``;
- ``image_sizes.txt`` (optional): ``<id>,<width>,<height>``;
- ``localization.txt`` (optional): boxes ``<id>,<x0>,<y0>,<x1>,<y1>`` (integer pixel corners, one
  line per box, the reference's inclusive convention kept as is) or, for OpenImages, masks
  ``<id>,<mask png>,<ignore png>`` (one line per instance mask; the ignore mask, given on the
  first line only, may be empty), paths relative to the mask root.

Dataset dicts: "file_name", "image_id" (the id), "image_labels" ([class index]), "height" and
"width" when sizes are listed (else the mapper reads them from the image), and "annotations"
({"bbox", "bbox_mode": XYXY_ABS, "category_id"}) for boxes or "mask_file_names" (list) and
"ignore_file_name" for masks.

Registered names (data under $DETECTRON2_DATASETS/wsol/<CUB|ILSVRC|OpenImages>, metadata under
$DETECTRON2_DATASETS/wsol/metadata/<CUB|ILSVRC|OpenImages>/<split>, as wsolevaluation's dataset/
and metadata/ folders): ``{cub,ilsvrc,openimages}_wsol_{train,val,test}``, val being
wsolevaluation's train-fullsup split (CUBV2, ImageNetV2, OpenImages30k val). The synthetic data,
``synthwsol_{train,val,test}``, is generated on first use under $DETECTRON2_DATASETS/synthwsol.
"""

import os
from typing import Callable, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from wsod_d2.data.synthetic.wsol import (
    SPLITS,
    SyntheticWSOLSpec,
    ensure_synthetic_wsol,
    synthetic_wsol_class_names,
)

__all__ = [
    "load_wsol_metadata",
    "register_wsol_dataset",
    "register_all_wsol",
    "register_synthetic_wsol",
]

# name prefix -> (folder, number of classes, localization kind)
WSOL_BENCHMARKS = {
    "cub": ("CUB", 200, "box"),
    "ilsvrc": ("ILSVRC", 1000, "box"),
    "openimages": ("OpenImages", 100, "mask"),
}
LOCALIZATION_KINDS = {"box": "wsol_box", "mask": "wsol_mask"}


def _check_localization(localization: str) -> None:
    if localization not in LOCALIZATION_KINDS:
        raise ValueError(
            f"localization must be one of {sorted(LOCALIZATION_KINDS)}, got {localization!r}"
        )


def _read_rows(path: str, num_fields: int) -> List[list]:
    """[line number, field, ...] of the non-empty lines, each of ``num_fields`` comma-separated
    fields; the id (first field) may hold commas."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.rsplit(",", num_fields - 1)
            if len(fields) != num_fields:
                raise ValueError(
                    f"{path}:{number}: expected {num_fields} comma-separated fields, got {line!r}"
                )
            rows.append([number] + fields)
    return rows


def _parse_int(value: str, path: str, number: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{path}:{number}: {what} must be an integer, got {value!r}") from None


def _read_image_ids(path: str) -> List[str]:
    ids, seen = [], set()
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            image_id = line.rstrip("\r\n")
            if not image_id.strip():
                continue
            if image_id in seen:
                raise ValueError(f"{path}:{number}: image id {image_id!r} is listed twice")
            seen.add(image_id)
            ids.append(image_id)
    return ids


def _boxes(path: str) -> Dict[str, List[List[int]]]:
    boxes: Dict[str, List[List[int]]] = {}
    for number, image_id, *values in _read_rows(path, 5):
        x0, y0, x1, y1 = (_parse_int(v, path, number, "a box coordinate") for v in values)
        if min(x0, y0) < 0 or x1 < x0 or y1 < y0:
            raise ValueError(
                f"{path}:{number}: box {[x0, y0, x1, y1]} of image {image_id!r} must be "
                "x0,y0,x1,y1 with 0 <= x0 <= x1 and 0 <= y0 <= y1"
            )
        boxes.setdefault(image_id, []).append([x0, y0, x1, y1])
    return boxes


def _mask_files(path: str, mask_root: str) -> Dict[str, Dict]:
    masks: Dict[str, Dict] = {}
    for number, image_id, mask, ignore in _read_rows(path, 3):
        entry = masks.setdefault(image_id, {"mask_file_names": []})
        if not mask:
            raise ValueError(f"{path}:{number}: image {image_id!r} has an empty mask path")
        entry["mask_file_names"].append(os.path.join(mask_root, mask))
        if ignore:
            if "ignore_file_name" in entry or len(entry["mask_file_names"]) > 1:
                raise ValueError(
                    f"{path}:{number}: image {image_id!r} has an ignore mask on a line other than "
                    "its first (one ignore mask per image, on its first line)"
                )
            entry["ignore_file_name"] = os.path.join(mask_root, ignore)
    return masks


def load_wsol_metadata(
    metadata_dir: str,
    image_root: str,
    *,
    num_classes: int,
    localization: str = "box",
    mask_root: Optional[str] = None,
) -> List[Dict]:
    """
    Dataset dicts of one split in the wsolevaluation format (see the module docstring).

    Args:
        metadata_dir: folder with image_ids.txt, class_labels.txt and the optional files.
        image_root: folder the image ids are relative to.
        num_classes: C; class indices must lie in [0, C).
        localization: "box" or "mask", how to read localization.txt.
        mask_root: folder the mask paths are relative to (default ``image_root``).
    """
    _check_localization(localization)
    files = {
        name: os.path.join(metadata_dir, f"{name}.txt")
        for name in ("image_ids", "class_labels", "image_sizes", "localization")
    }
    for name in ("image_ids", "class_labels"):
        if not os.path.isfile(files[name]):
            raise FileNotFoundError(
                f"WSOL metadata file {files[name]} not found (metadata folder {metadata_dir})"
            )
    image_ids = _read_image_ids(files["image_ids"])
    labels = {}
    for number, image_id, label in _read_rows(files["class_labels"], 2):
        c = _parse_int(label, files["class_labels"], number, "a class label")
        if not 0 <= c < num_classes:
            raise ValueError(
                f"{files['class_labels']}:{number}: class {c} of image {image_id!r} is outside "
                f"[0, {num_classes})"
            )
        labels[image_id] = c
    sizes = {}
    if os.path.isfile(files["image_sizes"]):
        for number, image_id, *wh in _read_rows(files["image_sizes"], 3):
            w, h = (_parse_int(v, files["image_sizes"], number, "an image size") for v in wh)
            sizes[image_id] = (h, w)
    localized: Dict[str, object] = {}
    if os.path.isfile(files["localization"]):
        if localization == "box":
            localized = _boxes(files["localization"])
        else:
            localized = _mask_files(files["localization"], mask_root or image_root)

    dicts = []
    for image_id in image_ids:
        if image_id not in labels:
            raise ValueError(
                f"image {image_id!r} of {files['image_ids']} has no line in "
                f"{files['class_labels']}"
            )
        record = {
            "file_name": os.path.join(image_root, image_id),
            "image_id": image_id,
            "image_labels": [labels[image_id]],
        }
        if image_id in sizes:
            record["height"], record["width"] = sizes[image_id]
        if localization == "box" and image_id in localized:
            record["annotations"] = [
                {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": labels[image_id]}
                for box in localized[image_id]
            ]
        elif image_id in localized:
            record.update(localized[image_id])
        dicts.append(record)
    return dicts


def register_wsol_dataset(
    name: str,
    metadata_dir: str,
    image_root: str,
    *,
    class_names: Sequence[str],
    localization: str = "box",
    mask_root: Optional[str] = None,
    prepare: Optional[Callable[[], object]] = None,
):
    """
    Register a split in the wsolevaluation format (replacing an earlier registration of ``name``).

    ``prepare()``, if given, runs before each load (e.g. to generate missing data).
    """
    _check_localization(localization)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    def load():
        if prepare is not None:
            prepare()
        return load_wsol_metadata(
            metadata_dir,
            image_root,
            num_classes=len(class_names),
            localization=localization,
            mask_root=mask_root,
        )

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        metadata_dir=metadata_dir,
        image_root=image_root,
        evaluator_type=LOCALIZATION_KINDS[localization],
    )


def register_all_wsol(root: str):
    """The CUB, ILSVRC and OpenImages30k splits under ``root``/wsol (loaded only when used) and
    the default synthetic data under ``root``/synthwsol."""
    for prefix, (folder, num_classes, localization) in WSOL_BENCHMARKS.items():
        for split in SPLITS:
            register_wsol_dataset(
                f"{prefix}_wsol_{split}",
                os.path.join(root, "wsol", "metadata", folder, split),
                os.path.join(root, "wsol", folder),
                class_names=[str(c) for c in range(num_classes)],
                localization=localization,
            )
    register_synthetic_wsol("synthwsol", os.path.join(root, "synthwsol"))


def register_synthetic_wsol(prefix: str, root: str, spec: SyntheticWSOLSpec = SyntheticWSOLSpec()):
    """Register ``<prefix>_{train,val,test}`` for the synthetic data at ``root``."""
    for split in SPLITS:
        register_wsol_dataset(
            f"{prefix}_{split}",
            os.path.join(root, "metadata", split),
            os.path.join(root, "images"),
            class_names=synthetic_wsol_class_names(spec.num_classes),
            prepare=lambda: ensure_synthetic_wsol(root, spec),
        )
