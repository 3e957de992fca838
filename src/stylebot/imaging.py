"""Image bytes in, validated upright RGB images out, and back to bytes.

This is the only module that opens image bytes. Everything that reaches the models went
through :func:`load_image`, so every other module can assume an RGB ``PIL.Image`` of sane size.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Only decoders we trust with hostile bytes; PIL would otherwise also try EPS (Ghostscript), etc.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MIN_SIDE = 16
DEFAULT_MAX_PIXELS = 50_000_000
MAX_OUTPUT_SIDE = 2048
JPEG_QUALITY = 95


class ImageError(ValueError):
    """Bad image input. ``code`` is stable for programs; ``str(err)`` is safe to show a user."""

    code = "bad_image"


class NotAnImageError(ImageError):
    code = "not_an_image"


class TruncatedImageError(ImageError):
    code = "truncated_image"


class ImageTooSmallError(ImageError):
    code = "image_too_small"


class ImageTooLargeError(ImageError):
    """Too many pixels (including decompression bombs) or too many bytes."""

    code = "image_too_large"


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    frames: int


def _open(data: bytes) -> Image.Image:
    if not data:
        raise NotAnImageError("The file is empty, not an image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("The image has far too many pixels to process.") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError(
            "This file is not an image I can read (JPEG, PNG, WebP, GIF, BMP or TIFF)."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise TruncatedImageError("The image file is damaged or incomplete.") from exc


def probe(data: bytes, *, max_bytes: int | None = None) -> ImageInfo:
    """Read only the header: format, size and frame count, without decoding pixels."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(
            f"The file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB."
        )
    img = _open(data)
    return ImageInfo(img.width, img.height, img.format or "?", getattr(img, "n_frames", 1))


def load_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_bytes: int | None = None,
) -> Image.Image:
    """Decode untrusted bytes into an upright 8-bit RGB image.

    Checks the pixel count from the header before decoding (decompression bombs), takes the
    first frame of animations, applies EXIF orientation, and flattens any mode onto RGB
    (alpha onto white). Raises a subclass of :class:`ImageError` with a user-safe message.
    """
    info = probe(data, max_bytes=max_bytes)
    if info.width * info.height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {info.width}×{info.height}; the limit is {max_pixels / 1e6:.0f} megapixels."
        )
    img = _open(data)
    try:
        img.seek(0)
        img.load()
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise ImageTooLargeError("The image has far too many pixels to process.") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise TruncatedImageError("The image file is damaged or incomplete.") from exc
    if min(img.size) < min_side:
        raise ImageTooSmallError(
            f"The image is {img.width}×{img.height}; each side must be at least {min_side} px."
        )
    # A broken EXIF block must not reject an otherwise good photo.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def load_image_file(path: str | Path, **limits: int) -> Image.Image:
    return load_image(Path(path).read_bytes(), **limits)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency is composited onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            peak = max(float(arr.max(initial=0)), 1.0) if arr.max(initial=0) > 1 else 1.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    has_alpha = (
        mode in ("RGBA", "LA", "PA", "La", "RGBa")
        or (mode == "P" and "transparency" in img.info)
        or (mode in ("L", "RGB") and "transparency" in img.info)
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_long_side(img: Image.Image, size: int, *, upscale: bool = False) -> Image.Image:
    """Scale so the longer side is ``size`` px, keeping the aspect ratio."""
    long_side = max(img.size)
    if long_side == size or (long_side < size and not upscale):
        return img
    scale = size / long_side
    new_size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_image(img: Image.Image, fmt: str = "JPEG", *, quality: int = JPEG_QUALITY) -> bytes:
    """Encode RGB to JPEG (quality 95, 4:4:4) or PNG bytes."""
    fmt = fmt.upper().replace("JPG", "JPEG")
    buf = io.BytesIO()
    if fmt == "JPEG":
        to_rgb(img).save(buf, "JPEG", quality=quality, subsampling=0, optimize=True)
    elif fmt == "PNG":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        raise ValueError(f"unsupported output format {fmt!r}; use JPEG or PNG")
    return buf.getvalue()


def format_for_path(path: str | Path) -> str:
    """Output format from a file name: ``.png`` → PNG, anything else → JPEG."""
    return "PNG" if Path(path).suffix.lower() == ".png" else "JPEG"


def save_image(img: Image.Image, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half an image."""
    path = Path(path)
    data = encode_image(img, format_for_path(path))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
