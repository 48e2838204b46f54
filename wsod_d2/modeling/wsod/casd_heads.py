"""CASDROIHeads: refinement heads with CASD's attention self-distillation (image-wise, layer-wise)
and Inverted Attention, each a config switch (MODEL.CASD). The math is in ``modeling/casd.py``.

Choices where the paper is silent and the authors released nothing (layer-wise CASD):

- a layer's RoI attention is :func:`roi_attention_maps` of that layer's features pooled at the
  RoI with the box pooler's type and resolution (so every layer lands on the same grid);
- LW alone: per view, each layer's map is distilled toward the max over the layers, summed over
  views; LW with IW on ("comprehensive" CASD): one target, the max over all views and layers
  (flipped views mirrored back), each view-layer map distilled toward it;
- both losses are sums over their maps of the per-element mean squared error.
"""
import contextlib
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from wsod_d2.modeling.wsod.box_head import BoxHead
from wsod_d2.modeling.wsod.casd import (
    apply_inverted_attention,
    image_wise_distillation_loss,
    inverted_attention_mask,
    layer_wise_distillation_loss,
    roi_attention_maps,
    select_ia_rois,
    stack_view_layer_maps,
)
from wsod_d2.modeling.wsod.loss_bookkeeping import put_loss
from wsod_d2.modeling.wsod.refinement import RefinementROIHeads, RefinementStage
from wsod_d2.modeling.wsod.refinement_targets import ImageTargets
from wsod_d2.modeling.wsod.roi_heads import MILOutputs


@contextlib.contextmanager
def _eval_mode(*modules):
    """Dropout off inside the block (IA measures the probability drop deterministically)."""
    modes = [m.training for m in modules]
    for m in modules:
        m.train(False)
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


@ROI_HEADS_REGISTRY.register()
class CASDROIHeads(RefinementROIHeads):
    """:class:`RefinementROIHeads` plus, in multi-view training (CASDRCNN):

    - "loss_casd_iw" (``iw_weight`` > 0): image-wise distillation of the conv RoI attention;
    - "loss_casd_lw" (``lw_weight`` > 0): layer-wise distillation over ``lw_layers`` (the
      heads' own layer reuses their pooled features; ``lw_poolers`` pool the others);
    - Inverted Attention (``ia_enabled``): each refinement stage (classifier and regression)
      sees RoI features with the most attended cells of some RoIs erased; the MIL head never does.

    All switches off: exactly RefinementROIHeads. Test: unchanged.
    """

    @configurable
    def __init__(
        self,
        *,
        iw_weight: float,
        lw_weight: float,
        lw_layers: List[str],
        lw_poolers: Dict[str, ROIPooler],
        attention_transform: str,
        ia_enabled: bool,
        ia_top_cells: List[int],
        ia_drop_cells: List[int],
        ia_fg_fraction: List[float],
        ia_bg_fraction: List[float],
        ia_late_start_iter: int,
        ia_min_drop: float,
        ia_candidates: List[int],
        ia_rank_over_views: bool = False,
        ia_chain_unmasked: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        schedules = (ia_top_cells, ia_drop_cells, ia_fg_fraction, ia_bg_fraction)
        if any(len(s) != 2 for s in schedules):
            raise ValueError(
                "MODEL.CASD.IA.{TOP_CELLS, DROP_CELLS, FG_FRACTION, BG_FRACTION} each need two "
                f"values (early, late), got {[list(s) for s in schedules]}"
            )
        if len(ia_candidates) != 2:
            raise ValueError(
                "MODEL.CASD.IA.CANDIDATES needs two counts (foreground, other), got "
                f"{list(ia_candidates)}"
            )
        if lw_weight > 0 and len(lw_layers) < 2:
            raise ValueError(f"MODEL.CASD.LW_LAYERS needs at least two layers, got {lw_layers}")
        if ia_enabled and not isinstance(self.box_head, BoxHead):
            # IA ranks the RoI cells by Grad-CAM, which the BoxHead contract computes.
            raise ValueError(
                f"MODEL.CASD.IA.ENABLED needs a wsod_d2 BoxHead (e.g. VGGFCHead) as "
                f"MODEL.ROI_BOX_HEAD.NAME, got {type(self.box_head).__name__}"
            )
        self.iw_weight = iw_weight
        self.lw_weight = lw_weight
        self.lw_layers = list(lw_layers)
        self.lw_poolers = nn.ModuleDict(lw_poolers)
        self.attention_transform = attention_transform
        self.ia_enabled = ia_enabled
        # (early, late) values of (top_cells, drop_cells, fg_fraction, bg_fraction)
        self.ia_schedule = list(zip(*schedules))
        self.ia_late_start_iter = ia_late_start_iter
        self.ia_min_drop = ia_min_drop
        self.ia_candidates = list(ia_candidates)
        self.ia_rank_over_views = ia_rank_over_views
        self.ia_chain_unmasked = ia_chain_unmasked

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        c = cfg.MODEL.CASD
        lw_poolers = {}
        if c.LW_WEIGHT > 0:
            box = cfg.MODEL.ROI_BOX_HEAD
            for name in c.LW_LAYERS:
                if name not in input_shape:
                    raise ValueError(
                        f"MODEL.CASD.LW_LAYERS: {name!r} is not a backbone output "
                        f"({sorted(input_shape)}); add it to the backbone's out features "
                        "(MODEL.VGG.OUT_FEATURES)"
                    )
                if [name] == list(ret["in_features"]):
                    continue  # the heads' own layer: their pooled features are reused
                lw_poolers[name] = ROIPooler(
                    output_size=box.POOLER_RESOLUTION,
                    scales=(1.0 / input_shape[name].stride,),
                    sampling_ratio=box.POOLER_SAMPLING_RATIO,
                    pooler_type=box.POOLER_TYPE,
                )
        ret.update(
            iw_weight=c.IW_WEIGHT,
            lw_weight=c.LW_WEIGHT,
            lw_layers=c.LW_LAYERS,
            lw_poolers=lw_poolers,
            attention_transform=c.ATTENTION_TRANSFORM,
            ia_enabled=c.IA.ENABLED,
            ia_top_cells=c.IA.TOP_CELLS,
            ia_drop_cells=c.IA.DROP_CELLS,
            ia_fg_fraction=c.IA.FG_FRACTION,
            ia_bg_fraction=c.IA.BG_FRACTION,
            ia_late_start_iter=c.IA.LATE_START_ITER,
            ia_min_drop=c.IA.MIN_DROP,
            ia_candidates=c.IA.CANDIDATES,
            ia_rank_over_views=c.IA.RANK_OVER_VIEWS,
            ia_chain_unmasked=c.IA.CHAIN_UNMASKED,
        )
        return ret

    def multi_view_losses(
        self,
        view_features: List[Dict[str, torch.Tensor]],
        view_proposals: List[List[Instances]],
        label_proposals: List[Instances],
        image_labels: torch.Tensor,
        flipped: List[bool],
    ) -> Dict[str, torch.Tensor]:
        views = [self.mil_outputs(f, p) for f, p in zip(view_features, view_proposals)]
        losses = self.losses_from_views(views, label_proposals, image_labels, flipped)
        if self.iw_weight > 0 or self.lw_weight > 0:
            losses.update(self.distillation_losses(views, view_features, view_proposals, flipped))
        return losses

    def distillation_losses(
        self,
        views: List[MILOutputs],
        view_features: List[Dict[str, torch.Tensor]],
        view_proposals: List[List[Instances]],
        flipped: List[bool],
    ) -> Dict[str, torch.Tensor]:
        """ "loss_casd_iw" and / or "loss_casd_lw" of V views (see the module docstring)."""
        losses = {}
        flips = torch.tensor(flipped, device=views[0].pooled.device)
        # (V, R, P, P) attention of the ROI heads' own pooled features
        head_maps = torch.stack(
            [roi_attention_maps(v.pooled, transform=self.attention_transform) for v in views]
        )
        if self.iw_weight > 0:
            iw = image_wise_distillation_loss(head_maps, flips)
            put_loss(losses, "loss_casd_iw", iw, self.iw_weight)
        if self.lw_weight > 0:
            layer_maps = [
                self._layer_maps(name, view_features, view_proposals)
                if name in self.lw_poolers
                else head_maps
                for name in self.lw_layers
            ]
            if self.iw_weight > 0:
                stacked = stack_view_layer_maps(layer_maps, flips, tuple(head_maps.shape[-2:]))
                lw = layer_wise_distillation_loss(stacked)
            else:
                per_view = torch.stack(layer_maps, dim=1)  # (V, L, R, P, P)
                lw = sum(layer_wise_distillation_loss(maps) for maps in per_view)
            put_loss(losses, "loss_casd_lw", lw, self.lw_weight)
        return losses

    def _layer_maps(self, name, view_features, view_proposals) -> torch.Tensor:
        """(V, R, P, P) RoI attention of backbone output ``name`` in every view."""
        pooler = self.lw_poolers[name]
        return torch.stack(
            [
                roi_attention_maps(
                    pooler([f[name]], [p.proposal_boxes for p in props]),
                    transform=self.attention_transform,
                )
                for f, props in zip(view_features, view_proposals)
            ]
        )

    def stage_inputs(
        self, stage: RefinementStage, views: List[MILOutputs], targets: List[List[ImageTargets]]
    ) -> List[torch.Tensor]:
        """With IA on: per view, the box-head features, those of the selected RoIs recomputed
        from their masked pooled features (steps in :func:`select_ia_rois`); otherwise the plain
        ones. The candidates are each view's sampled RoIs (MODEL.REFINEMENT.SAMPLE) or a random
        draw; their drops are ranked per view, or over all views of an image together."""
        if not (self.ia_enabled and self.training):
            return [v.x for v in views]
        late = get_event_storage().iter >= self.ia_late_start_iter
        top_cells, drop_cells, fg_fraction, bg_fraction = self.ia_schedule[int(late)]

        def select(before, after, y):
            return select_ia_rois(
                before,
                after,
                y > 0,
                fg_fraction=fg_fraction,
                bg_fraction=bg_fraction,
                min_drop=self.ia_min_drop,
            )

        def measure(view, view_targets):
            return self._ia_measure(stage, view, view_targets, top_cells, drop_cells)

        if not self.ia_rank_over_views:
            out = []
            for view, view_targets in zip(views, targets):
                m = measure(view, view_targets)
                parts = zip(*(m[key].split(m["counts"]) for key in ("before", "after", "y")))
                out.append(self._erase(view, m, torch.cat([select(*p) for p in parts])))
            return out
        measured = [measure(v, t) for v, t in zip(views, targets)]
        num_views, num_images = len(views), len(targets[0])
        chosen = [[] for _ in range(num_views)]
        per_image = [
            {k: m[k].split(m["counts"]) for k in ("before", "after", "y")} for m in measured
        ]
        for i in range(num_images):
            # (before, after, y) of image i, each the concatenation over the views
            parts = [torch.cat([p[key][i] for p in per_image]) for key in ("before", "after", "y")]
            sizes = [m["counts"][i] for m in measured]
            for v, c in enumerate(select(*parts).split(sizes)):
                chosen[v].append(c)
        return [self._erase(v, m, torch.cat(c)) for v, m, c in zip(views, measured, chosen)]

    def _erase(self, view: MILOutputs, measured, chosen: torch.Tensor) -> torch.Tensor:
        """The view's box-head features with those of the ``chosen`` candidates recomputed from
        their masked pooled features; only they go through the box head again."""
        index = measured["index"]
        erased = apply_inverted_attention(view.pooled[index], measured["mask"], chosen)[chosen]
        return view.x.index_put((index[chosen],), self.box_head(erased))

    def _ia_measure(
        self, stage, view: MILOutputs, targets: List[ImageTargets], top_cells, drop_cells
    ):
        """IA's masks of one view's candidate RoIs and their pseudo-class probabilities before and
        after masking (dropout off): {"index" (N,) batch-wide, "counts" per image, "y", "mask",
        "before", "after"}."""
        candidates = self._ia_candidates(targets)
        index = torch.cat(candidates)
        y = torch.cat([t.labels.clamp(min=0) for t in targets])[index]
        feats = view.pooled[index].detach()
        with _eval_mode(self.box_head, stage), torch.enable_grad():
            logits, grads = self.box_head.logits_and_cell_mean_grads(
                feats, lambda x: stage(x)[0], y
            )
        mask = inverted_attention_mask(feats, grads, top_cells=top_cells, drop_cells=drop_cells)
        with _eval_mode(self.box_head, stage), torch.no_grad():
            masked_logits = stage(self.box_head(feats * mask[:, None]))[0]
        return {
            "index": index,
            "counts": [len(c) for c in candidates],
            "y": y,
            "mask": mask,
            "before": F.softmax(logits, dim=1).gather(1, y[:, None])[:, 0],
            "after": F.softmax(masked_logits, dim=1).gather(1, y[:, None])[:, 0],
        }

    def chained_scores(self, stage, view: MILOutputs, x: torch.Tensor, logits: torch.Tensor):
        """With ``ia_chain_unmasked`` (CASD's release), the next stage learns from this stage's
        scores on the view's unmasked features."""
        if self.ia_chain_unmasked and x is not view.x:
            with torch.no_grad():
                logits = stage(view.x)[0]
        return super().chained_scores(stage, view, x, logits)

    def _ia_candidates(self, targets: List[ImageTargets]) -> List[torch.Tensor]:
        """Per image, the batch-wide indices of the RoIs IA ranks: the view's sampled RoIs when
        there is a sample, else up to ``ia_candidates`` = (foreground, other) RoIs drawn at
        random (the released code ranks its 32 + 96 sampled RoIs); a count <= 0 takes them
        all."""
        out, offset = [], 0
        for t in targets:
            if t.sample is not None:
                picks = [t.sample]
            else:
                fg = t.labels > 0
                picks = []
                for group, limit in zip(
                    (fg.nonzero()[:, 0], (~fg).nonzero()[:, 0]), self.ia_candidates
                ):
                    if 0 < limit < len(group):
                        group = group[torch.randperm(len(group), device=group.device)[:limit]]
                    picks.append(group)
            out.append(torch.cat(picks).sort().values + offset)
            offset += len(t.labels)
        return out
