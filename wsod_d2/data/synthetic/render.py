"""The procedural renderer shared by the synthetic datasets (VOC and WSOL).

Objects are a textured body plus a small part. A body's texture and colour come from one of
``FAMILIES``; a part is a saturated shape and colour (``class_part``) at a direction on the body's
outline. Backgrounds are smooth colour gradients with smooth, mostly-brightness noise. The random
functions draw from the numpy Generator they are given, so a caller fixes the images by fixing
the order of its calls. A change to what they draw changes both datasets: bump GENERATOR_VERSION
in voc_writer.py and wsol.py.
"""

from typing import Callable, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    "FAMILIES",
    "PART_COLOURS",
    "PART_SHAPES",
    "PART_INSET",
    "PART_ANGLE_JITTER",
    "PART_COLOUR_JITTER",
    "family_texture",
    "background",
    "body_outline",
    "part_polygon",
    "class_part",
    "fill_polygon",
    "mask_box",
    "paint_family",
]

# Body families: (texture, dark colour, light colour); muted so no body matches a part colour.
FAMILIES = (
    ("stripes", (118, 84, 54), (186, 152, 108)),
    ("checker", (88, 98, 112), (160, 166, 172)),
    ("spots", (108, 118, 58), (172, 170, 118)),
    ("mottled", (150, 92, 72), (204, 162, 140)),
    ("rings", (68, 108, 106), (142, 172, 160)),
)
# Saturated part colours (red, green, blue, yellow, magenta) and part shapes.
PART_COLOURS = ((228, 26, 28), (30, 190, 60), (40, 80, 235), (245, 210, 0), (210, 40, 210))
PART_SHAPES = ("circle", "triangle", "square", "star")
_PART_DIRECTIONS = 8
# Body outlines: (superellipse exponent, max amplitude of each wobble harmonic).
_BODY_SHAPES = ((2.0, 0.0), (4.0, 0.0), (16.0, 0.0), (2.5, 0.1))
_BODY_HARMONICS = (2, 3, 4)
_OUTLINE_POINTS = 64
PART_INSET = 0.8  # part centre sits this many part radii inside the body's outline
PART_ANGLE_JITTER = 0.25  # radians around the class-typical direction
_TEXTURE_PERIOD = (5.0, 12.0)  # pixels
_SHADING = 0.15  # bodies are lit by a ramp from 1 - s to 1 + s
_BACKGROUND_RANGE = (40.0, 215.0)
_BACKGROUND_SATURATION = 0.6
_BACKGROUND_NOISE = 14.0
_BACKGROUND_CHROMA_NOISE = 5.0
_BACKGROUND_NOISE_CELL = 24  # pixels per cell of the smooth background noise
PART_COLOUR_JITTER = 8.0


def _mixing_map(rng: np.random.Generator, texture: str, h: int, w: int) -> np.ndarray:
    """Texture pattern in [0, 1]: (h, w) float32."""
    period = rng.uniform(*_TEXTURE_PERIOD)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0.0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = -xs * np.sin(angle) + ys * np.cos(angle)
    if texture == "stripes":
        return 0.5 + 0.5 * np.tanh(2.5 * np.sin(2 * np.pi * u / period))
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if texture == "spots":
        wave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        return np.clip((wave - 0.3) * 4.0, 0.0, 1.0)
    if texture == "mottled":
        cells = rng.standard_normal((int(h / period) + 2, int(w / period) + 2)).astype(np.float32)
        smooth = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(0.5 + 0.35 * smooth, 0.0, 1.0)
    if texture == "rings":
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = np.hypot(xs - cx, ys - cy)
        return 0.5 + 0.5 * np.tanh(2.5 * np.sin(2 * np.pi * radius / period))
    raise ValueError(f"unknown texture {texture!r}")


def family_texture(
    rng: np.random.Generator, family: int, h: int, w: int, jitter: float
) -> np.ndarray:
    """A family's textured colour field with per-instance colour jitter and shading: (h, w, 3)."""
    name, dark, light = FAMILIES[family]
    dark = np.asarray(dark, np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)
    light = np.asarray(light, np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)
    t = _mixing_map(rng, name, h, w)[..., None]
    angle = rng.uniform(0.0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(h, w, 1)
    shade = 1.0 + _SHADING * (2.0 * (ramp - ramp.mean()))
    return (dark * (1.0 - t) + light * t) * shade[..., None]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth two-colour gradient plus smooth noise: (h, w, 3) float32."""
    colours = rng.uniform(*_BACKGROUND_RANGE, size=(2, 3)).astype(np.float32)
    grey = colours.mean(axis=1, keepdims=True)
    colours = grey + _BACKGROUND_SATURATION * (colours - grey)
    angle = rng.uniform(0.0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    t = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0))[..., None]
    cells = (h // _BACKGROUND_NOISE_CELL + 2, w // _BACKGROUND_NOISE_CELL + 2)
    noise = rng.standard_normal((2, *cells, 3)).astype(np.float32)
    # Mostly brightness noise: strong colour blotches would mimic the saturated parts.
    noise = _BACKGROUND_NOISE * noise[0, ..., :1] + _BACKGROUND_CHROMA_NOISE * noise[1]
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return colours[0] * (1.0 - t) + colours[1] * t + noise


def body_outline(
    rng: np.random.Generator, half_w: float, half_h: float
) -> Tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A random body outline around the origin: (P, 2) points, and a function mapping an angle
    to the outline point in that direction."""
    exponent, wobble = _BODY_SHAPES[int(rng.integers(len(_BODY_SHAPES)))]
    amps = rng.uniform(0.0, wobble, len(_BODY_HARMONICS))
    phases = rng.uniform(0.0, 2 * np.pi, len(_BODY_HARMONICS))

    def point(t: np.ndarray) -> np.ndarray:
        radius = 1.0 + sum(a * np.cos(k * t + p) for k, a, p in zip(_BODY_HARMONICS, amps, phases))
        c, s = np.cos(t), np.sin(t)
        x = half_w * radius * np.sign(c) * np.abs(c) ** (2.0 / exponent)
        y = half_h * radius * np.sign(s) * np.abs(s) ** (2.0 / exponent)
        return np.stack([x, y], axis=-1)

    return point(np.linspace(0.0, 2 * np.pi, _OUTLINE_POINTS, endpoint=False)), point


def part_polygon(shape: str, radius: float, angle: float) -> np.ndarray:
    """Part outline of circumradius `radius` around the origin, rotated by angle: (Q, 2)."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
        r = np.ones_like(t)
    elif shape == "triangle":
        t = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
        r = np.ones_like(t)
    elif shape == "square":
        t = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        r = np.ones_like(t)
    elif shape == "star":
        t = np.linspace(0.0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    else:
        raise ValueError(f"unknown part shape {shape!r}")
    t = t + angle
    return radius * np.stack([r * np.cos(t), r * np.sin(t)], axis=-1)


def class_part(class_id: int) -> Tuple[str, Tuple[int, int, int], float]:
    """Class-unique (shape, colour) pair and class-typical direction on the body outline."""
    shape = PART_SHAPES[class_id // len(PART_COLOURS)]
    colour = PART_COLOURS[(class_id + class_id // len(PART_COLOURS)) % len(PART_COLOURS)]
    return shape, colour, 2 * np.pi * (class_id % _PART_DIRECTIONS) / _PART_DIRECTIONS


def fill_polygon(hw: Tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of the polygon (Q, 2) of (x, y) points, rounded to pixels."""
    mask = np.zeros(hw, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Tight inclusive (x0, y0, x1, y1) box of the (H, W) mask; None if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def paint_family(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, family: int, jitter: float
) -> None:
    """Fill mask (H, W) of image (H, W, 3) with a fresh instance of a body family's texture,
    its colours jittered by Gaussian noise of std ``jitter``."""
    box = mask_box(mask)
    if box is None:
        return
    x0, y0, x1, y1 = box
    region, inside = image[y0 : y1 + 1, x0 : x1 + 1], mask[y0 : y1 + 1, x0 : x1 + 1]
    texture = family_texture(rng, family, y1 - y0 + 1, x1 - x0 + 1, jitter)
    region[inside] = texture[inside]
