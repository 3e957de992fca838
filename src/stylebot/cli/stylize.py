"""``stylebot stylize``: restyle a photo on the command line, with a progress bar.

Four ways: style images with a preset (``instant``: the feed-forward network only, about a
second; ``fast|balanced|quality``: Gatys optimisation refining the instant result), a gallery
style or blend (``--gallery 7`` or ``--gallery 3:0.5,12:0.5``), or a CycleGAN model. What a
way needs is fetched on first use. Limits come from ``stylebot.jobs.spec``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylebot.cli.common import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_WEIGHTS, ensure_models, fail
from stylebot.jobs.spec import (
    DEFAULT_SIZE,
    DEFAULT_STRENGTH,
    MAX_SIZE,
    MAX_STRENGTH,
    MAX_STYLES,
    MIN_SIZE,
    MIN_STRENGTH,
    PRETRAINED_MODELS,
    Preset,
    parse_gallery,
)
from stylebot.ml.names import FEEDFORWARD_MODELS, GALLERY_MODEL, GALLERY_STYLES

if TYPE_CHECKING:
    from PIL import Image
    from tqdm import tqdm

    from stylebot.config import Settings
    from stylebot.ml.runtime import Progress

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize",
        help="restyle a photo with style images, a gallery style or a pretrained CycleGAN model",
        description="Examples: stylebot stylize photo.jpg -s starry.jpg -o out.jpg ; "
        "stylebot stylize photo.jpg -s starry.jpg --preset instant -o out.jpg ; "
        "stylebot stylize photo.jpg --gallery 3:0.5,12:0.5 -o out.jpg ; "
        "stylebot stylize photo.jpg --model style_monet -o out.jpg",
    )
    p.add_argument("content", type=Path, help="the photo to restyle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "-s", "--style", type=Path, action="append", help=f"style image (repeatable, 1-{MAX_STYLES})"
    )
    src.add_argument(
        "--gallery",
        metavar="N|N:W,...",
        help=f"a gallery style 0-{GALLERY_STYLES - 1} or a blend such as 3:0.5,12:0.5 "
        "(see `stylebot gallery sheet`)",
    )
    src.add_argument("--model", choices=PRETRAINED_MODELS, help="pretrained CycleGAN style")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (.jpg or .png)")
    p.add_argument("--style-weights", help="relative weight per style image, e.g. 2,1 (1,0: the first only)")
    p.add_argument(
        "--strength",
        type=float,
        default=DEFAULT_STRENGTH,
        help=f"{MIN_STRENGTH:g}-{MAX_STRENGTH:g}: how much style (default {DEFAULT_STRENGTH:g}; "
        "0.1 leaves the photo nearly unchanged)",
    )
    p.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"long side of the result, {MIN_SIZE}-{MAX_SIZE} (default: {DEFAULT_SIZE} for style images "
        "and gallery styles; the photo's own size for --model)",
    )
    p.add_argument(
        "--preset",
        choices=[p.value for p in Preset],
        default=Preset.balanced.value,
        help="instant: the feed-forward network only (about a second); fast|balanced|quality: "
        "refine the instant result by optimisation (default balanced)",
    )
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
    from stylebot.ml.runtime import Cancelled
    from stylebot.ml.weights import WeightsError

    settings = get_settings()
    limits = {"max_pixels": settings.max_input_pixels, "max_bytes": settings.max_upload_bytes}
    size: int | None = args.size
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        return fail(f"--size must be between {MIN_SIZE} and {MAX_SIZE}", EXIT_BAD_INPUT)
    if not (math.isfinite(args.strength) and MIN_STRENGTH <= args.strength <= MAX_STRENGTH):
        return fail(f"--strength must be between {MIN_STRENGTH:g} and {MAX_STRENGTH:g}", EXIT_BAD_INPUT)
    styles_paths: list[Path] = args.style or []
    if len(styles_paths) > MAX_STYLES:
        return fail(f"at most {MAX_STYLES} style images", EXIT_BAD_INPUT)
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return fail("the output must end in .jpg, .jpeg or .png", EXIT_BAD_INPUT)
    try:
        weights = parse_style_weights(args.style_weights, len(styles_paths)) if styles_paths else None
        gallery = parse_gallery(args.gallery) if args.gallery is not None else None
        content = load_image_file(args.content, **limits)
        styles = [load_image_file(p, **limits) for p in styles_paths]
    except (ImageError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        return fail(f"cannot read {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
    try:
        device = str(pick_device(args.device))
    except (RuntimeError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    fast_dev_run = bool(args.fast_dev_run or settings.default_fast_dev_run)
    try:
        if args.model:
            ensure_models([args.model], settings)
            if size is not None:
                content = resize_long_side(content, size, upscale=False)
            elif max(content.size) > MAX_SIZE:
                content = resize_long_side(content, MAX_SIZE)
            result = _run_cyclegan(args.model, content, settings, device, fast_dev_run)
        elif gallery is not None:
            ensure_models([GALLERY_MODEL], settings)
            result = _run_gallery(args, gallery, content, settings, device, _size(size, fast_dev_run))
        elif args.preset == Preset.instant:
            ensure_models(list(FEEDFORWARD_MODELS[:2]), settings)
            result = _run_instant(args, content, styles, weights, settings, device, _size(size, fast_dev_run))
        else:
            ensure_models([*FEEDFORWARD_MODELS[:2], "vgg19"], settings)
            result = _run_refined(
                args, content, styles, weights, settings, device, size or DEFAULT_SIZE, fast_dev_run
            )
    except WeightsError as exc:
        return fail(str(exc), EXIT_WEIGHTS)
    except Cancelled:
        return fail("cancelled", EXIT_CANCELLED)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_image(result, args.output)
    print(f"saved {args.output} ({result.width}×{result.height})")
    return 0


def _size(size: int | None, fast_dev_run: bool) -> int:
    from stylebot.jobs.pipeline import FAST_DEV_SIZE

    size = size or DEFAULT_SIZE
    return min(size, FAST_DEV_SIZE) if fast_dev_run else size


def _bar(desc: str, unit: str) -> tqdm[Any]:
    from tqdm import tqdm

    return tqdm(total=1, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _run_cyclegan(
    name: str, content: Image.Image, settings: Settings, device: str, fast_dev_run: bool
) -> Image.Image:
    from stylebot.ml.cyclegan import translate
    from stylebot.ml.weights import load_generator

    generator = load_generator(name, models_dir=settings.models_dir, device=device)
    with _bar(name, "tile") as bar:

        def on_progress(p: Progress) -> None:
            bar.total = p.total
            bar.n = p.iteration
            bar.refresh()

        return translate(generator, content, max_side=64 if fast_dev_run else None, on_progress=on_progress)


def _run_gallery(
    args: argparse.Namespace,
    gallery: dict[int, float],
    content: Image.Image,
    settings: Settings,
    device: str,
    size: int,
) -> Image.Image:
    from stylebot.jobs.pipeline import gallery_image

    blend = ",".join(f"{i}:{w:g}" for i, w in gallery.items())
    with _bar(f"gallery {blend}", "pass") as bar:

        def advance(p: Progress) -> None:
            bar.update(1)

        return gallery_image(
            content,
            gallery,
            models_dir=settings.models_dir,
            device=device,
            size=size,
            strength=args.strength,
            preserve_colors=args.preserve_colors,
            on_progress=advance,
        )


def _run_instant(
    args: argparse.Namespace,
    content: Image.Image,
    styles: Sequence[Image.Image],
    weights: list[float] | None,
    settings: Settings,
    device: str,
    size: int,
) -> Image.Image:
    from stylebot.jobs.pipeline import instant_image

    with _bar("instant", "pass") as bar:

        def advance(p: Progress) -> None:
            bar.update(1)

        return instant_image(
            content,
            styles,
            models_dir=settings.models_dir,
            device=device,
            size=size,
            strength=args.strength,
            style_weights=weights,
            preserve_colors=args.preserve_colors,
            on_progress=advance,
        )


def _run_refined(
    args: argparse.Namespace,
    content: Image.Image,
    styles: Sequence[Image.Image],
    weights: list[float] | None,
    settings: Settings,
    device: str,
    size: int,
    fast_dev_run: bool,
) -> Image.Image:
    from stylebot.jobs.pipeline import refine_image

    with _bar("stylize", "it") as bar:

        def on_progress(p: Progress) -> None:
            bar.total = p.total
            bar.n = p.iteration
            eta = f"{p.eta_s:.0f}s" if p.eta_s is not None else "?"
            if p.losses:
                style, content_loss = p.losses.get("style", 0.0), p.losses.get("content", 0.0)
                bar.set_postfix_str(f"{p.stage} style={style:.3g} content={content_loss:.3g} eta={eta}")
            else:
                bar.set_postfix_str(f"{p.stage} eta={eta}")

        result = refine_image(
            content,
            styles,
            models_dir=settings.models_dir,
            device=device,
            backbone=args.backbone or settings.backbone,
            size=size,
            preset=args.preset,
            strength=args.strength,
            style_weights=weights,
            preserve_colors=args.preserve_colors,
            seed=args.seed,
            fast_dev_run=fast_dev_run,
            on_progress=on_progress,
        )
    log.info("stylised in %.1f s, losses %s", result.seconds, result.losses)
    return result.image
