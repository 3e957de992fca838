"""CycleGAN throughput: N jobs as one batch (what Ray Serve's ``@serve.batch`` hands a replica)
versus the same N jobs one at a time, side by side on this machine. Prints the ratio.

    .venv/bin/python benchmarks/cyclegan_batching.py --jobs 8 --size 256 --rounds 3

Uses random weights in the official layout (compute is identical to the real checkpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from stylebot.assets import sample_path
from stylebot.config import Settings
from stylebot.imaging import encode_image, load_image_file, resize_long_side
from stylebot.jobs.pipeline import run_cyclegan_batch, run_job
from stylebot.jobs.spec import JobParams, JobSpec
from stylebot.ml.nst import CancelToken
from stylebot.ml.synthetic import make_models_dir
from stylebot.storage.local import LocalStorage

SAMPLES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")


async def make_specs(storage: LocalStorage, jobs: int, size: int) -> list[JobSpec]:
    specs = []
    for n in range(jobs):
        image = resize_long_side(load_image_file(sample_path(SAMPLES[n % len(SAMPLES)])), size)
        key = await storage.put(encode_image(image, "JPEG"), scope=f"bench-{n}", name="in.jpg")
        specs.append(
            JobSpec(
                job_id=uuid.uuid4().hex,
                owner=f"bench:{n}",
                kind="cyclegan",
                model="style_monet",
                content_key=key,
                params=JobParams(size=size),
            )
        )
    return specs


async def one_at_a_time(specs: list[JobSpec], storage: LocalStorage, settings: Settings) -> float:
    started = time.perf_counter()
    for spec in specs:
        await run_job(spec, storage, settings, on_progress=lambda _p: None, cancel=CancelToken())
    return time.perf_counter() - started


async def batched(specs: list[JobSpec], storage: LocalStorage, settings: Settings) -> float:
    started = time.perf_counter()
    outcomes = await run_cyclegan_batch(specs, storage, settings)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if isinstance(o, Exception)]
    if failed:
        raise SystemExit(f"batch failed: {failed[0]}")
    return elapsed


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models_dir(Path(tmp) / "models")
        settings = Settings(storage_dir=Path(tmp) / "storage", models_dir=models, device=args.device)
        storage = LocalStorage(settings.storage_dir)
        specs = await make_specs(storage, args.jobs, args.size)
        await batched(specs[:1], storage, settings)  # warm-up: model load, allocator
        single, batch = [], []
        for _ in range(args.rounds):  # interleaved, so machine load hits both alike
            single.append(await one_at_a_time(specs, storage, settings))
            batch.append(await batched(specs, storage, settings))
    s, b = statistics.median(single), statistics.median(batch)
    print(f"device={args.device} jobs={args.jobs} size={args.size}px rounds={args.rounds}")
    print(f"one at a time: {s:.2f} s  ({args.jobs / s:.2f} jobs/s)")
    print(f"one batch:     {b:.2f} s  ({args.jobs / b:.2f} jobs/s)")
    print(f"throughput ratio batched/unbatched: {s / b:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    asyncio.run(main(parser.parse_args()))
