"""Job overhead (submit → a worker starts it) and start-up time, per backend, side by side:
the in-process JobService, `stylebot server --backend local` (uvicorn) and `--backend ray`
(a fresh local Ray Serve). Prints medians and the ratios against the in-process baseline.

    .venv/bin/python benchmarks/server_overhead.py --jobs 10

Jobs are tiny fast-dev-run CycleGAN jobs on random weights, one after another (an idle queue),
so the figure is the service's own overhead, not waiting behind other work. The times come
from the job records: ``started_at - created_at``, both stamped on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from stylebot.assets import sample_path
from stylebot.config import Settings
from stylebot.imaging import encode_image, load_image_file, resize_long_side
from stylebot.jobs.spec import JobParams, JobSpec, JobStatus
from stylebot.ml.synthetic import make_models_dir
from stylebot.server.service import JobService
from stylebot.storage.local import LocalStorage

TOKEN = "benchmark-token-0123456789abcdef"


def photo() -> bytes:
    return encode_image(resize_long_side(load_image_file(sample_path("chelsea.jpg")), 64), "JPEG")


def overhead(status: JobStatus | dict) -> float:
    s = status if isinstance(status, JobStatus) else JobStatus.model_validate(status)
    assert s.started_at is not None, s
    return s.started_at - s.created_at


async def in_process(models: Path, root: Path, jobs: int) -> tuple[float, list[float]]:
    settings = Settings(
        storage_dir=root / "storage-inproc", models_dir=models, device="cpu", allow_caller_fast_dev_run=True
    )
    started = time.perf_counter()
    service = JobService(LocalStorage(settings.storage_dir), settings)
    await service.start()
    start_s = time.perf_counter() - started
    samples = []
    try:
        key = await service.upload_input(photo(), owner="bench:1", name="in.jpg")
        for _ in range(jobs):
            spec = JobSpec(
                job_id=uuid.uuid4().hex,
                owner="bench:1",
                kind="cyclegan",
                model="style_monet",
                content_key=key,
                params=JobParams(fast_dev_run=True),
            )
            await service.submit(spec)
            while not (status := await service.status(spec.job_id)).finished:
                await asyncio.sleep(0.005)
            samples.append(overhead(status))
    finally:
        await service.stop()
    return start_s, samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def over_http(backend: str, models: Path, root: Path, jobs: int) -> tuple[float, list[float]]:
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="sbr", dir="/tmp"))
    env = {
        **os.environ,
        "STYLEBOT_STORAGE_DIR": str(root / f"storage-{backend}"),
        "STYLEBOT_MODELS_DIR": str(models),
        "STYLEBOT_DEVICE": "cpu",
        "ML_SERVER_TOKEN": TOKEN,
        "STYLEBOT_ALLOW_CALLER_FAST_DEV_RUN": "1",
        "STYLEBOT_LOG_LEVEL": "WARNING",
        "STYLEBOT_RAY_NUM_CPUS": "2",
        "STYLEBOT_RAY_OBJECT_STORE_MB": "100",
        "STYLEBOT_RAY_MAX_REPLICAS": "1",
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebot.cli", "server", "--backend", backend, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = []
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"{backend} server exited with {proc.returncode}")
                try:
                    if http.get("/v1/styles").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            start_s = time.perf_counter() - started
            key = http.post("/v1/inputs", data={"owner": "bench:1"}, files={"file": ("in.jpg", photo())})
            key.raise_for_status()
            for _ in range(jobs):
                body = {
                    "job_id": uuid.uuid4().hex,
                    "owner": "bench:1",
                    "kind": "cyclegan",
                    "model": "style_monet",
                    "content_key": key.json()["key"],
                    "params": {"fast_dev_run": True},
                }
                http.post("/v1/jobs", json=body).raise_for_status()
                while (status := http.get(f"/v1/jobs/{body['job_id']}").json())["state"] in (
                    "queued",
                    "running",
                ):
                    time.sleep(0.005)
                samples.append(overhead(status))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return start_s, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = make_models_dir(root / "models")
        rows = {
            "in-process": asyncio.run(in_process(models, root, args.jobs)),
            "local (HTTP)": over_http("local", models, root, args.jobs),
        }
        if not args.skip_ray:
            rows["ray (HTTP)"] = over_http("ray", models, root, args.jobs)
    base = statistics.median(rows["in-process"][1])
    print(f"{'backend':<14} {'start s':>8} {'overhead ms (median)':>21} {'p90 ms':>8} {'x in-process':>13}")
    for name, (start_s, samples) in rows.items():
        median = statistics.median(samples)
        p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
        print(f"{name:<14} {start_s:>8.2f} {median * 1000:>21.1f} {p90 * 1000:>8.1f} {median / base:>13.1f}")


if __name__ == "__main__":
    main()
