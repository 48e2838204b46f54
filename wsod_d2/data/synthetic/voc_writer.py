"""Write the synthetic VOC dataset to disk in the PASCAL VOC2007 layout.

``root`` gets JPEGImages/, Annotations/ (VOC XML) and ImageSets/Main/ and, last, the marker file
``.synthvoc_spec.json`` naming the spec, so a complete dataset is recognised and reused. Besides
trainval and test, ImageSets/Main has VOC's train and val, which halve trainval. The images are
those of :func:`wsod_d2.data.synthetic.voc_render.render_synthetic_image`.
"""

import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from wsod_d2.data.synthetic.generated import DatasetRecipe, ensure_generated, generate
from wsod_d2.data.synthetic.voc import SPLITS, SyntheticImage, SyntheticObject, SyntheticVOCSpec
from wsod_d2.data.synthetic.voc_render import render_synthetic_image

__all__ = ["MARKER_NAME", "generate_synthetic_voc", "ensure_synthetic_voc"]

# Bumped whenever rendering changes, so a dataset made by older code is not silently reused.
GENERATOR_VERSION = 1
MARKER_NAME = ".synthvoc_spec.json"


def _annotation_xml(folder: str, image: SyntheticImage, class_names: Tuple[str, ...]) -> bytes:
    """VOC XML; boxes in VOC's 1-based inclusive convention (a full-image box is 1..W)."""

    def add(parent: ET.Element, tag: str, text: Optional[object] = None) -> ET.Element:
        element = ET.SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    h, w = image.image.shape[:2]
    root = ET.Element("annotation")
    add(root, "folder", folder)
    add(root, "filename", f"{image.image_id}.jpg")
    source = add(root, "source")
    add(source, "database", "wsod_d2 synthetic VOC")
    add(source, "annotation", "wsod_d2 synthetic VOC")
    add(source, "image", "rendered")
    size = add(root, "size")
    add(size, "width", w)
    add(size, "height", h)
    add(size, "depth", 3)
    add(root, "segmented", 0)
    for obj in image.objects:
        element = add(root, "object")
        add(element, "name", class_names[obj.class_id])
        add(element, "pose", "Unspecified")
        add(element, "truncated", int(obj.truncated))
        add(element, "difficult", int(obj.difficult))
        bndbox = add(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            add(bndbox, tag, value + 1)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _write_image_sets(
    directory: str,
    split_objects: Dict[str, List[Tuple[str, Tuple[SyntheticObject, ...]]]],
    class_names: Tuple[str, ...],
) -> None:
    """<split>.txt and VOC's per-class <cls>_<split>.txt ("1" present, "0" only difficult,
    "-1" absent). train/val halve trainval alternately, as VOC ships them too."""
    trainval = split_objects["trainval"]
    splits = dict(split_objects, train=trainval[0::2], val=trainval[1::2])
    os.makedirs(directory)
    for split, items in splits.items():
        with open(os.path.join(directory, f"{split}.txt"), "w") as f:
            f.writelines(f"{image_id}\n" for image_id, _ in items)
        for class_id, name in enumerate(class_names):
            lines = []
            for image_id, objects in items:
                flags = [obj.difficult for obj in objects if obj.class_id == class_id]
                label = -1 if not flags else (0 if all(flags) else 1)
                lines.append(f"{image_id} {label:2d}\n")
            with open(os.path.join(directory, f"{name}_{split}.txt"), "w") as f:
                f.writelines(lines)


def _write_dataset(directory: str, folder: str, spec: SyntheticVOCSpec) -> None:
    """Write the full dataset but its marker into the empty or missing `directory`."""
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    split_objects: Dict[str, List[Tuple[str, Tuple[SyntheticObject, ...]]]] = {}
    for split in SPLITS:
        size = spec.num_trainval if split == "trainval" else spec.num_test
        split_objects[split] = []
        for index in range(size):
            image = render_synthetic_image(spec, split, index)
            bgr = np.ascontiguousarray(image.image[:, :, ::-1])
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for synthetic image {image.image_id}")
            with open(os.path.join(directory, "JPEGImages", f"{image.image_id}.jpg"), "wb") as f:
                f.write(jpeg.tobytes())
            xml = _annotation_xml(folder, image, spec.class_names)
            with open(os.path.join(directory, "Annotations", f"{image.image_id}.xml"), "wb") as f:
                f.write(xml)
            split_objects[split].append((image.image_id, image.objects))
    _write_image_sets(os.path.join(directory, "ImageSets", "Main"), split_objects, spec.class_names)


def _recipe(root: str, spec: SyntheticVOCSpec) -> DatasetRecipe:
    folder = os.path.basename(os.path.abspath(os.path.expanduser(root)))
    return DatasetRecipe(
        marker=dict(spec.to_json_dict(), generator_version=GENERATOR_VERSION),
        write=lambda directory: _write_dataset(directory, folder, spec),
        marker_name=MARKER_NAME,
        kind="synthetic VOC",
        summary=f"{spec.num_trainval} trainval + {spec.num_test} test images, "
        f"{spec.num_classes} classes, seed {spec.seed}",
    )


def generate_synthetic_voc(root: str, spec: SyntheticVOCSpec) -> None:
    """(Re)generate the dataset at root (e.g. $DETECTRON2_DATASETS/synthvoc/VOC2007), replacing
    an earlier synthetic dataset there. Writes JPEGImages/, Annotations/, ImageSets/Main/ and,
    last, the marker file .synthvoc_spec.json."""
    generate(root, _recipe(root, spec))


def ensure_synthetic_voc(root: str, spec: SyntheticVOCSpec) -> bool:
    """Generate the dataset at root unless it already exists with this spec; safe to call from
    several processes at once. Returns True if this call generated it.

    Raises ValueError if root holds a synthetic dataset made with a different spec."""
    return ensure_generated(root, _recipe(root, spec))
