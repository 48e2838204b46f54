"""Test-time augmentation for WSOD R-CNN over precomputed proposals (detectron2's
GeneralizedRCNNWithTTA refuses them).

Each image is run at every scale of TEST.AUG.MIN_SIZES (short side; long side at most
TEST.AUG.MAX_SIZE), each also horizontally flipped when TEST.AUG.FLIP. Every pass sees the same
proposals, transformed with the image by :meth:`WSODDatasetMapper.map_view` (flip first, then
resize), so each pass scores the same proposal list: per proposal, the scores (R, C) and the boxes
((R, 4), or (R, 4C) with box regression), mapped back to the original image, are averaged over
the passes; then class-wise NMS and top-k as in the model's own inference. Each pass runs alone,
so no padding from a larger pass changes its features. With TEST.AUG.PROPOSAL_JITTER each pass
scores its own random jitter of the proposals (in the pass's frame, seeded per image:
:mod:`wsod_d2.modeling.wsod.proposal_jitter`), and the averages are over those jittered boxes.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch.nn.parallel import DistributedDataParallel

from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.modeling.wsod.proposal_jitter import ProposalJitter

__all__ = ["WSODRCNNWithTTA", "original_size_mapper", "boxes_to_original"]


def original_size_mapper(cfg) -> WSODDatasetMapper:
    """The test mapper without resizing: TTA then reads every image at its original size."""
    return WSODDatasetMapper(**{**WSODDatasetMapper.from_config(cfg, False), "augmentations": []})


def boxes_to_original(
    boxes: torch.Tensor, pass_size: Tuple[int, int], original_size: Tuple[int, int], flipped: bool
) -> torch.Tensor:
    """Undo one pass's flip-then-resize on boxes (R, 4k) XYXY; sizes are (height, width)."""
    (h, w), (height, width) = pass_size, original_size
    scale = boxes.new_tensor([width / w, height / h, width / w, height / h])
    out = boxes.reshape(len(boxes), -1, 4) * scale
    if flipped:
        out = torch.stack([width - out[..., 2], out[..., 1], width - out[..., 0], out[..., 3]], -1)
    return out.reshape(boxes.shape)


class WSODRCNNWithTTA(nn.Module):
    """Wraps a :class:`WSODRCNN` (or DDP of one) in eval mode; called like it at test time:
    list of input dicts (as from the test mapper: "image", "proposals", "height", "width") ->
    list of {"instances": detections in the original image, "image_scores": (C,) averaged}.

    Inputs whose image is smaller or larger than (height, width) are resized back first, image
    and proposals; :func:`original_size_mapper` avoids that second interpolation.
    """

    @configurable
    def __init__(
        self,
        model: nn.Module,
        *,
        mapper: WSODDatasetMapper,
        min_sizes: Sequence[int],
        max_size: int,
        flip: bool,
        jitter: Optional[ProposalJitter] = None,
    ):
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not min_sizes:
            raise ValueError("WSODRCNNWithTTA: TEST.AUG.MIN_SIZES is empty, no pass to run")
        self.model = model
        self.mapper = mapper
        self.min_sizes = tuple(min_sizes)
        self.max_size = max_size
        self.flip = flip
        self.jitter = jitter

    @classmethod
    def from_config(cls, cfg, model):
        return {
            "model": model,
            "mapper": original_size_mapper(cfg),
            "min_sizes": cfg.TEST.AUG.MIN_SIZES,
            "max_size": cfg.TEST.AUG.MAX_SIZE,
            "flip": cfg.TEST.AUG.FLIP,
            "jitter": ProposalJitter.from_config(cfg),
        }

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        if self.model.training:
            raise RuntimeError("WSODRCNNWithTTA is for inference: call model.eval() first")
        return [self.inference_one(inp) for inp in batched_inputs]

    def original_view(self, inp: Dict):
        """(image (H, W, 3) numpy, proposal boxes (R, 4) and logits (R,) numpy) at the original
        size (height, width) of the input."""
        image = inp["image"].permute(1, 2, 0).cpu().numpy()
        proposals = inp["proposals"]
        boxes = proposals.proposal_boxes.tensor.cpu().numpy()
        h, w = image.shape[:2]
        height, width = inp.get("height", h), inp.get("width", w)
        if (h, w) != (height, width):
            resize = T.ResizeTransform(h, w, height, width)
            image, boxes = resize.apply_image(image), resize.apply_box(boxes)
        return image, boxes, proposals.objectness_logits.cpu().numpy()

    def passes(self, width: int):
        """(augmentations, flipped) of every pass; the flip comes first, in original coordinates."""
        for min_size in self.min_sizes:
            for flipped in (False, True) if self.flip else (False,):
                flip = [T.HFlipTransform(width)] if flipped else []
                resize = T.ResizeShortestEdge(min_size, self.max_size)
                yield T.AugmentationList(flip + [resize]), flipped

    def inference_one(self, inp: Dict) -> Dict:
        image, boxes, logits = self.original_view(inp)
        original_size = image.shape[:2]
        totals = None
        num_passes = 0
        generator = None if self.jitter is None else self.jitter.generator(inp.get("image_id"))
        for augmentations, flipped in self.passes(original_size[1]):
            tensor, proposals = self.mapper.map_view(image, boxes, logits, augmentations)
            if self.jitter is not None:
                jittered = self.jitter(
                    proposals.proposal_boxes.tensor, proposals.image_size, generator
                )
                proposals.proposal_boxes = Boxes(jittered)
            pass_boxes, scores, image_scores = self.predict_one(tensor, proposals)
            pass_boxes = boxes_to_original(pass_boxes, proposals.image_size, original_size, flipped)
            outputs = (pass_boxes, scores, image_scores)
            totals = outputs if totals is None else [t + o for t, o in zip(totals, outputs)]
            num_passes += 1
        mean_boxes, mean_scores, mean_image_scores = (t / num_passes for t in totals)
        instances = self.model.roi_heads.detections(
            [mean_boxes], [mean_scores], [Instances(original_size)]
        )[0]
        height, width = original_size
        return {
            "instances": detector_postprocess(instances, height, width),
            "image_scores": mean_image_scores,
        }

    @torch.no_grad()
    def predict_one(self, image: torch.Tensor, proposals: Instances):
        """One pass: boxes (R, 4k), scores (R, C) in the pass's coordinates; image_scores (C,)."""
        model = self.model
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        boxes, scores, image_scores = model.roi_heads.predict(
            features, [proposals.to(model.device)]
        )
        return boxes[0], scores[0], image_scores[0]
