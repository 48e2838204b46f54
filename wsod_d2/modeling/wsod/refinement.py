"""Online instance refinement ROI heads: a MIL head followed by K refinement stages.

OICR (Tang et al. CVPR 2017), PCL (Tang et al. TPAMI 2018), MIST (Ren et al. CVPR 2020); each
stage optionally with a class-specific box regression layer (+Reg, as in wetectron).

Stage k in 1..K is Linear(fc7, C+1) (column 0 = background), supervised by pseudo labels built
from stage k-1's scores (stage 1 from the MIL head's RoI scores), all detached. The labeller
(OICR, PCL or MIST) comes from ``PSEUDO_LABELER_REGISTRY`` (pseudo_labelers.py). Losses of one
stage are averaged over the images of the batch; stage 1's are multiplied by
``first_stage_loss_weight``.

Test: scores = mean over the stages of softmax(logits)[:, 1:] (and the MIL RoI scores when
``test_include_mil``); boxes = the proposals, or, with regression, the mean over the stages of the
per-class boxes decoded from each stage's deltas (or the boxes decoded from the mean of the
stages' deltas, ``test_box_average="deltas"``, as wetectron); then class-wise NMS and top-k.
With ``frcnn_branch`` (pcl.pytorch's WITH_FRCNN, frcnn_branch.py) a Fast R-CNN branch trained on
the last stage's OICR pseudo labels is averaged 1:1 with the stage score and gives the boxes.
"""
from typing import Dict, List, Optional

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
from wsod_d2.modeling.wsod.pseudo_labels import PseudoLabels, oicr_pseudo_labels
from wsod_d2.modeling.wsod.refinement_losses import regression_targets, weighted_smooth_l1_box_loss
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
        pseudo_labeler,
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
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        self.pseudo_labeler = pseudo_labeler
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
        ret.update(
            stages=nn.ModuleList(
                RefinementStage(
                    fc_dim, num_classes, box_reg=r.BOX_REG, cls_init_std=r.CLS_INIT_STD
                )
                for _ in range(r.NUM_STAGES)
            ),
            pseudo_labeler=build_pseudo_labeler(cfg),
            first_stage_loss_weight=r.FIRST_STAGE_LOSS_WEIGHT,
            box2box_transform=Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
            box_reg_loss_weight=r.BOX_REG_LOSS_WEIGHT,
            smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            test_include_mil=r.TEST_INCLUDE_MIL,
            test_box_average=r.TEST_BOX_AVERAGE,
            frcnn_fg_iou=r.FG_IOU,
            frcnn_bg_iou=r.BG_IOU,
            frcnn_tie_to_first=tie_to_first(cfg),
        )
        if r.FRCNN_BRANCH:
            ret["frcnn_branch"] = FastRCNNBranch(
                fc_dim, num_classes, cls_init_std=r.CLS_INIT_STD
            )
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

        Stage k's pseudo labels come from the mean over views of stage k-1's scores (stage 1: of
        the MIL RoI scores), built once per image and shared by the views. Regression targets
        are deltas, which scaling leaves unchanged and a horizontal flip negates in x.
        """
        losses = {}
        mil = torch.stack([self.mil_head.loss(v.image_scores, image_labels) for v in views])
        put_loss(losses, "loss_mil", mil.mean(), self.mil_head.loss_weight)
        num_rois = [len(p) for p in label_proposals]
        boxes = [p.proposal_boxes.tensor for p in label_proposals]
        x_sign = [-1.0 if f else 1.0 for f in flipped]
        supervision = torch.stack([v.roi_scores for v in views]).mean(dim=0).detach()
        for k, stage in enumerate(self.stages, start=1):
            pseudo = [
                self.pseudo_labeler(b, s, y)
                for b, s, y in zip(boxes, supervision.split(num_rois), image_labels)
            ]
            targets = None
            if stage.bbox_pred is not None:
                targets = [
                    regression_targets(b, p, self.box2box_transform) for b, p in zip(boxes, pseudo)
                ]
            cls_terms, box_terms, view_probs = [], [], []
            for view, sign in zip(views, x_sign):
                logits, deltas = stage(self.stage_inputs(stage, view, pseudo))
                probs = F.softmax(logits, dim=1)
                view_probs.append(probs)
                cls_terms += [
                    self.pseudo_labeler.loss(p, pl) for p, pl in zip(probs.split(num_rois), pseudo)
                ]
                if deltas is None:
                    continue
                flip = deltas.new_tensor([sign, 1.0, 1.0, 1.0])
                box_terms += [
                    weighted_smooth_l1_box_loss(
                        d, pl.labels, t * flip, pl.weights, beta=self.smooth_l1_beta
                    )
                    for d, pl, t in zip(deltas.split(num_rois), pseudo, targets)
                ]
            weight = self.first_stage_loss_weight if k == 1 else 1.0
            put_loss(losses, f"loss_refine{k}", torch.stack(cls_terms).mean(), weight)
            if box_terms:
                put_loss(
                    losses,
                    f"loss_refine{k}_box_reg",
                    torch.stack(box_terms).mean(),
                    weight * self.box_reg_loss_weight,
                )
            supervision = torch.stack(view_probs).mean(dim=0)[:, 1:].detach()
        if self.frcnn_branch is not None:
            self.frcnn_branch_losses(losses, views, boxes, supervision, image_labels, x_sign)
        return losses

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
        self, stage: RefinementStage, view: MILOutputs, pseudo: List[PseudoLabels]
    ) -> torch.Tensor:
        """Features (R, fc_dim) that ``stage`` classifies in training: the box-head features;
        subclasses may alter them (CASD's Inverted Attention)."""
        return view.x

    def predict(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Per-proposal outputs before NMS, in the coordinates of ``proposals``.

        Returns boxes: per image (R, 4), or (R, 4C) with regression; scores: per image (R, C);
        image_scores: (B, C) of the MIL head.
        """
        mil = self.mil_outputs(features, proposals)
        num_rois = [len(p) for p in proposals]
        outputs = [stage(mil.x) for stage in self.stages]
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
