"""train_net's logic in the library: the trainer that fits the model, and the rules across the
config and the model checked when the trainer is built (before any data is read)."""
import os

import pytest

from wsod_d2.config import get_wsod_cfg
from wsod_d2.engine import SupervisedTrainer, WSODTrainer, WSOLTrainer
from wsod_d2.engine.defaults import build_trainer
from wsod_d2.testing import REPO_ROOT, TINY_CONFIG

CASD = ["MODEL.META_ARCHITECTURE", "CASDRCNN", "MODEL.ROI_HEADS.NAME", "CASDROIHeads"]
# Datasets that do not exist: a rule must fail before the loader would read them.
NO_DATA = ["DATASETS.TRAIN", ("no_such_dataset",), "DATASETS.PROPOSAL_FILES_TRAIN", ("none",)]


def cfg_of(path, *opts):
    return get_wsod_cfg(os.path.join(REPO_ROOT, path), ["MODEL.DEVICE", "cpu", *NO_DATA, *opts])


def test_trainer_follows_the_meta_architecture():
    assert build_trainer(cfg_of(TINY_CONFIG)) is WSODTrainer
    wsol = cfg_of("configs/Synthetic/wsol/cam_vgg_tiny.yaml")
    assert build_trainer(wsol) is WSOLTrainer
    retrain = cfg_of("configs/Synthetic/retrain/faster_rcnn_tiny.yaml")
    assert build_trainer(retrain) is SupervisedTrainer


@pytest.mark.parametrize(
    "opts, message",
    [
        (CASD, "CASDRCNN trains on several views .* INPUT.VIEWS.NUM_SCALES is 0: set it to >= 1"),
        (["INPUT.VIEWS.NUM_SCALES", 2], "WSODRCNN trains on one view .* set it to 0"),
    ],
)
def test_views_rule_fails_before_data(tmp_path, opts, message):
    cfg = cfg_of(TINY_CONFIG, "OUTPUT_DIR", str(tmp_path), *opts)
    with pytest.raises(ValueError, match=message):
        WSODTrainer(cfg)


def test_wsol_trainer_has_no_tta():
    cfg = cfg_of("configs/Synthetic/wsol/cam_vgg_tiny.yaml", "TEST.AUG.ENABLED", True)
    with pytest.raises(ValueError, match="TEST.AUG.ENABLED: test-time augmentation .*WSOLTrainer"):
        WSOLTrainer.test_with_TTA(cfg, None)
