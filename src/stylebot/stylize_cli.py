"""Handlers of ``stylebot stylize`` and ``stylebot models`` (arguments are defined in cli.py)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from stylebot.ml.nst import NSTProgress

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_WEIGHTS = 3
EXIT_CANCELLED = 130
MAX_STYLES = 5
MAX_SIZE = 2048


def _fail(message: str, code: int) -> int:
    print(f"stylebot: {message}", file=sys.stderr)
    return code


def parse_style_weights(text: str | None, n_styles: int) -> list[float] | None:
    """``"2,1"`` → ``[2.0, 1.0]``; raises ValueError with a message for the user."""
    if text is None:
        return None
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--style-weights must be numbers separated by commas, got {text!r}") from None
    if len(weights) != n_styles:
        raise ValueError(f"--style-weights has {len(weights)} values for {n_styles} style images")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("--style-weights must be non-negative and not all zero")
    return weights


def stylize_command(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings
    from stylebot.imaging import ImageError, load_image_file, resize_long_side, save_image
    from stylebot.ml.device import pick_device
    from stylebot.ml.nst import Cancelled
    from stylebot.ml.weights import WeightsError

    settings = get_settings()
    limits = {"max_pixels": settings.max_input_pixels, "max_bytes": settings.max_upload_bytes}
    size: int | None = args.size
    if size is not None and not 16 <= size <= MAX_SIZE:
        return _fail(f"--size must be between 16 and {MAX_SIZE}", EXIT_BAD_INPUT)
    if not 0.1 <= args.strength <= 10:
        return _fail("--strength must be between 0.1 and 10", EXIT_BAD_INPUT)
    styles_paths: list[Path] = args.style or []
    if len(styles_paths) > MAX_STYLES:
        return _fail(f"at most {MAX_STYLES} style images", EXIT_BAD_INPUT)
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return _fail("the output must end in .jpg, .jpeg or .png", EXIT_BAD_INPUT)
    try:
        weights = parse_style_weights(args.style_weights, len(styles_paths)) if styles_paths else None
        content = load_image_file(args.content, **limits)
        styles = [load_image_file(p, **limits) for p in styles_paths]
    except (ImageError, ValueError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        return _fail(f"cannot read {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    fast_dev_run = bool(args.fast_dev_run or settings.default_fast_dev_run)
    try:
        if args.model:
            if size is not None:
                content = resize_long_side(content, size, upscale=False)
            elif max(content.size) > MAX_SIZE:
                content = resize_long_side(content, MAX_SIZE)
            result = _run_cyclegan(args.model, content, device, fast_dev_run)
        else:
            result = _run_nst(args, content, styles, weights, size or 512, device, fast_dev_run)
    except WeightsError as exc:
        return _fail(str(exc), EXIT_WEIGHTS)
    except Cancelled:
        return _fail("cancelled", EXIT_CANCELLED)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_image(result, args.output)
    print(f"saved {args.output} ({result.width}×{result.height})")
    return 0


def _run_cyclegan(name: str, content: Image.Image, device: torch.device, fast_dev_run: bool) -> Image.Image:
    from tqdm import tqdm

    from stylebot.ml.cyclegan import load_generator, translate

    generator = load_generator(name, device=device)
    with tqdm(total=1, desc=name, unit="tile", file=sys.stderr) as bar:

        def on_progress(p: NSTProgress) -> None:
            bar.total = p.total
            bar.n = p.iteration
            bar.refresh()

        return translate(generator, content, max_side=64 if fast_dev_run else None, on_progress=on_progress)


def _run_nst(
    args: argparse.Namespace,
    content: Image.Image,
    styles: Sequence[Image.Image],
    weights: list[float] | None,
    size: int,
    device: torch.device,
    fast_dev_run: bool,
) -> Image.Image:
    from tqdm import tqdm

    from stylebot.ml.nst import NSTOptions, stylize

    options = NSTOptions(
        size=size,
        preset=args.preset,
        strength=args.strength,
        style_weights=weights,
        preserve_colors=args.preserve_colors,
        seed=args.seed,
        fast_dev_run=fast_dev_run,
    )
    backbone = args.backbone or None
    with tqdm(total=1, desc="stylize", unit="it", file=sys.stderr, dynamic_ncols=True) as bar:

        def on_progress(p: NSTProgress) -> None:
            bar.total = p.total
            bar.n = p.iteration
            eta = f"{p.eta_s:.0f}s" if p.eta_s is not None else "?"
            style, content_loss = p.losses.get("style", 0.0), p.losses.get("content", 0.0)
            bar.set_postfix_str(f"{p.stage} style={style:.3g} content={content_loss:.3g} eta={eta}")

        result = stylize(content, styles, options, backbone=backbone, device=device, on_progress=on_progress)
    log.info("stylised in %.1f s, %d iterations, losses %s", result.seconds, result.iterations, result.losses)
    return result.image


def models_command(args: argparse.Namespace) -> int:
    from stylebot.ml import weights

    try:
        if args.models_cmd == "list":
            for info in weights.list_models():
                size = f"{info.size_bytes / 1e6:6.1f} MB" if info.size_bytes else "      ?   "
                state = "installed" if info.installed else "missing  "
                print(f"{info.name:24} {info.kind:9} {state} {size}  {info.title}")
                print(f"{'':24} source: {info.source}")
                if info.reason:
                    print(f"{'':24} {info.reason}")
            return 0
        if args.models_cmd == "pull":
            installed = weights.pull(args.names or None)
            print("installed: " + ", ".join(installed))
            return 0
        if args.models_cmd == "verify":
            results = weights.verify(args.names or None)
            if not results:
                print("no models installed; run `stylebot models pull`")
                return 1
            for r in results:
                print(f"{r.name:24} {'ok  ' if r.ok else 'FAIL'} {r.message}")
            return 0 if all(r.ok for r in results) else 1
        if args.models_cmd == "import":
            path = weights.import_weights(args.name, args.path)
            print(f"installed {args.name} at {path}")
            return 0
    except weights.WeightsError as exc:
        return _fail(str(exc), EXIT_WEIGHTS)
    return _fail(f"unknown models command {args.models_cmd!r}", EXIT_BAD_INPUT)
