"""CASDRCNN: WSODRCNN trained on several views of each image (CASD, Huang et al. NeurIPS 2020)."""
from typing import Dict, List

import torch
from detectron2.modeling import META_ARCH_REGISTRY

from wsod_d2.modeling.wsod.rcnn import WSODRCNN


@META_ARCH_REGISTRY.register()
class CASDRCNN(WSODRCNN):
    """Training input: dicts from MultiViewWSODDatasetMapper ("views", "proposals" in original
    coordinates, "image_labels"). Each view index is one backbone pass over the batch; the ROI
    heads' ``multi_view_losses`` (RefinementROIHeads and subclasses) turns the views into losses.
    Test: WSODRCNN's single-view inference (and its TTA).
    """

    trains_on_views = True

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return super().forward(batched_inputs)
        if "views" not in batched_inputs[0]:
            raise ValueError(
                "CASDRCNN trains on several views of each image (MultiViewWSODDatasetMapper's "
                "'views'): set INPUT.VIEWS.NUM_SCALES >= 1"
            )
        num_views = len(batched_inputs[0]["views"])
        flipped = [view["flipped"] for view in batched_inputs[0]["views"]]
        for x in batched_inputs:
            flips = [view["flipped"] for view in x["views"]]
            if flips != flipped:
                raise ValueError(
                    f"image {x.get('image_id')}: its views' flips {flips} differ from the "
                    f"batch's {flipped}; every image needs the same view layout"
                )
        view_features, view_proposals = [], []
        for v in range(num_views):
            inputs = [x["views"][v] for x in batched_inputs]
            view_features.append(self.backbone(self.preprocess_image(inputs).tensor))
            view_proposals.append([x["proposals"].to(self.device) for x in inputs])
        labels = torch.stack([x["image_labels"] for x in batched_inputs]).to(self.device)
        label_proposals = [x["proposals"].to(self.device) for x in batched_inputs]
        return self.roi_heads.multi_view_losses(
            view_features, view_proposals, label_proposals, labels, flipped
        )
