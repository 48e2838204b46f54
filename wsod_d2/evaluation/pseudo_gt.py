"""Pseudo ground truth from a weak detector's detections on its training images: per image, per
image-level class, the boxes a supervised detector is then trained on (the "+FRCNN" step of
OICR, PCL, MIST, CASD). The COCO-format file is written by wsod_d2.engine.pseudo_gt."""
import itertools
from typing import Dict, Iterable, List

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.layers import batched_nms
from detectron2.structures import BoxMode
from detectron2.utils import comm

from wsod_d2.evaluation.corloc import top_box_per_class

# "top1": the top-scoring box of each labelled class (OICR / PCL "+FRCNN" protocol).
# "threshold": every box of a labelled class scoring >= the threshold after class-wise NMS.
RULES = ("top1", "threshold")


def select_pseudo_boxes(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    labels: Iterable[int],
    *,
    rule: str,
    score_thresh: float = 0.0,
    nms_thresh: float = 1.0,
):
    """
    The pseudo-GT boxes of one image.

    Args:
        boxes: (R, 4) XYXY detections; scores: (R,); classes: (R,) contiguous class ids.
        labels: the image's class ids; detections of other classes are never kept.
        rule: "top1" or "threshold" (RULES). Under "threshold" a labelled class with no box
            above ``score_thresh`` keeps its top box: the class is known to be in the image, and
            leaving it unboxed would teach the detector that it is background.
        score_thresh, nms_thresh: the "threshold" rule's minimum score and class-wise NMS IoU.
    Returns:
        (boxes (K, 4), scores (K,), classes (K,)), by class then decreasing score. A labelled
        class without any detection gets no box.
    """
    if rule not in RULES:
        raise ValueError(f"pseudo-GT rule {rule!r}: choose from {RULES}")
    labels = torch.as_tensor(sorted(set(int(c) for c in labels)), dtype=torch.long)
    keep = torch.isin(classes.cpu(), labels).nonzero().flatten()
    boxes, scores, classes = boxes.cpu()[keep], scores.cpu()[keep], classes.cpu()[keep]
    top = top_box_per_class(boxes, scores, classes)
    if rule == "top1":
        chosen = [(c, s, b) for c, (s, b) in sorted(top.items())]
    else:
        passing = scores >= score_thresh
        idx = passing.nonzero().flatten()
        idx = idx[batched_nms(boxes[idx], scores[idx], classes[idx], nms_thresh)]
        kept = {c: [] for c in top}
        for i in idx.tolist():
            kept[int(classes[i])].append((float(scores[i]), boxes[i].tolist()))
        chosen = []
        for c in sorted(top):
            entries = sorted(kept[c], key=lambda e: -e[0]) or [top[c]]
            chosen += [(c, s, b) for s, b in entries]
    if not chosen:
        return torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return (
        torch.tensor([b for _, _, b in chosen], dtype=torch.float32),
        torch.tensor([s for _, s, _ in chosen], dtype=torch.float32),
        torch.tensor([c for c, _, _ in chosen], dtype=torch.long),
    )


def pseudo_gt_category_ids(dataset_name: str) -> List[int]:
    """The category id written for each contiguous class id: the dataset's own (COCO) or, for
    datasets without one (VOC), 1..C as COCO files number them (register_coco_instances then maps
    them back to 0..C-1 in the same order)."""
    meta = MetadataCatalog.get(dataset_name)
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None)
    if mapping is None:
        return list(range(1, len(meta.thing_classes) + 1))
    reverse = {v: k for k, v in mapping.items()}
    return [reverse[i] for i in range(len(reverse))]


class PseudoGTCollector(DatasetEvaluator):
    """Runs :func:`select_pseudo_boxes` on each image of one dataset, through detectron2's
    ``inference_on_dataset``. ``evaluate()`` returns {"images", "annotations",
    "labelled_classes", "unboxed_classes"} (COCO-format records; the last two count (image,
    label) pairs and those that got no box) on the main process."""

    def __init__(self, dataset_name: str, *, rule: str, score_thresh: float, nms_thresh: float):
        if rule not in RULES:
            raise ValueError(f"pseudo-GT rule {rule!r}: choose from {RULES}")
        self._category_ids = pseudo_gt_category_ids(dataset_name)
        self._rule, self._score_thresh, self._nms_thresh = rule, score_thresh, nms_thresh
        self.reset()

    def reset(self):
        self._images: List[Dict] = []

    def process(self, inputs, outputs):
        """inputs: the test mapper's dicts ("image_id", "file_name", "height", "width", and
        "image_labels" (C,) multi-hot); outputs: {"instances"} in original image coordinates."""
        for inp, out in zip(inputs, outputs):
            instances = out["instances"]
            labels = inp["image_labels"].nonzero().flatten().tolist()
            boxes, scores, classes = select_pseudo_boxes(
                instances.pred_boxes.tensor,
                instances.scores,
                instances.pred_classes,
                labels,
                rule=self._rule,
                score_thresh=self._score_thresh,
                nms_thresh=self._nms_thresh,
            )
            xywh = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).tolist()
            image = {k: inp[k] for k in ("image_id", "file_name", "height", "width")}
            image["labels"] = labels
            image["annotations"] = [
                {"category_id": self._category_ids[c], "bbox": box, "score": s}
                for box, s, c in zip(xywh, scores.tolist(), classes.tolist())
            ]
            image["unboxed"] = len(set(labels) - set(classes.tolist()))
            self._images.append(image)

    def evaluate(self):
        comm.synchronize()
        parts = comm.gather(self._images, dst=0)
        if not comm.is_main_process():
            return {}
        images = sorted(itertools.chain(*parts), key=lambda im: str(im["image_id"]))
        annotations = []
        for image in images:
            for ann in image["annotations"]:
                x, y, w, h = ann["bbox"]
                annotations.append(
                    {"image_id": image["image_id"], **ann, "area": w * h, "iscrowd": 0}
                )
        return {
            "images": [
                {"id": im["image_id"], **{k: im[k] for k in ("file_name", "height", "width")}}
                for im in images
            ],
            "annotations": annotations,
            "labelled_classes": sum(len(im["labels"]) for im in images),
            "unboxed_classes": sum(im["unboxed"] for im in images),
        }
