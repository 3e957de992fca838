"""`stylebot server --backend ray`: a local Ray Serve (127.0.0.1, temp dir under the test folder)
runs one NST and one CycleGAN job through the HTTP API, then shuts down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port, wait_for_health

from stylebot.assets import sample_path
from stylebot.imaging import encode_image, load_image_file, resize_long_side

TOKEN = "ray-test-token-0123456789abcdef"
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait_finished(http: httpx.Client, job_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job did not finish: {status}")


def test_ray_serve_runs_nst_and_cyclegan_jobs_over_http(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, synthetic_models_dir: Path
) -> None:
    # Ray's unix sockets live under its temp dir and must stay under 107 bytes: keep the path short.
    ray_tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    env = {
        **os.environ,
        "STYLEBOT_STORAGE_DIR": str(tmp_path / "storage"),
        "STYLEBOT_MODELS_DIR": str(synthetic_models_dir),
        "STYLEBOT_DEVICE": "cpu",
        "STYLEBOT_ALLOW_CALLER_FAST_DEV_RUN": "1",
        "STYLEBOT_RAY_NUM_CPUS": "2",
        "STYLEBOT_RAY_OBJECT_STORE_MB": "80",
        "STYLEBOT_RAY_MAX_REPLICAS": "1",
        "ML_SERVER_TOKEN": TOKEN,
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)  # always a fresh local cluster, never a developer's one
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stylebot.cli", "server", "--backend", "ray", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(proc, base, timeout=240)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            assert http.get("/v1/styles", headers={"Authorization": "Bearer nope"}).status_code == 401
            photo, style = (encode_image(resize_long_side(load_image_file(sample_path(name)), 80), "JPEG")
                            for name in ("coffee.jpg", "texture_brick.jpg"))
            keys = [http.post("/v1/inputs", data={"owner": "chat:1"}, files={"file": (n, d)}).json()["key"]
                    for n, d in (("photo.jpg", photo), ("style.jpg", style))]
            nst = {"job_id": uuid.uuid4().hex, "owner": "chat:1", "kind": "nst", "content_key": keys[0],
                   "style_keys": [keys[1]], "params": {"fast_dev_run": True}}
            cyclegan = {"job_id": uuid.uuid4().hex, "owner": "chat:2", "kind": "cyclegan",
                        "model": "style_monet", "content_key": keys[0], "params": {"fast_dev_run": True}}
            for body in (nst, cyclegan):
                response = http.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                assert response.json()["state"] in ("queued", "running", "done")
            bad = http.post("/v1/jobs", json=nst | {"job_id": uuid.uuid4().hex, "params": {"size": 99999}})
            assert bad.status_code == 422 and bad.json()["detail"]["field"] == "params.size"
            for body in (nst, cyclegan):
                final = wait_finished(http, body["job_id"])
                assert final["state"] == "done", final
                result = http.get(f"/v1/jobs/{body['job_id']}/result")
                assert result.status_code == 200 and result.content[:2] == b"\xff\xd8"
            assert 'stylebot_jobs{state="done"} 2.0' in http.get("/metrics").text
    except BaseException:
        sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
