"""What the detector's and the classifier's data paths share: image-level labels from
annotations, and reading an image with errors that name it."""
import logging
from typing import List

import numpy as np
from detectron2.data import detection_utils as utils

logger = logging.getLogger(__name__)


def read_image_checked(dataset_dict, image_format: str) -> np.ndarray:
    """The dict's image, or an error naming its file and image id (unreadable or a size that
    disagrees with the dict's height / width)."""
    try:
        image = utils.read_image(dataset_dict["file_name"], format=image_format)
    except Exception as e:
        raise RuntimeError(
            f"cannot read image {dataset_dict['file_name']} "
            f"(image_id {dataset_dict.get('image_id')}): {e}"
        ) from e
    utils.check_image_size(dataset_dict, image)
    return image


def image_labels_from_annotations(annotations, labels_from_difficult: bool) -> List[int]:
    """Sorted class ids present in the image (crowd regions never count)."""
    return sorted(
        {
            a["category_id"]
            for a in annotations
            if not a.get("iscrowd", 0) and (labels_from_difficult or not a.get("difficult", False))
        }
    )


def with_image_labels(name: str, dicts, *, is_train: bool, labels_from_difficult: bool):
    """Give each dict "image_labels" (derived from its annotations where the dataset gives none).

    Training keeps image-level labels only: boxes are removed, and images without any label are
    left out (their count is logged).
    """
    for d in dicts:
        if "image_labels" not in d:
            d["image_labels"] = image_labels_from_annotations(
                d.get("annotations", []), labels_from_difficult
            )
    if not is_train:
        return dicts
    unlabeled = sum(1 for d in dicts if not d["image_labels"])
    if unlabeled:
        logger.warning(f"{name}: {unlabeled} images without image labels left out of training")
    return [{k: v for k, v in d.items() if k != "annotations"} for d in dicts if d["image_labels"]]
