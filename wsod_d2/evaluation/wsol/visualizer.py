"""Drawing a WSOL model's localization maps with their boxes (``tools/visualize_cam.py``).

Each picture shows the image with the map of the chosen class as a heat map (the CAM, or TS-CAM /
SCM's coupled map), the GT boxes (green) and the box of the largest region of the map above
T x its maximum (red: the evaluation's own box, the one MaxBoxAcc / Top-1 Loc score, with its
end one pixel past the region and clipped to the image); TS-CAM heads add two panels, the
class-token attention map and the class's semantic map. The map is resized to the image and
min-max normalised as the WSOL evaluator does.
"""
import itertools
import os
from typing import Iterable, List, Sequence

import cv2
import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.structures import BoxMode

from wsod_d2.evaluation.wsol.boxes import largest_contour_box
from wsod_d2.evaluation.wsol.metrics import normalize_scoremap, resize_scoremap

GT_COLOUR = (0, 200, 0)  # RGB
BOX_COLOUR = (230, 0, 0)
HEAT_WEIGHT = 0.5  # share of the heat map in the overlay
LINE = 2


def map_on_image(scoremap: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) model map -> (height, width) in [0, 1], bicubic and min-max as the evaluator."""
    return normalize_scoremap(resize_scoremap(scoremap, (height, width)))


def heat_overlay(image_rgb: np.ndarray, scoremap: np.ndarray) -> np.ndarray:
    heat = cv2.applyColorMap((scoremap * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return (HEAT_WEIGHT * heat + (1 - HEAT_WEIGHT) * image_rgb).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes, colour) -> None:
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, LINE)


def render(image_rgb, dataset_dict, output, class_names, threshold: float) -> np.ndarray:
    """The panels of one image side by side: (H, k * W, 3) RGB."""
    height, width = image_rgb.shape[:2]
    cam = map_on_image(output["cam"].detach().cpu().numpy(), height, width)
    panel = heat_overlay(image_rgb, cam)
    gt = [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in dataset_dict.get("annotations", [])
    ]
    draw_boxes(panel, gt, GT_COLOUR)
    box = largest_contour_box(cam, threshold)
    if box is not None:
        draw_boxes(panel, [box], BOX_COLOUR)
    cls = output["cam_class"]
    score = float(output["image_scores"][cls])
    cv2.putText(
        panel,
        f"{class_names[cls]} {score:.2f}",
        (4, 14),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    panels = [panel]
    for key in ("attention", "semantic"):
        if key in output:
            part = map_on_image(output[key].detach().cpu().numpy(), height, width)
            panels.append(heat_overlay(image_rgb, part))
    return np.concatenate(panels, axis=1)


def draw_cams(
    model: torch.nn.Module,
    loader: Iterable[List[dict]],
    class_names: Sequence[str],
    output_dir: str,
    *,
    num_images: int,
    cam_threshold: float,
) -> int:
    """Run ``model`` (eval mode) on the first ``num_images`` batches of one image of ``loader``
    and write ``<output_dir>/<image id>.png`` for each; returns how many were written."""
    os.makedirs(output_dir, exist_ok=True)
    written = 0
    with torch.no_grad():
        for inputs in itertools.islice(loader, num_images):
            output = model(inputs)[0]
            image = utils.read_image(inputs[0]["file_name"], format="RGB")
            drawn = render(image, inputs[0], output, class_names, cam_threshold)
            name = str(inputs[0]["image_id"]).replace("/", "_").rsplit(".", 1)[0]
            cv2.imwrite(os.path.join(output_dir, f"{name}.png"), drawn[:, :, ::-1])
            written += 1
    return written
