"""``stylebot stylize``: restyle a photo on the command line, with a progress bar."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stylebot.cli.common import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_WEIGHTS, fail
from stylebot.jobs.spec import MAX_SIZE, MAX_STYLES, PRETRAINED_MODELS

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from stylebot.ml.nst import NSTProgress

log = logging.getLogger(__name__)



def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize",
        help="restyle a photo with style images (NST) or a pretrained CycleGAN model",
        description="Examples: stylebot stylize photo.jpg -s starry.jpg -o out.jpg ; "
        "stylebot stylize photo.jpg --model style_monet -o out.jpg",
    )
    p.add_argument("content", type=Path, help="the photo to restyle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-s", "--style", type=Path, action="append", help="style image (repeatable, 1-5)")
    src.add_argument("--model", choices=PRETRAINED_MODELS, help="pretrained CycleGAN style")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (.jpg or .png)")
    p.add_argument("--style-weights", help="relative weight per style image, e.g. 2,1")
    p.add_argument("--strength", type=float, default=1.0, help="0.1-10: style vs content (default 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    p.add_argument(
        "--size", type=int, default=None,
        help=f"long side of the result, up to {MAX_SIZE} (default: 512 for style images; "
        "the photo's own size for --model)",
    )
    p.add_argument("--preset", choices=("fast", "balanced", "quality"), default="balanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--backbone", choices=("auto", "vgg19", "vgg16"), default=None)
    p.add_argument("--fast-dev-run", action="store_true", help="tiny and quick, for debugging")
    p.set_defaults(handler=handle)


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


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings
    from stylebot.imaging import ImageError, load_image_file, resize_long_side, save_image
    from stylebot.ml.device import pick_device
    from stylebot.ml.nst import Cancelled
    from stylebot.ml.weights import WeightsError

    settings = get_settings()
    limits = {"max_pixels": settings.max_input_pixels, "max_bytes": settings.max_upload_bytes}
    size: int | None = args.size
    if size is not None and not 16 <= size <= MAX_SIZE:
        return fail(f"--size must be between 16 and {MAX_SIZE}", EXIT_BAD_INPUT)
    if not 0.1 <= args.strength <= 10:
        return fail("--strength must be between 0.1 and 10", EXIT_BAD_INPUT)
    styles_paths: list[Path] = args.style or []
    if len(styles_paths) > MAX_STYLES:
        return fail(f"at most {MAX_STYLES} style images", EXIT_BAD_INPUT)
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return fail("the output must end in .jpg, .jpeg or .png", EXIT_BAD_INPUT)
    try:
        weights = parse_style_weights(args.style_weights, len(styles_paths)) if styles_paths else None
        content = load_image_file(args.content, **limits)
        styles = [load_image_file(p, **limits) for p in styles_paths]
    except (ImageError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        return fail(f"cannot read {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
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
        return fail(str(exc), EXIT_WEIGHTS)
    except Cancelled:
        return fail("cancelled", EXIT_CANCELLED)
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
