"""Drawing detections, ground truth and proposals with detectron2's Visualizer."""
import numpy as np
from detectron2.utils.visualizer import Visualizer


def draw_detections(image_rgb: np.ndarray, instances, metadata, *, score_thresh: float = 0.0,
                    gt_dict=None, proposals=None, num_proposals: int = 0) -> np.ndarray:
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
