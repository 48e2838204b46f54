"""TEST.CASD_RELEASE_GT_LEAK through the trainer: the evaluation (plain and TTA with proposal
jitter) scores the leaked GT boxes and warns after its results; training and the pseudo-GT
export refuse the option."""
import os

import pytest
import torch
from detectron2.modeling import build_model

from wsod_d2.config import get_wsod_cfg
from wsod_d2.engine import WSODTrainer
from wsod_d2.engine.pseudo_gt import export_pseudo_gt
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG

KEY = "TEST.CASD_RELEASE_GT_LEAK"
# gt_leak_record's leaked GT boxes (conftest.py), original image.
LEAKED = torch.tensor([[60.0, 20.0, 61.0, 21.0], [5.0, 25.0, 25.0, 45.0]])


def leak_cfg(gt_leak_dataset, output_dir, *opts):
    name, proposal_file = gt_leak_dataset
    # fmt: off
    return get_wsod_cfg(os.path.join(REPO_ROOT, TINY_CONFIG), [
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "DATASETS.TRAIN", (name,), "DATASETS.PROPOSAL_FILES_TRAIN", (proposal_file,),
        "DATASETS.TEST", (name,), "DATASETS.PROPOSAL_FILES_TEST", (proposal_file,),
        "DATASETS.PROPOSAL_FILES_ACCEPTED", (proposal_file,), "DATALOADER.NUM_WORKERS", 0,
        "INPUT.MIN_SIZE_TEST", 100, "TEST.EVALUATORS", ("corloc",), "OUTPUT_DIR", output_dir,
        KEY, True, *opts,
    ], freeze=False)
    # fmt: on


def leak_warnings(caplog):
    return [r.getMessage() for r in caplog.records if KEY in r.getMessage()]


def test_evaluation_with_tta_and_jitter_scores_leaked_boxes_and_warns(
    gt_leak_dataset, tmp_path, wsod_d2_caplog
):
    # fmt: off
    cfg = leak_cfg(
        gt_leak_dataset, str(tmp_path),
        "TEST.AUG.MIN_SIZES", (50, 75), "TEST.AUG.MAX_SIZE", 400, "TEST.AUG.FLIP", False,
        "TEST.AUG.PROPOSAL_JITTER.ENABLED", True,
    )
    # fmt: on
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    seen = []
    predict = model.roi_heads.predict

    def recording_predict(features, proposals):
        seen.append((proposals[0].proposal_boxes.tensor.clone(), proposals[0].image_size))
        return predict(features, proposals)

    model.roi_heads.predict = recording_predict
    results = WSODTrainer.test(cfg, model)
    assert "CorLoc" in results["corloc"]  # one test set: detectron2 returns its results alone
    messages = leak_warnings(wsod_d2_caplog)
    assert len(messages) == 2
    assert "building the test loader" in messages[0]
    assert "the evaluation results above" in messages[1]
    # Plain inference: the GT boxes, resized (x2), in front of the proposals, unjittered.
    ((boxes, _),) = seen
    assert torch.equal(boxes[:2], LEAKED * 2)

    seen.clear()
    results = WSODTrainer.test_with_TTA(cfg, model)
    assert set(results) == {cfg.DATASETS.TEST[0] + "_TTA"}
    messages = leak_warnings(wsod_d2_caplog)[2:]
    assert "the TTA evaluation results above" in messages[-1]
    # TTA: each pass scores its own jitter of the leaked GT boxes, in the pass's frame.
    assert len(seen) == 2
    for boxes, (h, w) in seen:
        gt = LEAKED * (h / 50)
        size, jittered = gt[:, 2:] - gt[:, :2], boxes[:2, 2:] - boxes[:2, :2]
        assert not torch.allclose(boxes[:2], gt)
        assert ((jittered / size) >= 0.95 - 1e-4).all() and ((jittered / size) <= 1.15 + 1e-4).all()
        shift = ((boxes[:2, :2] + boxes[:2, 2:]) - (gt[:, :2] + gt[:, 2:])) / 2 / size
        assert shift.abs().max() <= 0.05 + 1e-4
    assert not torch.allclose(seen[0][0][:2] / seen[0][1][0], seen[1][0][:2] / seen[1][1][0])


def test_training_and_pseudo_gt_export_refuse_it(gt_leak_dataset, tmp_path):
    cfg = leak_cfg(gt_leak_dataset, str(tmp_path))
    with pytest.raises(ValueError, match=rf"{KEY} is True while building the training loader"):
        WSODTrainer(cfg)
    with pytest.raises(ValueError, match=rf"{KEY} is True while exporting pseudo ground truth"):
        export_pseudo_gt(cfg, None, str(tmp_path / "pseudo_gt.json"))
