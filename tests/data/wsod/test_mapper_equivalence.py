"""The training mappers give bit-for-bit what their straightforward form gave: every image
resized through detectron2's AugmentationList (flipped views resized again), every box moved by
detectron2's corner-wise ``apply_box`` and clipped by ``Boxes.clip``, duplicates found by
``np.unique(axis=0)``. That form is kept below as the reference; the mappers run it and their own
code from the same numpy seed over a sequence of images, so random draws must match too."""
import copy
import os

import numpy as np
import pytest
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances
from PIL import Image

from wsod_d2.config import get_wsod_cfg
from wsod_d2.data.common import read_image_checked
from wsod_d2.data.wsod.build import build_wsod_train_mapper
from wsod_d2.data.wsod.mapper import (
    AXIS_SEPARABLE_TRANSFORMS,
    WSODDatasetMapper,
    dedup_boxes,
    transform_boxes,
)
from wsod_d2.data.wsod.ssd_photometric import SSDPhotometricTransform
from wsod_d2.testing import REPO_ROOT

VOC = os.path.join(REPO_ROOT, "configs", "PascalVOC-Detection")
# (width, height): VOC's shapes, odd sizes, and a strip that MAX_SIZE clamps.
SIZES = [(500, 375), (375, 500), (123, 91), (640, 60), (75, 75)]
SEEDS = (0, 1, 2)


# ---- the reference: the mappers' straightforward form --------------------------------------


def reference_dedup(boxes, scale):
    if scale <= 0 or len(boxes) == 0:
        return np.arange(len(boxes))
    _, first = np.unique(np.round(boxes * scale).astype(np.int64), axis=0, return_index=True)
    return np.sort(first)


def reference_select(mapper, d):
    boxes = np.asarray(d["proposal_boxes"], dtype=np.float32).reshape(-1, 4)
    logits = np.asarray(d["proposal_objectness_logits"], dtype=np.float32)
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = np.nonzero((wh >= mapper.proposal_min_size).all(axis=1))[0]
    keep = keep[reference_dedup(boxes[keep], mapper.proposal_dedup_scale)]
    if mapper.proposal_topk is not None:
        keep = keep[np.argsort(-logits[keep], kind="stable")[: mapper.proposal_topk]]
    return boxes[keep], logits[keep]


def reference_view(image, boxes, logits, augmentations):
    aug_input = T.AugInput(image)
    transforms = augmentations(aug_input)
    image = aug_input.image
    h, w = image.shape[:2]
    tboxes = Boxes(torch.as_tensor(transforms.apply_box(boxes), dtype=torch.float32))
    tboxes.clip((h, w))
    proposals = Instances((h, w), proposal_boxes=tboxes, objectness_logits=torch.as_tensor(logits))
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))), proposals


def reference_single_view(mapper, d):
    d = copy.copy(d)
    image = read_image_checked(d, mapper.image_format)
    boxes, logits = reference_select(mapper, d)
    d["image"], d["proposals"] = reference_view(image, boxes, logits, mapper.augmentations)
    return mapper.finish(d)


def reference_multi_view(mapper, cfg, d):
    d = dict(d)
    aug_input = T.AugInput(read_image_checked(d, mapper.image_format))
    mapper.photometric(aug_input)
    image = aug_input.image
    boxes, logits = reference_select(mapper, d)
    if 0 < mapper.num_proposals < len(boxes):
        keep = np.sort(np.random.choice(len(boxes), mapper.num_proposals, replace=False))
        boxes, logits = boxes[keep], logits[keep]
    d["views"] = []
    for scale in np.random.choice(mapper.scales, mapper.num_scales, replace=False):
        for flipped in (False, True) if cfg.INPUT.VIEWS.FLIP else (False,):
            augs = [T.ResizeShortestEdge(int(scale), cfg.INPUT.MAX_SIZE_TRAIN)]
            augs += [T.RandomFlip(prob=1.0)] if flipped else []
            tensor, proposals = reference_view(image, boxes, logits, T.AugmentationList(augs))
            d["views"].append({"image": tensor, "proposals": proposals, "flipped": flipped})
    original = Instances(image.shape[:2])
    original.proposal_boxes = Boxes(torch.as_tensor(boxes))
    original.objectness_logits = torch.as_tensor(logits)
    d["proposals"] = original
    return mapper.finish(d)


# ---- comparison ----------------------------------------------------------------------------


def assert_identical(got, want, where="output"):
    """Same structure, dtypes, shapes and bytes (so -0.0 vs 0.0 or a NaN payload would show)."""
    assert type(got) is type(want), where
    if isinstance(got, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert got.contiguous().numpy().tobytes() == want.contiguous().numpy().tobytes(), where
    elif isinstance(got, np.ndarray):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), where
    elif isinstance(got, Instances):
        assert got.image_size == want.image_size, where
        assert_identical(got.get_fields(), want.get_fields(), where)
    elif isinstance(got, Boxes):
        assert_identical(got.tensor, want.tensor, where)
    elif isinstance(got, dict):
        assert list(got) == list(want), where
        for key in got:
            assert_identical(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(got, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_identical(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


# ---- data ----------------------------------------------------------------------------------


def random_proposals(rng, width, height, num):
    """Integer and fractional boxes, near-duplicates (for the de-duplication), boxes under the
    minimum size, boxes on the image border (for the clip after a flip), -0.0 and tied logits."""
    size = np.array([width, height] * 2, np.float64)
    xy = rng.uniform(0, 1, (num, 2)) * size[:2]
    wh = rng.uniform(0, 1, (num, 2)) * (size[:2] - xy)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    boxes[: num // 2] = np.floor(boxes[: num // 2])
    boxes[num // 2 : num // 2 + num // 8] = boxes[: num // 8] + rng.integers(0, 3, (num // 8, 4))
    boxes[-num // 8 :, 2:] = size[2:]
    boxes = np.minimum(boxes, size)
    boxes[num // 4 : num // 4 + 8, :2] = -0.0  # torch's clamp keeps the sign, numpy's does not
    logits = rng.integers(0, num // 4, num).astype(np.float32)
    return boxes.astype(np.float32), logits


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    directory = tmp_path_factory.mktemp("equivalence")
    rng = np.random.default_rng(0)
    out = []
    for i, (width, height) in enumerate(SIZES):
        path = str(directory / f"{i}.jpg")
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        boxes, logits = random_proposals(rng, width, height, 400)
        out.append(
            {
                "file_name": path,
                "image_id": str(i),
                "height": height,
                "width": width,
                "image_labels": [i % 3, 5],
                "proposal_boxes": boxes,
                "proposal_objectness_logits": logits,
            }
        )
    return out


def run_both(mapper, reference, dicts):
    for seed in SEEDS:
        np.random.seed(seed)
        got = [mapper(d) for d in dicts]
        np.random.seed(seed)
        want = [reference(d) for d in dicts]
        assert_identical(got, want, f"seed {seed}")


# ---- the tests -----------------------------------------------------------------------------


# Variants of the recipes' mapper settings: overrides.
SINGLE_VIEW = {
    "recipe": [],
    "range, no dedup, small top-k": [
        "INPUT.MIN_SIZE_TRAIN", "(64, 700)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "range",
        "INPUT.PROPOSAL_DEDUP_SCALE", "0.0", "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN", "50",
    ],
    "vertical flip, photometric": [
        "INPUT.RANDOM_FLIP", "vertical", "INPUT.PHOTOMETRIC.ENABLED", "True",
        "INPUT.PROPOSAL_MIN_SIZE", "20.0", "INPUT.PROPOSAL_DEDUP_SCALE", "1.0",
    ],
    "no flip": ["INPUT.RANDOM_FLIP", "none", "INPUT.MIN_SIZE_TRAIN", "(80,)"],
}  # fmt: skip
MULTI_VIEW = {
    "casd/full.yaml": [],
    "casd/full_aug.yaml": [],
    "casd/full.yaml no flip, all proposals": [
        "INPUT.VIEWS.FLIP", "False", "INPUT.VIEWS.NUM_PROPOSALS", "0",
    ],
    "casd/full.yaml 3 scales": ["INPUT.VIEWS.NUM_SCALES", "3", "INPUT.MAX_SIZE_TRAIN", "900"],
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(SINGLE_VIEW))
def test_single_view_mapper_matches_reference(dicts, variant):
    cfg = get_wsod_cfg(os.path.join(VOC, "oicr_vgg16.yaml"), SINGLE_VIEW[variant])
    mapper = build_wsod_train_mapper(cfg)
    assert type(mapper) is WSODDatasetMapper
    run_both(mapper, lambda d: reference_single_view(mapper, d), dicts)


@pytest.mark.parametrize("variant", sorted(MULTI_VIEW))
def test_multi_view_mapper_matches_reference(dicts, variant):
    cfg = get_wsod_cfg(os.path.join(VOC, variant.split()[0]), MULTI_VIEW[variant])
    mapper = build_wsod_train_mapper(cfg)
    run_both(mapper, lambda d: reference_multi_view(mapper, cfg, d), dicts)


def test_test_time_views_match_reference(dicts):
    """The test mapper and TTA's passes (flip first, then resize) through map_view."""
    cfg = get_wsod_cfg(os.path.join(VOC, "oicr_vgg16.yaml"))
    mapper = WSODDatasetMapper(cfg, False)
    run_both(mapper, lambda d: reference_single_view(mapper, d), dicts)
    for d in dicts:
        image = read_image_checked(d, "RGB")
        boxes, logits = mapper.select_proposals(d)
        for min_size in cfg.TEST.AUG.MIN_SIZES:
            flip = T.HFlipTransform(d["width"])
            augs = T.AugmentationList([flip, T.ResizeShortestEdge(min_size, cfg.TEST.AUG.MAX_SIZE)])
            got = mapper.map_view(image, boxes, logits, augs)
            assert_identical(got, reference_view(image, boxes, logits, augs), d["file_name"])


def test_dedup_matches_np_unique():
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 500):
        boxes = rng.integers(-40, 400, (n, 4)).astype(np.float32) + rng.uniform(0, 1, (n, 4))
        boxes = np.concatenate([boxes, boxes[::3]])[rng.permutation(n + len(boxes[::3]))]
        for scale in (0.0, 0.0625, 0.5, 1.0, 3.0):
            assert_identical(dedup_boxes(boxes, scale), reference_dedup(boxes, scale))


def box_transforms(rng, width, height):
    """One of each AXIS_SEPARABLE_TRANSFORMS (and a rotation, which is not), for a
    width x height image."""
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [
        T.ResizeTransform(height, width, 2 * height + 1, width // 2 + 3),
        T.HFlipTransform(width),
        T.VFlipTransform(height),
        T.NoOpTransform(),
        T.RandomContrast(0.5, 1.5).get_transform(image),
        T.CropTransform(3, 5, width - 7, height - 9),
        T.ColorTransform(lambda x: x),
        T.PILColorTransform(lambda x: x),
        SSDPhotometricTransform(
            brightness=3.0,
            contrast=1.2,
            saturation=1.0,
            hue=0.0,
            contrast_first=True,
            image_format="RGB",
        ),
        T.RotationTransform(height, width, 30.0),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_boxes_matches_apply_box(dtype):
    """Every separable transform alone and in random chains, on boxes with x2 < x1 as well."""
    rng = np.random.default_rng(2)
    width, height = 97, 61
    transforms = box_transforms(rng, width, height)
    assert {type(t) for t in transforms[:-1]} == set(AXIS_SEPARABLE_TRANSFORMS)
    boxes = rng.uniform(-10, 110, (300, 4)).astype(dtype)
    chains = [[t] for t in transforms] + [[]]
    chains += [list(rng.choice(transforms[:-1], size=4)) for _ in range(20)]
    chains += [[transforms[0], transforms[-1], transforms[1]]]
    for chain in chains:
        for some in (boxes, boxes[:0]):
            got = transform_boxes(some, T.TransformList(chain))
            assert_identical(got, T.TransformList(chain).apply_box(some), str(chain))


def test_build_augmentation_is_what_the_single_view_mapper_runs():
    """The single-view reference runs ``mapper.augmentations``: check they are the recipe's."""
    cfg = get_wsod_cfg(os.path.join(VOC, "oicr_vgg16.yaml"))
    mapper = build_wsod_train_mapper(cfg)
    expected = utils.build_augmentation(cfg, True)
    assert [repr(a) for a in mapper.augmentations.augs] == [repr(a) for a in expected]
