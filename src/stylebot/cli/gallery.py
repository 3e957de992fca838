"""``stylebot gallery sheet PHOTO -o sheet.png``: the photo in every available pretrained style.

The sheet shows numbered 128-px tiles: the 26 gallery styles (0-25, for ``--gallery N``) and each
installed CycleGAN model (26 + its place in the list, see ``stylebot.jobs.spec``). The bot shows
the same sheet to users.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stylebot.cli.common import EXIT_BAD_INPUT, EXIT_WEIGHTS, ensure_models, fail
from stylebot.ml.names import GALLERY_MODEL


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="the gallery of pretrained styles")
    gsub = p.add_subparsers(dest="gallery_cmd", required=True, metavar="{sheet}")
    sheet = gsub.add_parser(
        "sheet",
        help="render the photo in every available pretrained style as numbered tiles",
        description="Example: stylebot gallery sheet photo.jpg -o sheet.png",
    )
    sheet.add_argument("photo", type=Path)
    sheet.add_argument("-o", "--output", type=Path, required=True, help="the sheet (.png or .jpg)")
    sheet.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings
    from stylebot.imaging import ImageError, load_image_file, save_image
    from stylebot.jobs.pipeline import render_sheet
    from stylebot.ml.device import pick_device
    from stylebot.ml.weights import WeightsError

    settings = get_settings()
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return fail("the output must end in .png, .jpg or .jpeg", EXIT_BAD_INPUT)
    try:
        photo = load_image_file(
            args.photo, max_pixels=settings.max_input_pixels, max_bytes=settings.max_upload_bytes
        )
        device = str(pick_device(args.device))
    except (ImageError, ValueError, RuntimeError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        return fail(f"cannot read {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
    try:
        ensure_models([GALLERY_MODEL], settings)
        started = time.monotonic()
        sheet = render_sheet(photo, settings.models_dir, device)
    except WeightsError as exc:
        return fail(str(exc), EXIT_WEIGHTS)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_image(sheet, args.output)
    print(
        f"saved {args.output} ({sheet.width}×{sheet.height}) in {time.monotonic() - started:.1f} s",
        file=sys.stdout,
    )
    return 0
