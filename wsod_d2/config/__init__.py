"""wsod_d2's config keys: ``add_wsod_config(cfg)`` = one ``add_*_config`` per config node, in
``common`` (both families), ``wsod`` (detectors) and ``wsol`` (classifiers)."""
from detectron2.config import get_cfg

from wsod_d2.config.common import (
    add_backbone_config,
    add_dataset_config,
    add_input_config,
    add_solver_config,
    add_test_config,
)
from wsod_d2.config.wsod import (
    add_box_head_config,
    add_casd_config,
    add_cdb_config,
    add_cdb_solver_config,
    add_mil_config,
    add_refinement_config,
    add_wsod_test_config,
)
from wsod_d2.config.wsol import (
    add_adl_config,
    add_cropcam_config,
    add_csra_config,
    add_scm_config,
    add_wsol_config,
)


def get_wsod_cfg(config_file=None, opts=(), freeze=True):
    """detectron2's defaults + wsod_d2's keys, then ``config_file`` and ``KEY VALUE`` ``opts``."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    return cfg


def add_wsod_config(cfg):
    """Add every wsod_d2 key to a detectron2 config, in place."""
    add_dataset_config(cfg)
    add_input_config(cfg)
    add_backbone_config(cfg)
    add_box_head_config(cfg)
    add_mil_config(cfg)
    add_refinement_config(cfg)
    add_cdb_config(cfg)
    add_casd_config(cfg)
    add_wsol_config(cfg)
    add_csra_config(cfg)
    add_adl_config(cfg)
    add_scm_config(cfg)
    add_cropcam_config(cfg)
    add_test_config(cfg)
    add_wsod_test_config(cfg)
    add_solver_config(cfg)
    add_cdb_solver_config(cfg)
