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
def models(synthetic_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    get_settings.cache_clear()
    return synthetic_models_dir


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
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert "stylebot models pull style_vangogh" in capsys.readouterr().err
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


def test_no_backbone_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "stylize",
            str(sample_path("chelsea.jpg")),
            "-s",
            str(sample_path("texture_brick.jpg")),
            "--fast-dev-run",
            "-o",
            str(tmp_path / "x.jpg"),
        ]
    )
    assert rc == 3
    assert "stylebot models pull vgg19" in capsys.readouterr().err


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
