"""``stats``: hand-made image statistics (numpy + Pillow only, a few ms per image).

Size columns come from the full image; the others from an RGB thumbnail of at most 256 px a
side. "Dark" (ink) is grayscale < 128 of 255, "near white" >= 240. Each column is named in
:data:`COLUMNS` (in order):

- ``log_width``, ``log_height``: log of the side in pixels.
- ``log_aspect``: log(width / height) (0 square, > 0 wide).
- ``log_pixels``: log(width * height).
- ``ink_ratio``: share of dark pixels.
- ``edge_density``: share of pixels whose gradient magnitude exceeds 32 (of 255).
- ``mean_intensity``, ``std_intensity``: of the grayscale, in 0..1.
- ``mean_saturation``: HSV saturation averaged (0 for grayscale: colourfulness).
- ``colour_ratio``: share of pixels with saturation > 0.25 (coloured ink or photo areas).
- ``white_ratio``: share of near-white pixels (background of diagrams and text).
- ``log_colours``: log1p of the number of distinct colours quantised to 3 bits a channel.
- ``h_line_energy``, ``v_line_energy``: share of the dark pixels that lie on horizontal
  (vertical) dark runs at least 1/8 of the thumbnail width (height) long: rules, axes, tables.
- ``gray_entropy``: entropy of the 32-bin grayscale histogram, divided by log2(32) (0..1).
- ``dark_background``: 1.0 when the mean intensity is below 0.5 (light-on-dark images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from coe_gateway.vision.features.base import ImageFeatureExtractor, as_rgb

COLUMNS: tuple[str, ...] = (
    "log_width", "log_height", "log_aspect", "log_pixels", "ink_ratio", "edge_density",
    "mean_intensity", "std_intensity", "mean_saturation", "colour_ratio", "white_ratio",
    "log_colours", "h_line_energy", "v_line_energy", "gray_entropy", "dark_background",
)
THUMB = 256
DARK, WHITE, EDGE, SATURATED = 128.0, 240.0, 32.0, 0.25


def thumbnail(image: Image.Image, side: int = THUMB) -> np.ndarray:
    """``(h, w, 3)`` float32 RGB of ``image`` shrunk to at most ``side`` a side."""
    rgb = as_rgb(image)
    w, h = rgb.size
    scale = min(1.0, side / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.float32)


def run_energy(mask: np.ndarray, min_run: int) -> float:
    """Share of the True cells of ``mask`` (h, w) on row runs of at least ``min_run``."""
    total = int(mask.sum())
    if total == 0:
        return 0.0
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)  # (h, w+1)
    _, starts = np.nonzero(edges == 1)  # row-major: starts and ends pair up
    _, ends = np.nonzero(edges == -1)
    runs = ends - starts
    return float(runs[runs >= min_run].sum()) / total


def image_stats(image: Image.Image) -> np.ndarray:
    """``(len(COLUMNS),)`` float32 statistics of one image."""
    w, h = image.size
    rgb = thumbnail(image)  # (h', w', 3)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (h', w')
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)  # (h', w')
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)  # (h', w')
    dark = gray < DARK
    gy, gx = np.gradient(gray)
    quant = rgb.astype(np.uint8) >> 5  # (h', w', 3) in 0..7
    codes = (quant[..., 0].astype(np.int32) << 6) | (quant[..., 1] << 3) | quant[..., 2]
    bins = (np.minimum(gray, 255).astype(np.int32) >> 3).ravel()  # (h'*w',) in 0..31
    hist = np.bincount(bins, minlength=32) / gray.size  # (32,)
    colours = int(np.count_nonzero(np.bincount(codes.ravel(), minlength=512)))
    nz = hist[hist > 0]
    mean = float(gray.mean()) / 255.0
    values = [
        math.log(w), math.log(h), math.log(w / h), math.log(w * h),
        float(dark.mean()), float((np.hypot(gx, gy) > EDGE).mean()),
        mean, float(gray.std()) / 255.0,
        float(saturation.mean()), float((saturation > SATURATED).mean()),
        float((gray >= WHITE).mean()), math.log1p(colours),
        run_energy(dark, max(2, dark.shape[1] // 8)),
        run_energy(dark.T, max(2, dark.shape[0] // 8)),
        max(0.0, float(-(nz * np.log2(nz)).sum()) / 5.0), float(mean < 0.5),
    ]
    return np.asarray(values, dtype=np.float32)


class StatsExtractor(ImageFeatureExtractor):
    """Hand-made statistics; ``columns`` names each one. No options."""

    kind: ClassVar[str] = "stats"
    columns: ClassVar[tuple[str, ...]] = COLUMNS

    @property
    def dim(self) -> int:
        return len(COLUMNS)

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)  # (B, 16)
        for i, image in enumerate(images):
            out[i] = image_stats(image)
        return out
