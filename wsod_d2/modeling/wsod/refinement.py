"""Online instance refinement ROI heads: a MIL head followed by K refinement stages.

OICR (Tang et al. CVPR 2017), PCL (Tang et al. TPAMI 2018), MIST (Ren et al. CVPR 2020); each
stage optionally with a class-specific box regression layer (+Reg, as in wetectron).

Stage k in 1..K is Linear(fc7, C+1) (column 0 = background), supervised by pseudo labels built
from stage k-1's scores (stage 1 from the MIL head's RoI scores), all detached. The labeller
(OICR, PCL or MIST) comes from ``PSEUDO_LABELER_REGISTRY`` (pseudo_labelers.py); how the RoIs
learn from its pseudo labels (the labeller's loss, or CASD's sampled cross-entropy) is
refinement_targets.py's. Losses of one stage are averaged over the images of the batch and
multiplied by ``loss_weight``; stage 1's also by ``first_stage_loss_weight``.

Test: scores = mean over the test stages (all, or ``test_stages``: CASD's release scores stage 1
alone) of softmax(logits)[:, 1:] (and the MIL RoI scores when ``test_include_mil``); boxes = the
proposals, or, with regression, the mean over those stages of the per-class boxes decoded from
each stage's deltas (or the boxes decoded from the mean of the stages' deltas,
``test_box_average="deltas"``, as wetectron); then class-wise NMS and top-k.
With ``frcnn_branch`` (pcl.pytorch's WITH_FRCNN, frcnn_branch.py) a Fast R-CNN branch trained on
the last stage's OICR pseudo labels is averaged 1:1 with the stage score and gives the boxes.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Instances

from wsod_d2.modeling.wsod.frcnn_branch import (
    FastRCNNBranch,
    combine_with_branch,
    frcnn_branch_losses,
)
from wsod_d2.modeling.wsod.loss_bookkeeping import put_loss
from wsod_d2.modeling.wsod.pseudo_labelers import build_pseudo_labeler, tie_to_first
from wsod_d2.modeling.wsod.pseudo_labels import oicr_pseudo_labels
from wsod_d2.modeling.wsod.refinement_losses import regression_targets
from wsod_d2.modeling.wsod.refinement_targets import ImageTargets, RoISupervision
from wsod_d2.modeling.wsod.roi_heads import MILOutputs, WSODROIHeads

__all__ = [
    "RefinementStage",
    "RefinementROIHeads",
    "average_stage_scores",
    "average_stage_boxes",
    "average_stage_deltas",
]


class RefinementStage(nn.Module):
    """One refinement stage: class logits Linear(D, C+1) (column 0 = background) and, with
    ``box_reg``, class-specific deltas Linear(D, 4(C+1)).

    forward(x (R, D)) -> (logits (R, C+1), deltas (R, 4(C+1)) or None).
    """

    def __init__(
        self, input_dim: int, num_classes: int, *, box_reg: bool, cls_init_std: float = 0.01
    ):
        super().__init__()
        self.cls_score = nn.Linear(input_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(input_dim, 4 * (num_classes + 1)) if box_reg else None
        # Fast R-CNN's init: small deltas at the start keep the boxes on the proposals.
        nn.init.normal_(self.cls_score.weight, std=cls_init_std)
        nn.init.zeros_(self.cls_score.bias)
        if self.bbox_pred is not None:
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor):
        deltas = self.bbox_pred(x) if self.bbox_pred is not None else None
        return self.cls_score(x), deltas


def average_stage_scores(
    stage_logits: List[torch.Tensor], mil_scores: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean over the stages of softmax(logits)[:, 1:] (background dropped), plus ``mil_scores``
    as one more term when given. stage_logits: K tensors (R, C+1); mil_scores: (R, C) -> (R, C)."""
    terms = [F.softmax(logits, dim=1)[:, 1:] for logits in stage_logits]
    if mil_scores is not None:
        terms.append(mil_scores)
    if not terms:
        raise ValueError("average_stage_scores: no stage logits and no MIL scores to average")
    return torch.stack(terms).mean(dim=0)


def average_stage_boxes(
    stage_deltas: List[torch.Tensor],
    proposal_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
) -> torch.Tensor:
    """Mean over the stages of the per-class boxes decoded from each stage's deltas.

    stage_deltas: K >= 1 tensors (R, 4(C+1)), slice 0 = background (dropped);
    proposal_boxes: (R, 4) XYXY -> (R, 4C).
    """
    boxes = [box2box_transform.apply_deltas(d[:, 4:], proposal_boxes) for d in stage_deltas]
    return torch.stack(boxes).mean(dim=0)


def average_stage_deltas(
    stage_deltas: List[torch.Tensor],
    proposal_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
) -> torch.Tensor:
    """The per-class boxes decoded once from the mean over the stages of their deltas
    (wetectron's test). Shapes as :func:`average_stage_boxes`."""
    mean_deltas = torch.stack(stage_deltas).mean(dim=0)
    return box2box_transform.apply_deltas(mean_deltas[:, 4:], proposal_boxes)


def _split(tensor: Optional[torch.Tensor], sizes: List[int]):
    """``tensor.split(sizes)``, or one None per part when there is no tensor."""
    return [None] * len(sizes) if tensor is None else tensor.split(sizes)


@ROI_HEADS_REGISTRY.register()
class RefinementROIHeads(WSODROIHeads):
    """:class:`WSODROIHeads` (box head + MIL head) followed by K refinement stages.

    Losses: the MIL head's, then per stage k = 1..K "loss_refine{k}" and, with regression,
    "loss_refine{k}_box_reg"; each term's unweighted value is logged as "raw/<name>". Training
    takes one view (:meth:`losses`) or several views of the same images
    (:meth:`multi_view_losses`, used by CASDRCNN).
    """

    @configurable
    def __init__(
        self,
        *,
        stages: nn.ModuleList,
        supervision: RoISupervision,
        first_stage_loss_weight: float,
        box2box_transform: Box2BoxTransform,
        box_reg_loss_weight: float,
        smooth_l1_beta: float,
        test_include_mil: bool,
        test_box_average: str = "boxes",
        frcnn_branch: Optional[FastRCNNBranch] = None,
        frcnn_fg_iou: float = 0.5,
        frcnn_bg_iou: float = 0.1,
        frcnn_tie_to_first: bool = False,
        loss_weight: float = 1.0,
        view_labels: str = "mean",
        test_stages: Sequence[int] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if view_labels not in ("mean", "per_view"):
            raise ValueError(
                f"MODEL.REFINEMENT.VIEW_LABELS must be 'mean' or 'per_view', got {view_labels!r}"
            )
        if any(not 1 <= k <= len(stages) for k in test_stages):
            raise ValueError(
                f"MODEL.REFINEMENT.TEST_STAGES: stages are numbered 1..{len(stages)}, got "
                f"{list(test_stages)}"
            )
        if test_box_average not in ("boxes", "deltas"):
            raise ValueError(
                "MODEL.REFINEMENT.TEST_BOX_AVERAGE must be 'boxes' or 'deltas', got "
                f"{test_box_average!r}"
            )
        if len(stages) == 0 and not test_include_mil:
            raise ValueError(
                "RefinementROIHeads: with MODEL.REFINEMENT.NUM_STAGES = 0 the test scores can only "
                "come from the MIL head; set MODEL.REFINEMENT.TEST_INCLUDE_MIL True"
            )
        if not self.mil_head.nonnegative_roi_scores:
            # Pseudo-GT weights come from these scores; a negative one flips its loss's sign.
            raise ValueError(
                f"RefinementROIHeads: the {type(self.mil_head).__name__} MIL head's RoI scores may "
                "be negative; with refinement stages set MODEL.MIL.CONTEXT_ROI_SCORES 'softmax'"
            )
        self.stages = stages
        self.supervision = supervision
        self.loss_weight = loss_weight
        self.view_labels = view_labels
        # 0-based indices of the stages scored at test (all by default).
        self.test_stages = [k - 1 for k in test_stages] or list(range(len(stages)))
        self.first_stage_loss_weight = first_stage_loss_weight
        self.box2box_transform = box2box_transform
        self.box_reg_loss_weight = box_reg_loss_weight
        self.smooth_l1_beta = smooth_l1_beta
        self.test_include_mil = test_include_mil
        self.test_box_average = test_box_average
        self.frcnn_branch = frcnn_branch
        self.frcnn_fg_iou = frcnn_fg_iou
        self.frcnn_bg_iou = frcnn_bg_iou
        self.frcnn_tie_to_first = frcnn_tie_to_first

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        r = cfg.MODEL.REFINEMENT
        if r.NUM_STAGES < 0:
            raise ValueError(f"MODEL.REFINEMENT.NUM_STAGES must be >= 0, got {r.NUM_STAGES}")
        fc_dim = ret["box_head"].output_shape.channels
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        box2box_transform = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
        ret.update(
            stages=nn.ModuleList(
                RefinementStage(fc_dim, num_classes, box_reg=r.BOX_REG, cls_init_std=r.CLS_INIT_STD)
                for _ in range(r.NUM_STAGES)
            ),
            supervision=RoISupervision.from_config(
                cfg, build_pseudo_labeler(cfg), box2box_transform
            ),
            first_stage_loss_weight=r.FIRST_STAGE_LOSS_WEIGHT,
            box2box_transform=box2box_transform,
            box_reg_loss_weight=r.BOX_REG_LOSS_WEIGHT,
            smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            test_include_mil=r.TEST_INCLUDE_MIL,
            test_box_average=r.TEST_BOX_AVERAGE,
            # Spelled out in full: tests/test_config_keys.py finds each key's reader by its path.
            frcnn_fg_iou=cfg.MODEL.REFINEMENT.FG_IOU,
            frcnn_bg_iou=cfg.MODEL.REFINEMENT.BG_IOU,
            frcnn_tie_to_first=tie_to_first(cfg),
            loss_weight=cfg.MODEL.REFINEMENT.LOSS_WEIGHT,
            view_labels=r.VIEW_LABELS,
            test_stages=r.TEST_STAGES,
        )
        if r.FRCNN_BRANCH:
            ret["frcnn_branch"] = FastRCNNBranch(fc_dim, num_classes, cls_init_std=r.CLS_INIT_STD)
        return ret

    def losses(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        image_labels: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """image_labels: (B, C) multi-hot -> dict of losses."""
        return self.multi_view_losses([features], [proposals], proposals, image_labels, [False])

    def multi_view_losses(
        self,
        view_features: List[Dict[str, torch.Tensor]],
        view_proposals: List[List[Instances]],
        label_proposals: List[Instances],
        image_labels: torch.Tensor,
        flipped: List[bool],
    ) -> Dict[str, torch.Tensor]:
        """Losses of V views of the same B images (one view: :meth:`losses`).

        view_features[v]: backbone outputs of view v; view_proposals[v][i]: image i's proposals in
        view v, the same RoIs in the same order in every view; label_proposals[i]: those RoIs in
        one common frame (any scale, unflipped), where the pseudo labels are built;
        image_labels: (B, C); flipped[v]: whether view v is mirrored horizontally.
        """
        views = [self.mil_outputs(f, p) for f, p in zip(view_features, view_proposals)]
        return self.losses_from_views(views, label_proposals, image_labels, flipped)

    def losses_from_views(
        self,
        views: List[MILOutputs],
        label_proposals: List[Instances],
        image_labels: torch.Tensor,
        flipped: List[bool],
    ) -> Dict[str, torch.Tensor]:
        """MIL and refinement losses, each the mean over views (and images).

        Stage k's pseudo labels come from stage k-1's scores (stage 1: the MIL RoI scores): with
        ``view_labels`` "mean", from their mean over views, built once per image and shared by
        the views; with "per_view", each view from its own. What the RoIs learn from them is
        :class:`RoISupervision`'s (refinement_targets.py).
        """
        losses = {}
        mil = torch.stack([self.mil_head.loss(v.image_scores, image_labels) for v in views])
        put_loss(losses, "loss_mil", mil.mean(), self.mil_head.loss_weight)
        num_rois = [len(p) for p in label_proposals]
        boxes = [p.proposal_boxes.tensor for p in label_proposals]
        x_sign = [-1.0 if f else 1.0 for f in flipped]
        scores = [v.roi_scores.detach() for v in views]
        for k, stage in enumerate(self.stages, start=1):
            targets = [
                self.supervision.for_view(t)
                for t in self.view_targets(stage, boxes, scores, image_labels)
            ]
            inputs = self.stage_inputs(stage, views, targets)
            cls_terms, box_terms, scores = [], [], []
            for view, x, view_targets, sign in zip(views, inputs, targets, x_sign):
                logits, deltas = stage(x)
                per_image = zip(logits.split(num_rois), _split(deltas, num_rois), view_targets)
                for lg, d, t in per_image:
                    cls_loss, box_loss = self.supervision.losses(lg, d, t, sign)
                    cls_terms.append(cls_loss)
                    box_terms += [box_loss] if box_loss is not None else []
                scores.append(self.chained_scores(stage, view, x, logits))
            weight = self.loss_weight * (self.first_stage_loss_weight if k == 1 else 1.0)
            put_loss(losses, f"loss_refine{k}", torch.stack(cls_terms).mean(), weight)
            if box_terms:
                put_loss(
                    losses,
                    f"loss_refine{k}_box_reg",
                    torch.stack(box_terms).mean(),
                    weight * self.box_reg_loss_weight,
                )
        if self.frcnn_branch is not None:
            supervision = torch.stack(scores).mean(dim=0)
            self.frcnn_branch_losses(losses, views, boxes, supervision, image_labels, x_sign)
        return losses

    def view_targets(self, stage, boxes, scores, image_labels) -> List[List[ImageTargets]]:
        """Per view, per image: the stage's targets (before sampling) from the previous stage's
        per-view scores (R, C) (see :meth:`losses_from_views`)."""
        num_rois = [len(b) for b in boxes]
        box_reg = stage.bbox_pred is not None

        def build(view_scores):
            return [
                self.supervision.image_targets(b, s, y, box_reg)
                for b, s, y in zip(boxes, view_scores.split(num_rois), image_labels)
            ]

        if self.view_labels == "per_view":
            return [build(s) for s in scores]
        return [build(torch.stack(scores).mean(dim=0))] * len(scores)

    def chained_scores(self, stage, view: MILOutputs, x: torch.Tensor, logits: torch.Tensor):
        """(R, C) detached scores of ``stage`` that supervise the next one: those of the features
        it trained on, ``x`` (subclasses may choose the view's unaltered ones)."""
        return F.softmax(logits, dim=1)[:, 1:].detach()

    def frcnn_branch_losses(self, losses, views, boxes, supervision, image_labels, x_sign):
        """Adds "loss_frcnn_cls" and "loss_frcnn_box_reg": the Fast R-CNN branch trained on OICR
        pseudo labels from ``supervision`` (R, C), the last stage's detached scores; each the
        mean over views and images. boxes: per image (R_i, 4), where the labels are built."""
        num_rois = [len(b) for b in boxes]
        pseudo = [
            oicr_pseudo_labels(
                b, s, y, self.frcnn_fg_iou, self.frcnn_bg_iou, self.frcnn_tie_to_first
            )
            for b, s, y in zip(boxes, supervision.split(num_rois), image_labels)
        ]
        targets = [regression_targets(b, p, self.box2box_transform) for b, p in zip(boxes, pseudo)]
        cls_terms, box_terms = [], []
        for view, sign in zip(views, x_sign):
            logits, deltas = self.frcnn_branch(view.x)
            flip = deltas.new_tensor([sign, 1.0, 1.0, 1.0])
            per_image = zip(logits.split(num_rois), deltas.split(num_rois), pseudo, targets)
            for lg, d, pl, t in per_image:
                cls_loss, box_loss = frcnn_branch_losses(lg, d, pl, t * flip, self.smooth_l1_beta)
                cls_terms.append(cls_loss)
                box_terms.append(box_loss)
        put_loss(losses, "loss_frcnn_cls", torch.stack(cls_terms).mean(), 1.0)
        put_loss(losses, "loss_frcnn_box_reg", torch.stack(box_terms).mean(), 1.0)

    def stage_inputs(
        self, stage: RefinementStage, views: List[MILOutputs], targets: List[List[ImageTargets]]
    ) -> List[torch.Tensor]:
        """Per view, the features (R, fc_dim) that ``stage`` classifies in training: the box-head
        features; subclasses may alter them (CASD's Inverted Attention)."""
        return [v.x for v in views]

    def predict(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Per-proposal outputs before NMS, in the coordinates of ``proposals``.

        Returns boxes: per image (R, 4), or (R, 4C) with regression; scores: per image (R, C);
        image_scores: (B, C) of the MIL head.
        """
        mil = self.mil_outputs(features, proposals)
        num_rois = [len(p) for p in proposals]
        outputs = [self.stages[k](mil.x) for k in self.test_stages]
        scores = average_stage_scores(
            [logits for logits, _ in outputs], mil.roi_scores if self.test_include_mil else None
        )
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        deltas = [d for _, d in outputs if d is not None]
        average = average_stage_deltas if self.test_box_average == "deltas" else average_stage_boxes
        boxes = proposal_boxes
        if deltas:
            boxes = average(deltas, proposal_boxes, self.box2box_transform)
        if self.frcnn_branch is not None:
            branch_logits, branch_deltas = self.frcnn_branch(mil.x)
            scores = combine_with_branch(scores, branch_logits)
            boxes = self.box2box_transform.apply_deltas(branch_deltas[:, 4:], proposal_boxes)
        image_scores = self.mil_head.class_image_scores(mil.image_scores)
        return list(boxes.split(num_rois)), list(scores.split(num_rois)), image_scores
