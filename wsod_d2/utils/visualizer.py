"""Drawing detections, ground truth and proposals with detectron2's Visualizer."""
import itertools
import os
from typing import List

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.utils.visualizer import Visualizer


def draw_detections(
    image_rgb: np.ndarray,
    instances,
    metadata,
    *,
    score_thresh: float = 0.0,
    gt_dict=None,
    proposals=None,
    num_proposals: int = 0,
) -> np.ndarray:
    """An RGB image (H, W, 3) with the detections above ``score_thresh`` drawn.

    ``gt_dict`` (a dataset dict with "annotations") adds the GT boxes; ``proposals`` (N, 4)
    adds the first ``num_proposals`` proposal boxes, thin and grey.
    """
    vis = Visualizer(image_rgb, metadata)
    if gt_dict is not None and gt_dict.get("annotations"):
        vis = Visualizer(vis.draw_dataset_dict(gt_dict).get_image(), metadata)
    if proposals is not None and num_proposals > 0:
        for box in np.asarray(proposals)[:num_proposals]:
            vis.draw_box(box, alpha=0.3, edge_color="gray", line_style="--")
    keep = instances[instances.scores > score_thresh].to("cpu")
    return vis.draw_instance_predictions(keep).get_image()


def visualize_dataset(
    model,
    loader,
    dataset_name: str,
    output_dir: str,
    *,
    num_images: int,
    score_thresh: float,
    show_gt: bool,
    num_proposals: int,
) -> List[str]:
    """Run ``model`` (eval mode) over the first ``num_images`` batches of a test ``loader`` and
    write one PNG per image to ``output_dir``; returns their paths."""
    metadata = MetadataCatalog.get(dataset_name)
    gt = {str(d["image_id"]): d for d in DatasetCatalog.get(dataset_name)} if show_gt else {}
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    with torch.no_grad():
        for inputs in itertools.islice(loader, num_images):
            out = model(inputs)[0]
            d = inputs[0]
            image = utils.read_image(d["file_name"], format="RGB")
            # Proposals were scaled with the image; bring them back to the original size.
            h, w = d["proposals"].image_size
            proposals = d["proposals"].proposal_boxes.tensor.clone()
            proposals[:, 0::2] *= d["width"] / w
            proposals[:, 1::2] *= d["height"] / h
            drawn = draw_detections(
                image,
                out["instances"],
                metadata,
                score_thresh=score_thresh,
                gt_dict=gt.get(str(d["image_id"])),
                proposals=proposals.numpy(),
                num_proposals=num_proposals,
            )
            paths.append(os.path.join(output_dir, f"{d['image_id']}.png"))
            cv2.imwrite(paths[-1], drawn[:, :, ::-1])
    return paths
