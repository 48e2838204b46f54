"""The released pseudo-label functions of pcl.pytorch (OICR, PCL) and wetectron (MIST), loaded by
file path from a checkout the user names, to be timed next to ours on the same inputs. They are
never a dependency of wsod_d2 or its tests.

What is loaded as released: pcl.pytorch's ``lib/model/pcl/pcl.py`` (its ``OICR`` and ``PCL``;
master has both, the 0.4.0 branch ``PCL`` only) and wetectron's ``mist_layer``
(``wetectron/modeling/roi_heads/weak_head/pseudo_label_generator.py``) with the pure-Python files
it imports (config defaults, BoxList, boxlist_ops, BoxCoder). What stands in, only while loading:

- pcl.pytorch's compiled ``utils.cython_bbox.bbox_overlaps`` (behind ``utils.boxes``): the same
  IoU with its "+1" box sizes, in numpy; its ``core.config.cfg``: the few keys the functions read,
  set from our config (``MODEL.WITH_FRCNN`` off: labels and weights only, as ours return);
  scikit-learn's ``KMeans``, when scikit-learn is missing: an error on use (PCL's row is skipped);
- wetectron's compiled ``wetectron.layers.nms``, which ``mist_layer`` never calls: an error on use.
"""
import contextlib
import importlib.util
import os
import sys
import types
from typing import Callable, Dict, Iterator, Sequence

import numpy as np
import torch

from wsod_d2.evaluation.wsol.boxes import box_iou_inclusive

__all__ = ["AUTHORS_CODE", "REPOSITORIES", "authors_labeller"]

# Which checkout (--authors-code key) provides each labeller, and the repositories' names.
AUTHORS_CODE = {"OICR": "pcl", "PCL": "pcl", "MIST": "wetectron"}
REPOSITORIES = {"pcl": "pcl.pytorch", "wetectron": "wetectron"}
_PCL_FILE = ("lib", "model", "pcl", "pcl.py")
# wetectron's files mist_layer needs, in import order, by module name.
_WETECTRON_FILES = {
    "wetectron.config.defaults": ("config", "defaults.py"),
    "wetectron.structures.bounding_box": ("structures", "bounding_box.py"),
    "wetectron.structures.boxlist_ops": ("structures", "boxlist_ops.py"),
    "wetectron.modeling.box_coder": ("modeling", "box_coder.py"),
    "wetectron.modeling.roi_heads.weak_head.pseudo_label_generator": (
        "modeling", "roi_heads", "weak_head", "pseudo_label_generator.py",
    ),
}  # fmt: skip


@contextlib.contextmanager
def _modules(entries: Dict[str, types.ModuleType], loaded: Sequence[str] = ()) -> Iterator[None]:
    """``entries`` in sys.modules inside the block (for the loaded files' absolute imports); after
    it, whatever was there before under their names and the ``loaded`` files' names."""
    saved = {name: sys.modules.get(name) for name in [*entries, *loaded]}
    sys.modules.update(entries)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodules can be imported below it
    module.__dict__.update(attrs)
    return module


def _load(name: str, path: str) -> types.ModuleType:
    """Execute the file ``path`` as module ``name`` (which stays in sys.modules while loading)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is the authors' checkout path right?")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _unavailable(what: str):
    def call(*args, **kwargs):
        raise RuntimeError(f"{what} is a stand-in here (see wsod_d2/benchmarks/authors_code.py)")

    return call


def _bbox_overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """pcl.pytorch's compiled ``bbox_overlaps``: IoU with "+1" sizes, in float64 as its Cython."""
    return box_iou_inclusive(boxes.astype(np.float64), query.astype(np.float64))


def _pcl_pytorch(path: str, cfg) -> types.ModuleType:
    r = cfg.MODEL.REFINEMENT
    config = types.SimpleNamespace(
        TRAIN=types.SimpleNamespace(
            FG_THRESH=r.FG_IOU,
            BG_THRESH=r.BG_IOU,
            GRAPH_IOU_THRESHOLD=r.PCL_GRAPH_IOU,
            MAX_PC_NUM=r.PCL_MAX_CLUSTERS,
            NUM_KMEANS_CLUSTER=r.PCL_KMEANS_K,
        ),
        MODEL=types.SimpleNamespace(WITH_FRCNN=False),
        RNG_SEED=cfg.SEED,
    )
    stand_ins = {
        "utils": _module("utils"),
        "utils.boxes": _module("utils.boxes", bbox_overlaps=_bbox_overlaps),
        "utils.blob": _module("utils.blob"),
        "utils.net": _module("utils.net"),
        "core": _module("core"),
        "core.config": _module("core.config", cfg=config),
    }
    if importlib.util.find_spec("sklearn") is None:
        kmeans = _unavailable("scikit-learn's KMeans (not installed)")
        stand_ins["sklearn"] = _module("sklearn")
        stand_ins["sklearn.cluster"] = _module("sklearn.cluster", KMeans=kmeans)
    with _modules(stand_ins, ["pcl_pytorch_pcl"]):
        return _load("pcl_pytorch_pcl", path)


def _wetectron(root: str, cfg) -> types.ModuleType:
    names = ["wetectron", "wetectron.config", "wetectron.structures", "wetectron.modeling"]
    names += ["wetectron.modeling.roi_heads", "wetectron.modeling.roi_heads.weak_head"]
    stand_ins = {name: _module(name) for name in names}
    stand_ins["wetectron.layers"] = _module("wetectron.layers", nms=_unavailable("wetectron nms"))
    with _modules(stand_ins, list(_WETECTRON_FILES)):
        for name, parts in _WETECTRON_FILES.items():
            module = _load(name, os.path.join(root, "wetectron", *parts))
            if name == "wetectron.config.defaults":
                module._C.MODEL.ROI_HEADS.FG_IOU_THRESHOLD = cfg.MODEL.REFINEMENT.FG_IOU
                # what wetectron/config/__init__.py exports, read by the files loaded next
                stand_ins["wetectron.config"].cfg = module._C
    return module  # pseudo_label_generator, the last


def authors_labeller(name: str, checkout: str, cfg, device: torch.device) -> Callable:
    """
    The released labeller ``name`` ("OICR", "PCL", "MIST") from ``checkout`` (pcl.pytorch for
    OICR / PCL, wetectron for MIST) with the settings of ``cfg`` (a wsod_d2 config), as a callable
    ``prepare(boxes (R, 4), scores (R, C), image_labels (C,))`` that converts our inputs to the
    authors' formats (their boxes and labels are numpy / on the device before labelling starts)
    and returns ``run()``, the timed call, whose result is the (R,) labels on ``device``.

    Raises:
        FileNotFoundError: ``checkout`` lacks the file; AttributeError: the file lacks the function.
    """
    if AUTHORS_CODE[name] == "pcl":
        function = getattr(_pcl_pytorch(os.path.join(checkout, *_PCL_FILE), cfg), name)

        def prepare(boxes, scores, image_labels):
            numpy_boxes = boxes.cpu().numpy()
            numpy_labels = image_labels.cpu().numpy()[None]
            # the next stage's probabilities (0.4.0's PCL reads them): background column first
            scores_new = torch.cat([scores.new_zeros(len(scores), 1), scores], dim=1)

            def run():
                out = function(numpy_boxes, scores, numpy_labels, scores_new)
                # back on the device for the loss, as their training step does (ours stay there)
                torch.as_tensor(out["cls_loss_weights"][0], device=device)
                return torch.as_tensor(out["labels"][0], device=device)

            return run

        return prepare
    module = _wetectron(checkout, cfg)
    layer = module.mist_layer(
        cfg.MODEL.REFINEMENT.MIST_TOP_RATIO, cfg.MODEL.REFINEMENT.MIST_NMS_IOU
    )

    def prepare(boxes, scores, image_labels):
        # BoxList's image size is only compared between box lists here
        size = (float(boxes[:, 2].max()) + 1, float(boxes[:, 3].max()) + 1)
        proposals = module.BoxList(boxes, size, mode="xyxy")
        # wetectron's scores and labels carry the background first
        source = torch.cat([scores.new_zeros(len(scores), 1), scores], dim=1)
        labels = torch.cat([image_labels.new_zeros(1), image_labels])
        return lambda: layer(proposals, source, labels, device)[0]

    return prepare
