"""The PyTorch rebuilds of the arbitrary-style pair (benchmarks/feedforward_torch.py) against
onnxruntime on the original files, both driven by the product's own ``feedforward.transform`` and
``feedforward.style_vector``.

The rebuild lives in the repository's ``benchmarks/`` folder, not in the package, so this module
puts that folder on ``sys.path`` to import it.

Why the second test's bound is not a flat 2 grey levels: the original int8 graph rounds its
per-channel instance-norm statistics (mean, variance, 1/std) to a few int8 steps, so a one-ulp
difference early on can flip one of them and shift a whole channel. Onnxruntime itself, given the
same photo with 0.1% of its sub-pixels nudged by ±1 (invisible), moves its result by 2.9–3.9 grey
levels on average on the bundled photos; the rebuild lands 0.05–3.8 from it (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import feedforward as ff
from stylebot.ml import weights
from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import feedforward_torch
from feedforward_runtime import nudged

# ORT's own run-to-run spread under an invisible input change varies by about ±20% with the
# nudged pixels (2.97–3.45 on this photo over four seeds), hence the margin on one sample of it.
NOISE_FLOOR_MARGIN = 1.25


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_pixels(a) - _pixels(b)).mean())


@pytest.fixture(scope="module")
def runtimes(feedforward_models_dir: Path) -> dict[str, Any]:
    path = weights.model_path(ARBITRARY_TRANSFORM, feedforward_models_dir)
    return {
        "onnxruntime": weights.load_feedforward(ARBITRARY_TRANSFORM, models_dir=feedforward_models_dir),
        "fake_quant": feedforward_torch.SessionLike(
            feedforward_torch.load_style_transformer(path, fake_quant=True)
        ),
        "float": feedforward_torch.SessionLike(feedforward_torch.load_style_transformer(path)),
    }


@pytest.fixture(scope="module")
def brick_vector(feedforward_models_dir: Path) -> np.ndarray:
    predictor = weights.load_feedforward(ARBITRARY_PREDICT, models_dir=feedforward_models_dir)
    return ff.style_vector(predictor, Image.open(sample_path("texture_brick.jpg")))


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.open(sample_path("chelsea.jpg")).convert("RGB")


def test_rebuild_matches_onnxruntime_at_384(
    runtimes: dict[str, Any], brick_vector: np.ndarray, chelsea: Image.Image
) -> None:
    photo = ff.fit_long_side(chelsea, 384)
    reference = ff.transform(runtimes["onnxruntime"], photo, brick_vector)
    assert _mean_diff(ff.transform(runtimes["fake_quant"], photo, brick_vector), reference) <= 2.0  # 0.05
    # Float activations drift further (3.8 here, 3.3–5.9 over the bundled photos and styles): the
    # reason the fake-quant mode exists. The bound only guards the float path from breaking.
    assert _mean_diff(ff.transform(runtimes["float"], photo, brick_vector), reference) <= 8.0


def test_rebuild_is_fully_convolutional_and_within_onnxruntimes_own_noise(
    runtimes: dict[str, Any], brick_vector: np.ndarray, chelsea: Image.Image
) -> None:
    photo = chelsea.resize((320, 256), Image.Resampling.LANCZOS)
    ort = runtimes["onnxruntime"]
    reference = ff.transform(ort, photo, brick_vector)
    rebuilt = ff.transform(runtimes["fake_quant"], photo, brick_vector)
    assert rebuilt.size == photo.size
    noise_floor = _mean_diff(ff.transform(ort, nudged(photo), brick_vector), reference)  # 3.1
    assert _mean_diff(rebuilt, reference) <= max(2.0, NOISE_FLOOR_MARGIN * noise_floor)  # 2.98


def test_rebuilt_predictor_matches_onnxruntime(
    feedforward_models_dir: Path, brick_vector: np.ndarray
) -> None:
    path = weights.model_path(ARBITRARY_PREDICT, feedforward_models_dir)
    fake_quant = feedforward_torch.load_style_predictor(path, fake_quant=True)
    points = fake_quant.quantize.points
    assert points is not None
    step = points[feedforward_torch.PREDICTOR_OUTPUT_QUANT].scale
    style = Image.open(sample_path("texture_brick.jpg"))
    vector = ff.style_vector(feedforward_torch.SessionLike(fake_quant), style)
    # Within 3 int8 steps of the output everywhere (measured 2); the rounding cascade of the
    # transformer keeps it from being bit-exact (onnxruntime on a nudged crop: 36% of entries move).
    assert np.abs(vector - brick_vector).max() <= 3 * step
    floats = ff.style_vector(
        feedforward_torch.SessionLike(feedforward_torch.load_style_predictor(path)), style
    )
    assert np.linalg.norm(floats - brick_vector) <= 0.1 * np.linalg.norm(brick_vector)  # 0.02
