"""Photometric augmentation: the release's ("ssd") distortion on hand-made pixels, its draws, the
detectron2 style unchanged, per-scale draws in the multi-view mapper, and the start iteration,
also as the DataLoader's worker processes see it."""
import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from PIL import Image

from wsod_d2 import add_wsod_config
from wsod_d2.data.progress import training_progress
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.data.wsod.photometric import build_photometric_augmentation, distort
from wsod_d2.data.wsod.ssd_photometric import SSDPhotometricDistortion, SSDPhotometricTransform

# One BGR pixel, worked by hand: V = 200 (R), min = 50 (B), S = 0.75, H = 60 x (G - B) / 150 = 20.
PIXEL = np.array([[[50.0, 100.0, 200.0]]], np.float32)


def ssd(image_format="BGR", **draws):
    params = dict(brightness=0.0, contrast=1.0, saturation=1.0, hue=0.0, contrast_first=True)
    params.update(draws)
    return SSDPhotometricTransform(image_format=image_format, **params)


def cv2_hsv_step(image, saturation=1.0, hue=0.0):
    """The HSV step computed directly with cv2 (float BGR; hue in degrees)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 1] *= np.float32(saturation)
    hsv[..., 0] = (hsv[..., 0] + np.float32(hue)) % np.float32(360)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def make_cfg(**photometric):
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.INPUT.PHOTOMETRIC.ENABLED = True
    for key, value in photometric.items():
        setattr(cfg.INPUT.PHOTOMETRIC, key, value)
    return cfg


def test_ssd_brightness_adds_and_contrast_multiplies_unclipped():
    image = np.array([[[50, 100, 200], [240, 250, 10]]], np.uint8)
    out = ssd(brightness=10.0).apply_image(image)
    assert out.dtype == np.float32 and image[0, 1, 1] == 250  # input untouched
    np.testing.assert_allclose(out, image.astype(np.float32) + 10, atol=1e-3)  # 260: no clip
    out = ssd(contrast=1.5).apply_image(image)
    np.testing.assert_allclose(out, image.astype(np.float32) * 1.5, atol=1e-3)  # 375
    out = ssd(brightness=-20.0, contrast=0.5, contrast_first=False).apply_image(image)
    np.testing.assert_allclose(out[0, 1], [110, 115, -5], atol=1e-3)  # (x - 20) x 0.5


def test_ssd_saturation_and_hue_by_hand_and_by_cv2():
    # S x 0.5 = 0.375: min = V (1 - S) = 125, G = V (1 - S (1 - f)) with f = H / 60 = 1/3.
    out = ssd(saturation=0.5).apply_image(PIXEL)
    np.testing.assert_allclose(out[0, 0], [125, 150, 200], atol=1e-3)
    np.testing.assert_array_equal(out, cv2_hsv_step(PIXEL, saturation=0.5))
    # H + 10 = 30: f = 1/2, G = 200 (1 - 0.75 / 2) = 125.
    out = ssd(hue=10.0).apply_image(PIXEL)
    np.testing.assert_allclose(out[0, 0], [50, 125, 200], atol=1e-3)
    np.testing.assert_array_equal(out, cv2_hsv_step(PIXEL, hue=10.0))
    # H - 30 = -10 wraps to 350 (sector 300-360, f = 5/6): B = 200 (1 - 0.75 x 5/6) = 75.
    out = ssd(hue=-30.0).apply_image(PIXEL)
    np.testing.assert_allclose(out[0, 0], [75, 50, 200], atol=1e-3)
    np.testing.assert_array_equal(out, cv2_hsv_step(PIXEL, hue=-30.0))


def test_ssd_rgb_input_sees_the_same_hue():
    draws = dict(brightness=5.0, contrast=1.2, saturation=1.3, hue=12.0)
    bgr = ssd("BGR", **draws).apply_image(PIXEL)
    rgb = ssd("RGB", **draws).apply_image(PIXEL[..., ::-1])
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


def test_ssd_contrast_before_or_after_the_hsv_step():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (4, 5, 3)).astype(np.float32)
    draws = dict(brightness=-12.0, contrast=1.4, saturation=0.7, hue=-15.0)
    first = ssd(contrast_first=True, **draws).apply_image(image)
    last = ssd(contrast_first=False, **draws).apply_image(image)
    shifted = image + np.float32(-12.0)
    np.testing.assert_array_equal(first, cv2_hsv_step(shifted * np.float32(1.4), 0.7, -15.0))
    np.testing.assert_array_equal(last, cv2_hsv_step(shifted, 0.7, -15.0) * np.float32(1.4))
    # Contrast scales V and keeps H and S: the orders differ by float rounding only.
    np.testing.assert_allclose(first, last, atol=1e-2)


def test_ssd_draws_each_step_with_its_probability():
    kw = dict(brightness_delta=32.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue_delta=18.0)
    image = np.zeros((2, 2, 3), np.uint8)
    never = SSDPhotometricDistortion(prob=0.0, image_format="BGR", **kw).get_transform(image)
    assert (never.brightness, never.contrast, never.saturation, never.hue) == (0, 1, 1, 0)
    np.random.seed(0)
    aug = SSDPhotometricDistortion(prob=0.5, image_format="BGR", **kw)
    draws = [aug.get_transform(image) for _ in range(2000)]
    applied = {
        "brightness": [t.brightness != 0 for t in draws],
        "contrast": [t.contrast != 1 for t in draws],
        "saturation": [t.saturation != 1 for t in draws],
        "hue": [t.hue != 0 for t in draws],
        "contrast_first": [t.contrast_first for t in draws],
    }
    for name, flags in applied.items():
        assert 0.45 < np.mean(flags) < 0.55, name
    assert max(abs(t.brightness) for t in draws) <= 32 and max(abs(t.hue) for t in draws) <= 18
    assert all(0.5 <= t.contrast <= 1.5 and 0.5 <= t.saturation <= 1.5 for t in draws)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("STYLE", "pil", "INPUT.PHOTOMETRIC.STYLE"),
        ("PROB", 1.5, "INPUT.PHOTOMETRIC.PROB"),
        ("START_ITER", -1, "INPUT.PHOTOMETRIC.START_ITER"),
        ("HUE_DELTA", 400.0, "INPUT.PHOTOMETRIC.HUE_DELTA"),
        ("CONTRAST", (1.5, 0.5), "INPUT.PHOTOMETRIC.CONTRAST"),
    ],
)
def test_bad_settings_name_their_key(key, value, match):
    cfg = make_cfg(**{"STYLE": "ssd", key: value})
    with pytest.raises(ValueError, match=match):
        build_photometric_augmentation(cfg, True)


def test_ssd_needs_a_colour_format():
    cfg = make_cfg(STYLE="ssd")
    cfg.INPUT.FORMAT = "L"
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        build_photometric_augmentation(cfg, True)


def test_detectron2_style_is_unchanged():
    """The default style is today's list: detectron2's three factors, each with probability 1/2."""
    cfg = make_cfg()
    assert build_photometric_augmentation(cfg, False) == []
    today = T.AugmentationList(
        [
            T.RandomApply(T.RandomBrightness(0.875, 1.125), prob=0.5),
            T.RandomApply(T.RandomContrast(0.5, 1.5), prob=0.5),
            T.RandomApply(T.RandomSaturation(0.5, 1.5), prob=0.5),
        ]
    )
    built = T.AugmentationList(build_photometric_augmentation(cfg, True))
    image = np.random.RandomState(0).randint(0, 256, (6, 7, 3)).astype(np.uint8)
    for seed in range(8):
        np.random.seed(seed)
        want = distort(today, image)
        np.random.seed(seed)
        got = distort(built, image)
        assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_start_iter_gates_the_distortion():
    progress = training_progress()
    augs = T.AugmentationList(
        build_photometric_augmentation(make_cfg(STYLE="ssd", PROB=1.0, START_ITER=3), True)
    )
    image = np.full((4, 4, 3), 100, np.uint8)
    progress.set_iteration(2)
    assert distort(augs, image) is image  # before: no change, no draw
    for iteration in (3, 10):
        progress.set_iteration(iteration)
        out = distort(augs, image)
        assert out.dtype == np.float32 and not np.array_equal(out, image)
    progress.set_iteration(0)


@pytest.fixture
def flat_record(tmp_path):
    """A 30 x 40 image of one colour (the distortion keeps it flat, so each view shows its draw)."""
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((30, 40, 3), (40, 90, 160), np.uint8)).save(path)
    return {
        "file_name": str(path),
        "image_id": "flat",
        "height": 30,
        "width": 40,
        "image_labels": [1],
        "proposal_boxes": np.array([[2, 3, 20, 25], [10, 0, 39, 29]], np.float32),
        "proposal_objectness_logits": np.zeros(2, np.float32),
    }


@pytest.mark.parametrize("per_scale", [True, False])
def test_multiview_draws_per_scale_and_mirrors_flips(flat_record, per_scale):
    cfg = make_cfg(STYLE="ssd", PROB=1.0, PER_SCALE=per_scale)
    cfg.INPUT.VIEWS.NUM_SCALES = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (24, 36)
    np.random.seed(0)
    views = MultiViewWSODDatasetMapper(cfg)(flat_record)["views"]
    assert [v["flipped"] for v in views] == [False, True, False, True]
    for view, flipped in zip(views[::2], views[1::2]):
        assert view["image"].dtype == torch.float32
        assert torch.equal(flipped["image"], view["image"].flip(-1))  # the same distorted image
    colours = [v["image"].mean(dim=(1, 2)) for v in views[::2]]
    if per_scale:
        assert (colours[0] - colours[1]).abs().max() > 1.0
    else:
        assert torch.allclose(colours[0], colours[1], atol=1e-3)


class GatedImages(torch.utils.data.Dataset):
    """Flat images through a START_ITER-gated distortion: True where one came out distorted."""

    def __init__(self, augmentations, n=4):
        self.augmentations, self.n = augmentations, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        image = np.full((3, 3, 3), 100, np.uint8)
        return not np.array_equal(distort(self.augmentations, image), image)


# spawn (the mapper pickled to each worker) with one worker: its start-up imports are slow.
@pytest.mark.parametrize("context, workers", [("fork", 2), ("spawn", 1)])
def test_dataloader_workers_read_the_main_process_progress(context, workers):
    cfg = make_cfg(STYLE="ssd", PROB=1.0, START_ITER=3)
    augs = T.AugmentationList(build_photometric_augmentation(cfg, True))
    progress = training_progress()
    progress.set_iteration(2)
    loader = torch.utils.data.DataLoader(
        GatedImages(augs),
        batch_size=None,
        num_workers=workers,
        persistent_workers=True,  # the same worker processes in both passes
        multiprocessing_context=context,
    )
    try:
        assert not any(loader)
        progress.set_iteration(3)  # written by the main process after the workers started
        assert all(loader)
    finally:
        progress.set_iteration(0)
        del loader
