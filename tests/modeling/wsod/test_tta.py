"""Test-time augmentation over precomputed proposals: mirror equivariance, identity pass, box
mapping, and the trainer's TTA evaluation on the tiny dataset."""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from wsod_d2 import add_wsod_config
from wsod_d2.engine import WSODTrainer
from wsod_d2.modeling.wsod.tta import WSODRCNNWithTTA, boxes_to_original
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG, tiny_cfg

HEIGHT, WIDTH = 80, 120
PROPOSALS = [
    [4.0, 6.0, 50.0, 40.0],
    [30.0, 10.0, 110.0, 75.0],
    [60.0, 30.0, 100.0, 70.0],
    [10.0, 40.0, 45.0, 78.0],
    [0.0, 0.0, 120.0, 80.0],
    [70.5, 5.25, 118.0, 33.0],
]


def tta_model(*opts):
    """A randomly initialised tiny OICR+Reg model whose regression really moves the boxes."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, TINY_CONFIG))
    # fmt: off
    cfg.merge_from_list(
        [
            "MODEL.DEVICE", "cpu",
            "MODEL.ROI_HEADS.NAME", "RefinementROIHeads",
            "MODEL.ROI_HEADS.NUM_CLASSES", 3,
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
            "MODEL.REFINEMENT.BOX_REG", True,
            "TEST.AUG.MIN_SIZES", (64, 96),
            "TEST.AUG.MAX_SIZE", 400,
            "TEST.AUG.FLIP", True,
            *opts,
        ]
    )
    # fmt: on
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for stage in model.roi_heads.stages:
            stage.bbox_pred.weight.normal_(std=0.05)
    return cfg, model


def make_input(image, boxes, height=HEIGHT, width=WIDTH):
    proposals = Instances(tuple(image.shape[1:]))
    proposals.proposal_boxes = Boxes(boxes)
    proposals.objectness_logits = torch.zeros(len(boxes))
    return {"image": image, "proposals": proposals, "height": height, "width": width}


def sorted_detections(instances):
    order = sorted(
        range(len(instances)),
        key=lambda i: (int(instances.pred_classes[i]), -float(instances.scores[i])),
    )
    return (
        instances.pred_boxes.tensor[order],
        instances.scores[order],
        instances.pred_classes[order],
    )


def test_boxes_to_original_by_hand():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0, 0.0, 0.0, 50.0, 50.0]])
    # Pass at half size (50, 100) of (100, 200): scale by 2, then mirror in width 200.
    flipped = boxes_to_original(boxes, (50, 100), (100, 200), flipped=True)
    expected = torch.tensor([[140.0, 10.0, 180.0, 50.0, 100.0, 0.0, 200.0, 100.0]])
    assert torch.allclose(flipped, expected)
    plain = boxes_to_original(boxes, (50, 100), (100, 200), flipped=False)
    assert torch.allclose(plain, boxes * 2)


def test_tta_on_a_mirrored_image_gives_mirrored_boxes():
    cfg, model = tta_model()
    tta = WSODRCNNWithTTA(cfg, model)
    assert len(list(tta.passes(WIDTH))) == 4
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8)
    boxes = torch.tensor(PROPOSALS)
    mirrored_boxes = torch.stack(
        [WIDTH - boxes[:, 2], boxes[:, 1], WIDTH - boxes[:, 0], boxes[:, 3]], dim=1
    )
    out = tta([make_input(image, boxes)])[0]
    out_mirror = tta([make_input(image.flip(-1), mirrored_boxes)])[0]
    boxes_a, scores_a, classes_a = sorted_detections(out["instances"])
    boxes_b, scores_b, classes_b = sorted_detections(out_mirror["instances"])
    assert len(boxes_a) > 3 and out["instances"].image_size == (HEIGHT, WIDTH)
    assert torch.equal(classes_a, classes_b)
    assert torch.allclose(scores_a, scores_b, rtol=1e-5, atol=1e-7)
    assert torch.allclose(out["image_scores"], out_mirror["image_scores"], rtol=1e-5)
    unmirrored = torch.stack(
        [WIDTH - boxes_b[:, 2], boxes_b[:, 1], WIDTH - boxes_b[:, 0], boxes_b[:, 3]], dim=1
    )
    assert torch.allclose(boxes_a, unmirrored, atol=1e-3)
    # The regression moved most boxes off the proposals (the whole-image one is clipped back), so
    # the mapping of regressed boxes was exercised, not only that of the proposals.
    moved = (boxes_a[:, None] - boxes[None]).abs().sum(-1).min(1).values > 0.01
    assert moved.float().mean() > 0.75


def test_single_identity_pass_equals_plain_inference():
    cfg, model = tta_model("TEST.AUG.MIN_SIZES", (HEIGHT,), "TEST.AUG.FLIP", False)
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8)
    inp = make_input(image, torch.tensor(PROPOSALS))
    with torch.no_grad():
        plain = model([inp])[0]
    tta = WSODRCNNWithTTA(cfg, model)([inp])[0]
    assert len(plain["instances"]) == len(tta["instances"]) > 0
    assert torch.allclose(plain["instances"].pred_boxes.tensor, tta["instances"].pred_boxes.tensor)
    assert torch.allclose(plain["instances"].scores, tta["instances"].scores)
    assert torch.equal(plain["instances"].pred_classes, tta["instances"].pred_classes)
    assert torch.allclose(plain["image_scores"], tta["image_scores"])


def test_resized_inputs_are_mapped_back_to_the_original_size():
    cfg, model = tta_model()
    tta = WSODRCNNWithTTA(cfg, model)
    small = torch.randint(0, 256, (3, HEIGHT // 2, WIDTH // 2), dtype=torch.uint8)
    image, boxes, logits = tta.original_view(make_input(small, torch.tensor(PROPOSALS) / 2))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert torch.allclose(torch.as_tensor(boxes), torch.tensor(PROPOSALS))
    assert logits.shape == (len(PROPOSALS),)
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        tta([make_input(small, torch.tensor(PROPOSALS) / 2)])


def test_trainer_evaluates_with_tta_after_training(tiny_voc, tmp_path):
    # fmt: off
    cfg = tiny_cfg(
        tiny_voc,
        tmp_path,
        "MODEL.ROI_HEADS.NAME", "RefinementROIHeads",
        "MODEL.REFINEMENT.BOX_REG", True,
        "SOLVER.MAX_ITER", 2,
        "TEST.AUG.ENABLED", True,
        "TEST.AUG.MIN_SIZES", (96, 128),
        "TEST.AUG.MAX_SIZE", 256,
        "TEST.EVALUATORS", ("voc", "corloc"),
    )
    # fmt: on
    trainer = WSODTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    latest = trainer.storage.latest()
    for name in cfg.DATASETS.TEST:
        ap50, _ = latest[f"{name}_TTA/bbox/AP50"]
        corloc, _ = latest[f"{name}_TTA/corloc/CorLoc"]
        assert 0.0 <= ap50 <= 100.0 and 0.0 <= corloc <= 100.0
    with EventStorage():
        results = WSODTrainer.test_with_TTA(cfg, trainer.model)
    assert set(results) == {f"{name}_TTA" for name in cfg.DATASETS.TEST}
