"""A real `stylebot server` subprocess (local or Ray backend) for the backend contract suite."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from server_helpers import free_port, wait_for_health

from stylebot.assets import sample_path
from stylebot.imaging import encode_image, load_image_file, resize_long_side

TOKEN = "backend-contract-token-0123456789"


def small_jpeg(name: str, side: int = 64) -> bytes:
    return encode_image(resize_long_side(load_image_file(sample_path(name)), side), "JPEG")


def phone_jpeg() -> bytes:
    """A 4000×3000 JPEG of more than 1 MB, like a phone camera's: a photo enlarged, with sensor noise."""
    base = load_image_file(sample_path("coffee.jpg")).convert("RGB").resize((4000, 3000))
    noise = np.random.default_rng(7).integers(-6, 7, size=(3000, 4000, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    assert len(data) >= 2**20, len(data)
    return data


def server_env(backend: str, storage_dir: Path, models_dir: Path, ray_tmp: Path | None) -> dict[str, str]:
    env = {
        **os.environ,
        "STYLEBOT_STORAGE_DIR": str(storage_dir),
        "STYLEBOT_MODELS_DIR": str(models_dir),
        "STYLEBOT_DEVICE": "cpu",
        "STYLEBOT_ALLOW_CALLER_FAST_DEV_RUN": "1",
        "STYLEBOT_LOG_LEVEL": "WARNING",
        "ML_SERVER_TOKEN": TOKEN,
    }
    if backend == "ray":
        assert ray_tmp is not None
        env |= {
            "STYLEBOT_RAY_NUM_CPUS": "3",
            "STYLEBOT_RAY_OBJECT_STORE_MB": "80",
            "STYLEBOT_RAY_MAX_REPLICAS": "1",
            # Ray's unix sockets live under its temp dir and must stay under 107 bytes.
            "RAY_TMPDIR": str(ray_tmp),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        env.pop("RAY_ADDRESS", None)  # always a fresh local cluster, never a developer's one
        if (Path.home() / ".ray" / "auth_token").exists():
            env["RAY_AUTH_MODE"] = "token"
    return env


class ServerProcess:
    """Starts, signals and restarts one `stylebot server --backend <backend>` on a fixed port."""

    def __init__(self, backend: str, env: dict[str, str], log_path: Path) -> None:
        self.backend = backend
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stylebot.cli",
                    "server",
                    "--backend",
                    self.backend,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_health(self.proc, self.base_url, timeout=240)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def descendants(self) -> list[int]:
        import psutil

        assert self.proc is not None
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it; returns its exit status (kills it if it hangs)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"server did not stop within {timeout}s on signal {sig}") from None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_status(http: httpx.Client, job_id: str, until: object, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()
        if until(status):  # type: ignore[operator]
            return status
        time.sleep(0.05)
    raise AssertionError(f"job never got there: {status}")


def finished(status: dict) -> bool:
    return status.get("state") in ("done", "failed", "cancelled")
