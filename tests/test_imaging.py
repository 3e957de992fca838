"""imaging.py: every bad-input kind gets its typed error; odd modes come out as upright RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stylebot import imaging
from stylebot.assets import sample_path
from stylebot.imaging import (
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    TruncatedImageError,
    encode_image,
    load_image,
    resize_long_side,
)


def _png(img: Image.Image, **save_args: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save_args)
    return buf.getvalue()


def _jpeg(img: Image.Image, **save_args: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **save_args)
    return buf.getvalue()


def test_sample_photo_loads_as_rgb() -> None:
    img = load_image(sample_path("chelsea.jpg").read_bytes())
    assert img.mode == "RGB"
    assert img.size == (451, 300)


# --- hostile and broken input ---------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, I am a text file named photo.jpg",
        b"%PDF-1.4\n1 0 obj<<>>endobj\n",
        b"\x00" * 1024,
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS would run Ghostscript: refused
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
    ],
    ids=["empty", "text", "pdf", "zeros", "eps", "svg"],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(NotAnImageError) as err:
        load_image(data)
    assert err.value.code == "not_an_image"
    assert "image" in str(err.value).lower()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(fmt: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    data = _jpeg(img) if fmt == "JPEG" else _png(img)
    with pytest.raises(TruncatedImageError) as err:
        load_image(data[: len(data) // 2])
    assert err.value.code == "truncated_image"


def test_tiny_images_are_refused() -> None:
    with pytest.raises(ImageTooSmallError) as err:
        load_image(_png(Image.new("RGB", (15, 200))))
    assert "16" in str(err.value)
    assert load_image(_png(Image.new("RGB", (16, 16)))).size == (16, 16)


def test_pixel_cap_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError) as err:
        load_image(_png(Image.new("RGB", (300, 300))), max_pixels=80_000)
    assert err.value.code == "image_too_large"


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge grayscale image, with a tiny compressed body."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * 64  # a few rows only: decoding would have to invent the rest
    idat = zlib.compress(row * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_without_decoding() -> None:
    bomb = _png_bomb(60_000, 60_000)  # 3.6 gigapixels in a few hundred bytes
    assert len(bomb) < 1000
    with pytest.raises(ImageTooLargeError):
        load_image(bomb)


def test_byte_cap() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _png(Image.fromarray(noise))
    assert len(data) > 10_000
    with pytest.raises(ImageTooLargeError) as err:
        load_image(data, max_bytes=10_000)
    assert "MB" in str(err.value)


# --- odd modes -------------------------------------------------------------------------------
def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    img = load_image(_jpeg(cmyk, quality=95))
    assert img.mode == "RGB"
    r, g, b = img.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    arr = np.full((32, 32), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    img = load_image(_png(Image.fromarray(arr)))
    assert img.mode == "RGB"
    value = img.getpixel((0, 0))[0]
    assert 120 <= value <= 135  # 32768/65535*255 ≈ 128, not clipped to 255


def test_palette_with_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 16, 32))  # left half opaque blue
    pal = rgba.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = pal.getpixel((31, 0))
    img = load_image(_png(pal, transparency=pal.info["transparency"]))
    assert img.getpixel((31, 16)) == (255, 255, 255)
    assert img.getpixel((2, 16))[2] > 200


def test_grayscale_and_la_modes() -> None:
    assert load_image(_png(Image.new("L", (20, 20), 77))).getpixel((1, 1)) == (77, 77, 77)
    la = Image.new("LA", (20, 20), (0, 0))
    assert load_image(_png(la)).getpixel((1, 1)) == (255, 255, 255)


def test_animated_gif_takes_first_frame() -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = load_image(buf.getvalue())
    r, g, b = img.getpixel((12, 12))
    assert r > 200 and g < 50 and b < 50


def test_exif_rotated_photo_comes_out_upright() -> None:
    # Stored sideways (landscape 64x32, red on the left), with EXIF orientation 6 = "rotate 90 CW".
    stored = Image.new("RGB", (64, 32), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 32, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = load_image(_jpeg(stored, exif=exif.tobytes(), quality=95))
    assert img.size == (32, 64)  # portrait once upright
    top, bottom = img.getpixel((16, 4)), img.getpixel((16, 60))
    assert top[0] > 200 and top[2] < 60  # the red half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_broken_exif_does_not_reject_a_good_photo() -> None:
    stored = Image.new("RGB", (40, 30), (10, 200, 10))
    img = load_image(_jpeg(stored, exif=b"Exif\x00\x00garbage-exif-block"))
    assert img.size == (40, 30)


# --- resize and encode -----------------------------------------------------------------------
def test_resize_long_side_keeps_aspect_and_never_upscales_by_default() -> None:
    img = Image.new("RGB", (400, 200))
    assert resize_long_side(img, 100).size == (100, 50)
    assert resize_long_side(img, 800).size == (400, 200)
    assert resize_long_side(img, 800, upscale=True).size == (800, 400)


def test_encode_round_trip() -> None:
    img = load_image(sample_path("coffee.jpg").read_bytes())
    jpeg = encode_image(img, "jpg")
    png = encode_image(img, "PNG")
    assert jpeg[:3] == b"\xff\xd8\xff" and png[:8] == b"\x89PNG\r\n\x1a\n"
    back = np.asarray(load_image(jpeg), dtype=np.float32)
    assert np.abs(back - np.asarray(img, dtype=np.float32)).mean() < 3.0  # quality 95
    with pytest.raises(ValueError):
        encode_image(img, "GIF")


def test_save_image_is_atomic(tmp_path) -> None:
    out = tmp_path / "result.png"
    imaging.save_image(Image.new("RGB", (20, 20), (1, 2, 3)), out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]
