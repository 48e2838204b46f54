"""The colour distortion of CASD's released data layer (its ``SSDAugmentation``, from ssd.pytorch),
as a detectron2 Augmentation that draws a :class:`SSDPhotometricTransform`.

On a float32 copy of the image, in this order:

1. brightness: with probability ``prob``, add delta ~ U(-brightness_delta, brightness_delta) to
   every channel;
2. a coin (probability CONTRAST_FIRST_PROB) puts contrast before or after the HSV step;
3. contrast: with probability ``prob``, multiply every channel by alpha ~ U(*contrast);
4. the HSV step: to HSV with cv2 (float input: H in degrees [0, 360), S = (max - min) / max,
   V = max), saturation (with probability ``prob``, S times U(*saturation)), hue (with
   probability ``prob``, H plus U(-hue_delta, hue_delta), brought back by one turn where it
   left [0, 360]), back with cv2. The round trip is made even when both draws skip, as the
   release makes it.

Nothing is clipped: the result is float32 and may leave [0, 255] (brightness and contrast push it
out; a pixel whose channels are all <= 0 comes back from the HSV round trip as cv2 makes it, e.g.
black where V = 0), as in the release. The release's channel permutation is constructed there but
never called, so it is left out. Contrast (alpha > 0) scales V and leaves H and S unchanged, so the
two orders differ only by float rounding; they are kept to follow the release.
"""
from typing import Tuple

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = ["SSDPhotometricDistortion", "SSDPhotometricTransform"]

# The release tosses a fair coin for contrast before or after the HSV step.
CONTRAST_FIRST_PROB = 0.5
# cv2's float HSV: hue in degrees.
HUE_TURN = 360.0
# cv2 conversions to and from HSV for each INPUT.FORMAT the distortion accepts.
_TO_HSV = {
    "BGR": (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR),
    "RGB": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
}


class SSDPhotometricTransform(T.Transform):
    """One drawn distortion (module docstring); a skipped step has its identity value (delta 0,
    factor 1). image (H, W, 3) of ``image_format`` "BGR" or "RGB", any dtype -> float32. Moves no
    coordinate."""

    def __init__(
        self,
        *,
        brightness: float,
        contrast: float,
        saturation: float,
        hue: float,
        contrast_first: bool,
        image_format: str,
    ):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        to_hsv, from_hsv = _TO_HSV[self.image_format]
        x = np.array(img, dtype=np.float32)  # a copy: the caller's image is left alone
        x += np.float32(self.brightness)
        if self.contrast_first:
            x *= np.float32(self.contrast)
        hsv = cv2.cvtColor(x, to_hsv)
        hsv[..., 1] *= np.float32(self.saturation)
        h = hsv[..., 0]
        h += np.float32(self.hue)
        h[h > HUE_TURN] -= np.float32(HUE_TURN)
        h[h < 0] += np.float32(HUE_TURN)
        x = cv2.cvtColor(hsv, from_hsv)
        if not self.contrast_first:
            x *= np.float32(self.contrast)
        return x

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class SSDPhotometricDistortion(T.Augmentation):
    """Draws a :class:`SSDPhotometricTransform` (module docstring). Ranges: brightness_delta in
    pixel units (release: 32), contrast and saturation (low, high) factors (0.5, 1.5), hue_delta
    in degrees (18); prob: probability of each of the four steps (1/2)."""

    def __init__(
        self,
        *,
        brightness_delta: float,
        contrast: Tuple[float, float],
        saturation: Tuple[float, float],
        hue_delta: float,
        prob: float,
        image_format: str,
    ):
        super().__init__()
        if image_format not in _TO_HSV:
            raise ValueError(
                f'INPUT.PHOTOMETRIC.STYLE "ssd" distorts colour images: INPUT.FORMAT must be one '
                f"of {sorted(_TO_HSV)}, got {image_format!r}"
            )
        for key, (low, high) in (("CONTRAST", contrast), ("SATURATION", saturation)):
            if not 0 <= low <= high:
                raise ValueError(
                    f"INPUT.PHOTOMETRIC.{key} must be (low, high) with 0 <= low <= high, got "
                    f"{(low, high)}"
                )
        if not 0 <= brightness_delta <= 255:
            raise ValueError(
                f"INPUT.PHOTOMETRIC.BRIGHTNESS_DELTA must be in [0, 255] (pixel units), got "
                f"{brightness_delta}"
            )
        if not 0 <= hue_delta <= HUE_TURN:
            raise ValueError(
                f"INPUT.PHOTOMETRIC.HUE_DELTA must be in [0, 360] (degrees), got {hue_delta}"
            )
        self._init(locals())

    def _maybe(self, low: float, high: float, identity: float) -> float:
        """U(low, high) with probability ``prob``, else ``identity``."""
        return float(np.random.uniform(low, high)) if np.random.uniform() < self.prob else identity

    def get_transform(self, image) -> SSDPhotometricTransform:
        brightness = self._maybe(-self.brightness_delta, self.brightness_delta, 0.0)
        contrast_first = bool(np.random.uniform() < CONTRAST_FIRST_PROB)
        contrast = self._maybe(*self.contrast, 1.0)
        saturation = self._maybe(*self.saturation, 1.0)
        hue = self._maybe(-self.hue_delta, self.hue_delta, 0.0)
        return SSDPhotometricTransform(
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            hue=hue,
            contrast_first=contrast_first,
            image_format=self.image_format,
        )
