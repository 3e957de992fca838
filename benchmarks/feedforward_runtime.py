"""Onnxruntime vs the PyTorch rebuild for the arbitrary-style transformer, side by side.

Onnxruntime runs the original int8 file exactly as the product does (``weights.load_feedforward``);
the rebuild is ``benchmarks/feedforward_torch.py`` in float and in fake-quant mode. Both go through
the product's ``feedforward.transform`` (reflect pad to a multiple of 8, crop, to uint8), on
chelsea.jpg scaled to the given long side with the style vector of texture_brick.jpg.

Prints plain tables: accuracy at 384 px (mean and max |diff| in grey levels against onnxruntime,
and onnxruntime's own change when 0.1% of the photo's sub-pixels move by ±1), seconds per image
(median of --runs after one warm-up) at 512/1024/2048 px, peak memory of one 2048-px pass (each
runtime in its own subprocess, VmHWM from /proc), a batch of 4 at 512 px vs 4 one by one, and the
style predictor (its vector against onnxruntime's, seconds per 256-px crop).

    PYTHONPATH=src .venv/bin/python benchmarks/feedforward_runtime.py            # ~3 min on 2 cores
    PYTHONPATH=src .venv/bin/python benchmarks/feedforward_runtime.py --quick    # small sizes
    PYTHONPATH=src .venv/bin/python benchmarks/feedforward_runtime.py --device cuda

Threads: onnxruntime's CPU provider uses its default intra-op pool (one thread per physical
core); torch gets ``--threads`` (default: the CPUs this process may use, the same on machines
without SMT).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import feedforward as ff
from stylebot.ml import weights
from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import feedforward_torch

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnxruntime", "torch float", "torch fake-quant")
BATCH = 4


def ensure_models(cache: Path) -> Path:
    if not all(weights.is_installed(n, cache) for n in (ARBITRARY_PREDICT, ARBITRARY_TRANSFORM)):
        weights.pull((ARBITRARY_PREDICT, ARBITRARY_TRANSFORM), models_dir=cache, progress=True)
    return cache


def load_runtime(name: str, models: Path, device: str) -> Any:
    """An object with onnxruntime's ``get_inputs()``/``run()`` for the named runtime."""
    if name == "onnxruntime":
        return weights.load_feedforward(ARBITRARY_TRANSFORM, models_dir=models, device=device)
    path = weights.model_path(ARBITRARY_TRANSFORM, models)
    model = feedforward_torch.load_style_transformer(path, fake_quant=name == "torch fake-quant")
    return feedforward_torch.SessionLike(model, device)


def style_vector(models: Path) -> np.ndarray:
    predictor = weights.load_feedforward(ARBITRARY_PREDICT, models_dir=models)
    return ff.style_vector(predictor, Image.open(sample_path("texture_brick.jpg")))


def photo(long_side: int) -> Image.Image:
    return ff.fit_long_side(Image.open(sample_path("chelsea.jpg")).convert("RGB"), long_side)


def seconds(fns: dict[str, Callable[[], object]], runs: int, device: str) -> dict[str, float]:
    """Median seconds per call of each function. The calls take turns (one of each per round) so
    that a change in the machine's load during the run hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, oneDNN/cuDNN kernel choice
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def nudged(img: Image.Image, fraction: float = 0.001, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    values = np.asarray(img, dtype=np.int16).copy()
    mask = rng.random(values.shape) < fraction
    values[mask] += rng.choice(np.array([-1, 1], dtype=np.int16), int(mask.sum()))
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


# --- sections ------------------------------------------------------------------------------------
def accuracy(runtimes: dict[str, Any], vector: np.ndarray, side: int) -> None:
    image = photo(side)
    reference = pixels(ff.transform(runtimes["onnxruntime"], image, vector))
    print(f"\nAccuracy at {image.width}x{image.height} (grey levels, |x - onnxruntime| over all sub-pixels)")
    print(f"{'':34}{'mean':>8}{'max':>8}{'> 2':>8}")
    rows = {name: pixels(ff.transform(runtimes[name], image, vector)) for name in RUNTIMES[1:]}
    rows["onnxruntime, 0.1% sub-pixels ±1"] = pixels(
        ff.transform(runtimes["onnxruntime"], nudged(image), vector)
    )
    for name, out in rows.items():
        diff = np.abs(out - reference)
        print(f"{name:34}{diff.mean():8.2f}{diff.max():8.0f}{np.mean(diff > 2) * 100:7.1f}%")


def speed(runtimes: dict[str, Any], vector: np.ndarray, sizes: list[int], runs: int, device: str) -> None:
    print(f"\nSeconds per image (median of {runs} after a warm-up), {device}")
    header = "".join(f"{n:>18}" for n in RUNTIMES)
    print(f"{'size':12}{header}{'float/ort':>11}{'fq/ort':>9}")
    for side in sizes:
        image = photo(side)
        t = seconds({n: partial(ff.transform, runtimes[n], image, vector) for n in RUNTIMES}, runs, device)
        ort = t["onnxruntime"]
        cells = "".join(f"{t[n]:18.3f}" for n in RUNTIMES)
        ratios = f"{t['torch float'] / ort:11.2f}{t['torch fake-quant'] / ort:9.2f}"
        print(f"{f'{image.width}x{image.height}':12}{cells}{ratios}")


def batching(runtimes: dict[str, Any], vector: np.ndarray, side: int, runs: int, device: str) -> None:
    """torch: one batch of 4 (each with its own style vector) vs 4 calls; onnxruntime: 4 calls
    (its file fixes batch = 1)."""
    arr, _, _ = ff._pad_to(ff._array(photo(side)), 8)
    contents = np.stack([arr] * BATCH)
    vectors = np.concatenate([vector * (1.0 - 0.1 * i) for i in range(BATCH)]).astype(np.float32)
    print(f"\nBatch of {BATCH} at {arr.shape[1]}x{arr.shape[0]}: seconds per image, {device}")
    print(f"{'':18}{'4 one by one':>14}{'batch of 4':>12}{'batch/serial':>14}")
    ort = runtimes["onnxruntime"]
    names = [i.name for i in ort.get_inputs()]

    def ort_one_by_one() -> None:
        for i in range(BATCH):
            ort.run(None, dict(zip(names, (contents[i : i + 1], vectors[i : i + 1]), strict=True)))

    def torch_one_by_one(model: feedforward_torch.StyleTransformer) -> None:
        for i in range(BATCH):
            feedforward_torch.run_like_onnx(model, contents[i : i + 1], vectors[i : i + 1], device=device)

    fns: dict[str, Callable[[], object]] = {"onnxruntime": ort_one_by_one}
    for name in RUNTIMES[1:]:
        model = runtimes[name].model
        fns[f"{name} serial"] = partial(torch_one_by_one, model)
        fns[f"{name} batch"] = partial(
            feedforward_torch.run_like_onnx, model, contents, vectors, device=device
        )
    t = seconds(fns, runs, device)
    print(f"{'onnxruntime':18}{t['onnxruntime'] / BATCH:14.3f}{'-':>12}{'-':>14}")
    for name in RUNTIMES[1:]:
        serial, batched = t[f"{name} serial"], t[f"{name} batch"]
        print(f"{name:18}{serial / BATCH:14.3f}{batched / BATCH:12.3f}{batched / serial:14.2f}")


def predictor(models: Path, runs: int, device: str) -> None:
    """The style predictor on one 256-px crop of texture_brick.jpg: the vector against onnxruntime's
    (in int8 steps of the graph's output) and seconds per crop."""
    path = weights.model_path(ARBITRARY_PREDICT, models)
    fake_quant = feedforward_torch.load_style_predictor(path, fake_quant=True)
    assert fake_quant.quantize.points is not None
    step = fake_quant.quantize.points[feedforward_torch.PREDICTOR_OUTPUT_QUANT].scale
    predictors: dict[str, Any] = {
        "onnxruntime": weights.load_feedforward(ARBITRARY_PREDICT, models_dir=models, device=device),
        "torch float": feedforward_torch.SessionLike(feedforward_torch.load_style_predictor(path), device),
        "torch fake-quant": feedforward_torch.SessionLike(fake_quant, device),
    }
    crop = ff.style_crops(Image.open(sample_path("texture_brick.jpg")))[0]
    reference = ff.style_vector(predictors["onnxruntime"], crop)
    vectors = {name: ff.style_vector(predictors[name], crop) for name in RUNTIMES[1:]}
    vectors["onnxruntime, 0.1% sub-pixels ±1"] = ff.style_vector(predictors["onnxruntime"], nudged(crop))
    t = seconds({n: partial(ff.style_vector, predictors[n], crop) for n in RUNTIMES}, runs, device)
    print(f"\nStyle predictor, one 256x256 crop, {device}: the vector against onnxruntime's (int8 steps)")
    print(f"{'':34}{'max steps':>10}{'entries off':>13}{'rel. L2':>9}{'seconds':>9}")
    print(f"{'onnxruntime':34}{0:10.0f}{0:12.0f}%{0:9.3f}{t['onnxruntime']:9.3f}")
    for name, vector in vectors.items():
        steps = np.round(np.abs(vector - reference) / step)
        rel = np.linalg.norm(vector - reference) / np.linalg.norm(reference)
        cell = f"{t[name]:9.3f}" if name in t else f"{'-':>9}"
        print(f"{name:34}{steps.max():10.0f}{np.mean(steps > 0) * 100:12.0f}%{rel:9.3f}{cell}")


def memory_child(name: str, models: Path, side: int, device: str, threads: int) -> None:
    """Run in a fresh process: one pass at ``side``; print RSS before and peak (JSON)."""
    torch.set_num_threads(threads)
    runtime = load_runtime(name, models, device)
    vector = style_vector(models)
    image = photo(side)
    status = Path("/proc/self/status").read_text().splitlines()
    before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    ff.transform(runtime, image, vector)
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    gpu_peak = torch.cuda.max_memory_allocated() // 1024 if device == "cuda" else 0
    print(json.dumps({"before_kib": before, "peak_kib": peak, "gpu_peak_kib": gpu_peak, "size": image.size}))


def memory(models: Path, side: int, device: str, threads: int) -> None:
    print(f"\nPeak memory of one pass at long side {side} (own subprocess each; RSS in MiB), {device}")
    print(f"{'':18}{'after load':>12}{'peak':>10}{'peak - load':>13}{'torch GPU peak':>16}")
    for name in RUNTIMES:
        out = subprocess.run(
            [
                *(sys.executable, __file__, "--memory-child", name, "--size", str(side)),
                *("--device", device, "--threads", str(threads), "--cache", str(models)),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        m = json.loads(out.strip().splitlines()[-1])
        gpu = (
            f"{m['gpu_peak_kib'] / 1024:16.0f}"
            if device == "cuda" and name != "onnxruntime"
            else f"{'-':>16}"
        )
        before, peak = m["before_kib"] / 1024, m["peak_kib"] / 1024
        print(f"{name:18}{before:12.0f}{peak:10.0f}{peak - before:13.0f}{gpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 256/384, fewer runs")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per size (default 5, quick 3)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "models")
    parser.add_argument("--memory-child", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=2048, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = ensure_models(args.cache)
    if args.memory_child:
        memory_child(args.memory_child, models, args.size, args.device, args.threads)
        return

    torch.set_num_threads(args.threads)
    sizes = [256, 384] if args.quick else [512, 1024, 2048]
    runs = args.runs or (3 if args.quick else 5)
    runtimes = {name: load_runtime(name, models, args.device) for name in RUNTIMES}
    vector = style_vector(models)
    import onnxruntime

    providers = ", ".join(runtimes["onnxruntime"].get_providers())
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__} ({providers}, default intra-op threads), "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )
    started = time.perf_counter()
    accuracy(runtimes, vector, 384)
    speed(runtimes, vector, sizes, runs, args.device)
    batching(runtimes, vector, 256 if args.quick else 512, runs, args.device)
    predictor(models, runs, args.device)
    memory(models, sizes[-1], args.device, args.threads)
    print(f"\ndone in {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
