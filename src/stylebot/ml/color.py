"""Colour helpers shared by the engines: colour statistics, recolouring, keeping a photo's chroma."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def color_stats(images: Sequence[Image.Image], weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """RGB mean and covariance (in [0, 1]) of the images' pixels, mixed by ``weights``."""
    total = float(sum(weights))
    mean, second = np.zeros(3), np.zeros((3, 3))
    for img, w in zip(images, weights, strict=True):
        px = np.asarray(img, dtype=np.float64).reshape(-1, 3) / 255.0
        mean += w / total * px.mean(0)
        second += w / total * (px.T @ px) / len(px)
    return mean, second - np.outer(mean, mean)


def _sqrtm(m: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(m + np.eye(3) * 1e-5)
    vals = np.clip(vals, 1e-8, None) ** (-0.5 if inverse else 0.5)
    return (vecs * vals) @ vecs.T


def recolor(source: Image.Image, mean: np.ndarray, cov: np.ndarray) -> Image.Image:
    """Recolour ``source`` to the RGB ``mean`` and ``cov``ariance given (Gatys et al. 2017)."""
    src = np.asarray(source, dtype=np.float64).reshape(-1, 3) / 255.0
    mu_s, cov_s = color_stats([source], [1.0])
    transform = _sqrtm(cov) @ _sqrtm(cov_s, inverse=True)
    out = (src - mu_s) @ transform.T + mean
    arr = np.clip(out.reshape(np.asarray(source).shape) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def match_color(source: Image.Image, target: Image.Image) -> Image.Image:
    """Recolour ``source`` so its RGB mean and covariance match ``target``'s."""
    return recolor(source, *color_stats([target], [1.0]))


def keep_chroma(stylised: Image.Image, content: Image.Image) -> Image.Image:
    """Stylised luminance (Y) with the content's chroma (Cb, Cr)."""
    if content.size != stylised.size:
        content = content.resize(stylised.size, Image.Resampling.LANCZOS)
    y, _, _ = stylised.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
