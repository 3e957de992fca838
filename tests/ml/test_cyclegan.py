"""CycleGAN inference: size handling, batching, and tiles that agree with the whole image."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import cyclegan
from stylebot.ml.cyclegan import ResnetGenerator, translate, translate_batch
from stylebot.ml.nst import Cancelled, CancelToken, NSTProgress
from stylebot.ml.weights import WeightsError, load_generator


@pytest.fixture(scope="module")
def generator() -> ResnetGenerator:
    return cyclegan.generator_from_state_dict(cyclegan.random_generator_state(3))


def _photo(size: tuple[int, int]) -> Image.Image:
    return Image.open(sample_path("astronaut.jpg")).convert("RGB").resize(size, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("size", [(37, 29), (64, 64), (50, 81)])
def test_any_size_comes_back_at_its_own_size(generator: ResnetGenerator, size: tuple[int, int]) -> None:
    assert translate(generator, _photo(size)).size == size


def test_large_photo_runs_in_tiles_and_is_not_shrunk(generator: ResnetGenerator) -> None:
    seen: list[NSTProgress] = []
    out = translate(generator, _photo((300, 140)), tile=128, overlap=32, on_progress=seen.append)
    assert out.size == (300, 140)
    assert seen[-1].iteration == seen[-1].total == 2 * 3  # 2 rows x 3 columns of tiles


@contextlib.contextmanager
def _per_tile_statistics() -> Iterator[None]:
    """Naive tiling (each tile normalised by its own statistics), for comparison."""
    original = cyclegan._norm_mode
    cyclegan._norm_mode = lambda generator, mode: contextlib.nullcontext()
    try:
        yield
    finally:
        cyclegan._norm_mode = original


def test_tiled_matches_untiled_away_from_seams(generator: ResnetGenerator) -> None:
    photo = _photo((256, 192))
    whole = np.asarray(translate(generator, photo, tile=4096), dtype=float)
    tiled = np.asarray(translate(generator, photo, tile=128, overlap=48), dtype=float)
    with _per_tile_statistics():
        naive = np.asarray(translate(generator, photo, tile=128, overlap=48), dtype=float)
    away = np.ones((192, 256), dtype=bool)  # 24 px either side of every tile edge is "near a seam"
    for edge in {0, 64, 128, 192}:
        away[max(0, edge - 24) : edge + 24, :] = False
    for edge in {0, 80, 128, 208, 256}:
        away[:, max(0, edge - 24) : edge + 24] = False
    assert away.sum() > 2000
    error = np.abs(whole - tiled)[away]
    naive_error = np.abs(whole - naive)[away]
    # Within 3/255 on average and 16/255 at the 99th percentile, while per-tile statistics are
    # off by an order of magnitude more: the global statistics are what makes tiles agree.
    assert error.mean() < 3.0 and np.percentile(error, 99) < 16
    assert naive_error.mean() > 5 * error.mean()


def test_batch_of_mixed_sizes_matches_single_images(generator: ResnetGenerator) -> None:
    photos = [_photo((40, 32)), _photo((48, 48)), _photo((40, 32)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    batch = translate_batch(generator, photos)
    assert [im.size for im in batch] == [p.size for p in photos]
    for photo, out in zip(photos, batch, strict=True):
        single = np.asarray(translate(generator, photo), dtype=int)
        assert np.abs(np.asarray(out, dtype=int) - single).max() <= 1


def test_cancel_between_tiles(generator: ResnetGenerator) -> None:
    token = CancelToken()
    seen: list[int] = []

    def on_progress(p: NSTProgress) -> None:
        seen.append(p.iteration)
        token.cancel()

    with pytest.raises(Cancelled):
        translate(generator, _photo((300, 140)), tile=128, overlap=32, on_progress=on_progress, cancel=token)
    assert seen == [1]


def test_bad_tile_settings_are_rejected(generator: ResnetGenerator) -> None:
    with pytest.raises(ValueError, match="tile"):
        translate(generator, _photo((64, 64)), tile=30)
    with pytest.raises(ValueError, match="overlap"):
        translate(generator, _photo((64, 64)), tile=128, overlap=64)


def test_load_generator_caches_and_reports_missing_styles(synthetic_models_dir: Path) -> None:
    first = load_generator("style_monet", models_dir=synthetic_models_dir, device="cpu")
    assert load_generator("style_monet", models_dir=synthetic_models_dir, device="cpu") is first
    with pytest.raises(WeightsError, match="models pull style_vangogh"):
        load_generator("style_vangogh", models_dir=synthetic_models_dir, device="cpu")
