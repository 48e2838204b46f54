"""Checks of WSOD dataset dicts made before the first iteration, so that a bad image file or a
class count that disagrees with the model stops the run at once, naming the image and the key."""
from typing import Any, Dict, Sequence

from detectron2.data import MetadataCatalog
from PIL import Image, UnidentifiedImageError

__all__ = ["check_image_files", "check_num_classes"]

# EXIF orientations that turn the stored image by 90 degrees (detectron2's read_image applies
# them, so the dataset dict's width / height are those of the turned image).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


def _header_size(file_name: str):
    """(width, height) as detectron2's read_image will see it, from the file's header only."""
    with Image.open(file_name) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
    return width, height


def check_image_files(dataset_name: str, dicts: Sequence[Dict[str, Any]]) -> None:
    """Read each image's header (cheap: no pixel is decoded); ValueError naming the dataset, the
    image id and the file when one is missing, not an image, or not the dict's size."""
    for d in dicts:
        where = f"dataset {dataset_name}: image id {d['image_id']!r} ({d['file_name']})"
        try:
            size = _header_size(d["file_name"])
        except FileNotFoundError:
            raise ValueError(f"{where}: file not found; check the dataset root") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(
                f"{where}: not a readable image ({e}); replace the file or remove the image "
                "from the dataset (set DATASETS.CHECK_IMAGE_FILES False to skip this check)"
            ) from e
        if "width" in d and "height" in d and size != (d["width"], d["height"]):
            raise ValueError(
                f"{where}: the file is {size[0]}x{size[1]} (WxH) but the dataset dict says "
                f"{d['width']}x{d['height']}; the annotations were made for another image"
            )


def check_num_classes(dataset_name: str, dicts: Sequence[Dict[str, Any]], num_classes: int):
    """ValueError naming MODEL.ROI_HEADS.NUM_CLASSES when it differs from the dataset's class
    count (its metadata's thing_classes) or an image label is not below it."""
    classes = MetadataCatalog.get(dataset_name).get("thing_classes", None)
    if classes is not None and len(classes) != num_classes:
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but dataset {dataset_name} has "
            f"{len(classes)} classes ({', '.join(classes[:5])}{' ...' if len(classes) > 5 else ''})"
            f": set MODEL.ROI_HEADS.NUM_CLASSES {len(classes)}"
        )
    for d in dicts:
        bad = [c for c in d["image_labels"] if not 0 <= c < num_classes]
        if bad:
            raise ValueError(
                f"dataset {dataset_name}: image id {d['image_id']!r} ({d.get('file_name')}) has "
                f"class id(s) {bad}, outside [0, MODEL.ROI_HEADS.NUM_CLASSES = {num_classes}); "
                "set MODEL.ROI_HEADS.NUM_CLASSES to the dataset's class count"
            )
