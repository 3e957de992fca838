"""How to spend a refinement budget when starting from the instant result (a tuning run, not a test).

One photo/style pair at one size: the instant result's total objective, then cold presets (from
the photo) and warm-start budgets (iterations per pyramid level, coarse first) with their work
(full-size evaluations) and final total objective (the project's objective at full size).

    .venv/bin/python benchmarks/nst_warm_budgets.py --size 256 --models-dir .cache/models
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from PIL import Image

from stylebot.assets import sample_path
from stylebot.ml import feedforward as ff
from stylebot.ml import nst
from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM
from stylebot.ml.weights import choose_backbone, load_backbone, load_feedforward

RUNS: tuple[tuple[str, str | tuple[int, ...]], ...] = (
    ("cold fast", "fast"),
    ("warm 0/15/15", (0, 15, 15)),
    ("warm 0/0/20", (0, 0, 20)),
    ("warm 10/10/20", (10, 10, 20)),
    ("warm 0/0/30", (0, 0, 30)),
    ("warm 0/10/40", (0, 10, 40)),
    ("cold balanced", "balanced"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--content", default="chelsea.jpg")
    parser.add_argument("--style", default="texture_brick.jpg")
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args()
    models, size = args.models_dir, args.size
    net = load_backbone(choose_backbone("auto", models), models_dir=models, device="cpu")
    predictor = load_feedforward(ARBITRARY_PREDICT, models_dir=models)
    transformer = load_feedforward(ARBITRARY_TRANSFORM, models_dir=models)
    photo = Image.open(sample_path(args.content)).convert("RGB")
    style = Image.open(sample_path(args.style)).convert("RGB")

    def total(img: Image.Image) -> dict[str, float]:
        options = nst.NSTOptions(size=size)
        content_t = nst.to_tensor(nst._fit_long_side(photo, size))
        grams = nst.mixed_style_grams(
            net, [nst.to_tensor(nst._fit_long_side(style, size))], [1.0], options.style_layers
        )
        with torch.no_grad():
            return nst._Objective(net, content_t, grams, options)(nst.to_tensor(img))[1]

    start = ff.instant(predictor, transformer, nst._fit_long_side(photo, size), [style])
    print(f"{args.content} + {args.style} at {size} px; instant: {total(start)['total']:.4f}")
    for name, budget in RUNS:
        if isinstance(budget, str):
            options, begin = nst.NSTOptions(size=size, preset=budget), None
        else:
            nst.PRESETS["tuning"] = dataclasses.replace(
                nst.PRESETS["balanced"], warm_iterations=budget, tolerance=0.0
            )
            options, begin = nst.NSTOptions(size=size, preset="tuning"), start
        t0 = time.perf_counter()
        result = nst.stylize(photo, [style], options, backbone=net, start=begin)
        parts = total(result.image)
        seconds = time.perf_counter() - t0
        print(
            f"{name:15} work {result.work:6.1f}  {seconds:5.0f} s  total {parts['total']:.4f} "
            f"(content {parts['content']:.4f}, style {parts['style']:.4f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
