"""A real `stylebot server` process is SIGKILLed mid-job; after a restart the job finishes, once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port, wait_for_health

from stylebot.assets import sample_path
from stylebot.imaging import encode_image, load_image_file, resize_long_side
from stylebot.jobs.store import JobStore
from stylebot.storage.local import LocalStorage

TOKEN = "restart-test-token-0123456789"
pytestmark = pytest.mark.slow


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stylebot.cli",
            "server",
            "--backend",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_health(proc, f"http://127.0.0.1:{port}")
    return proc


def poll(http: httpx.Client, job_id: str, until: Callable[[dict], bool], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()
        if until(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job never got there: {status}")


def test_sigkill_mid_job_then_restart_finishes_the_job_once(
    tmp_path: Path, synthetic_models_dir: Path
) -> None:
    storage_dir = tmp_path / "storage"
    env = {
        **os.environ,
        "STYLEBOT_STORAGE_DIR": str(storage_dir),
        "STYLEBOT_MODELS_DIR": str(synthetic_models_dir),
        "STYLEBOT_DEVICE": "cpu",
        "ML_SERVER_TOKEN": TOKEN,
        "STYLEBOT_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    photo = encode_image(resize_long_side(load_image_file(sample_path("chelsea.jpg")), 96), "JPEG")
    style = encode_image(resize_long_side(load_image_file(sample_path("texture_grass.jpg")), 96), "JPEG")
    job_id = uuid.uuid4().hex
    store = JobStore(LocalStorage(storage_dir))

    proc = start_server(env, port)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            keys = [
                http.post("/v1/inputs", data={"owner": "chat:7"}, files={"file": (n, d)}).json()["key"]
                for n, d in (("photo.jpg", photo), ("style.jpg", style))
            ]
            body = {
                "job_id": job_id,
                "owner": "chat:7",
                "kind": "nst",
                "content_key": keys[0],
                "style_keys": [keys[1]],
                "params": {"size": 64, "preset": "fast"},
            }
            assert http.post("/v1/jobs", json=body).status_code == 202
            poll(http, job_id, lambda s: s["state"] == "running" and s["progress"] > 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    crashed = asyncio.run(store.load(job_id))
    assert crashed is not None and crashed.status.state.value == "running" and crashed.attempts == 1

    proc = start_server(env, port)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            done = poll(http, job_id, lambda s: s["state"] in ("done", "failed", "cancelled"))
            assert done["state"] == "done", done
            assert http.get(f"/v1/jobs/{job_id}/result").content.startswith(b"\xff\xd8")
    finally:
        proc.terminate()
        proc.wait(15)
    finished = asyncio.run(store.load(job_id))
    assert finished is not None and finished.attempts == 2

    # A third start must not run the finished job again, and resubmitting it changes nothing.
    proc = start_server(env, port)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            assert http.post("/v1/jobs", json=body).json()["state"] == "done"
            assert http.get(f"/v1/jobs/{job_id}").json()["result_key"] == done["result_key"]
            metrics = http.get("/metrics").text
            assert 'stylebot_jobs{state="running"} 0.0' in metrics
            assert 'stylebot_jobs{state="queued"} 0.0' in metrics
    finally:
        proc.terminate()
        proc.wait(15)
    again = asyncio.run(store.load(job_id))
    assert again is not None and again.attempts == 2
