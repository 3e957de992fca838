"""What a message carries, and turning an image message into validated bytes.

Every wrong kind of input gets its own reply; nothing here changes the conversation state.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from enum import StrEnum

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from stylebot.imaging import ImageError, load_image, probe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class InputKind(StrEnum):
    photo = "photo"
    image_document = "image_document"
    moving = "moving"  # a GIF/animation or a video with a first-frame thumbnail: that frame is used
    other_document = "other_document"
    sticker = "sticker"
    video = "video"
    audio = "audio"
    text = "text"
    other = "other"


def _moving_thumbnail(message: Message) -> str | None:
    moving = message.animation or message.video or message.video_note
    thumbnail = moving.thumbnail if moving is not None else None
    return thumbnail.file_id if thumbnail is not None else None


def input_kind(message: Message) -> InputKind:
    if message.photo:
        return InputKind.photo
    if message.animation or message.video or message.video_note:
        # Telegram turns GIFs into MP4 animations; their thumbnail is the first frame.
        return InputKind.moving if _moving_thumbnail(message) else InputKind.video
    if message.document:
        mime = (message.document.mime_type or "").lower()
        name = (message.document.file_name or "").lower()
        if mime.startswith("image/") or name.endswith(IMAGE_EXTENSIONS):
            return InputKind.image_document
        if mime.startswith("video/"):
            return InputKind.video
        if mime.startswith("audio/"):
            return InputKind.audio
        return InputKind.other_document
    if message.sticker:
        return InputKind.sticker
    if message.voice or message.audio:
        return InputKind.audio
    if message.text:
        return InputKind.text
    return InputKind.other


def is_image(message: Message) -> bool:
    """Anything with a picture to use: photos, image files, and the first frame of a GIF or video."""
    return input_kind(message) in (InputKind.photo, InputKind.image_document, InputKind.moving)


def wrong_input_reply(kind: InputKind) -> str:
    """The specific reply for a message that is not an image."""
    if kind is InputKind.sticker:
        return _("That is a sticker. I need a photo: send one as a photo or as a file.")
    if kind is InputKind.video:
        return _(
            "Videos and GIFs: I use their first frame, but I could not get one from this file. "
            "Please send a photo."
        )
    if kind is InputKind.audio:
        return _("I can only work with images, not sound. Please send a photo.")
    if kind is InputKind.other_document:
        return _("This file is not an image. Please send a JPEG, PNG or WebP photo.")
    return _("I can only work with photos. Please send a photo.")


@dataclass(frozen=True)
class ImageRef:
    """A Telegram file that should be an image."""

    file_id: str
    file_size: int | None
    as_document: bool
    thumb_file_id: str | None
    moving: bool = False  # the first frame of a GIF or a video (its Telegram thumbnail)


def image_ref(message: Message) -> ImageRef | None:
    if input_kind(message) is InputKind.moving:
        frame = _moving_thumbnail(message)
        assert frame is not None
        return ImageRef(frame, None, False, frame, moving=True)
    if message.photo:
        largest = message.photo[-1]
        return ImageRef(largest.file_id, largest.file_size, False, largest.file_id)
    if message.document and is_image(message):
        doc = message.document
        thumb = doc.thumbnail.file_id if doc.thumbnail else None
        return ImageRef(doc.file_id, doc.file_size, True, thumb)
    return None


class BadImage(Exception):
    """An image message that cannot be used; ``str()`` is the user-facing, translated reply."""


def too_large_text(limit_bytes: int) -> str:
    return _("This file is too large: the limit is {mb} MB. Please send a smaller image.").format(
        mb=limit_bytes // 2**20
    )


def image_error_text(error: ImageError) -> str:
    code = error.code
    if code == "not_an_image":
        return _("This file is not an image I can read. Please send a JPEG, PNG or WebP photo.")
    if code == "truncated_image":
        return _("This image is damaged or incomplete. Please send it again or try another one.")
    if code == "image_too_small":
        return _("This image is too small; each side must be at least 16 px.")
    if code == "image_too_large":
        return _("This image is too large to process. Please send a smaller one.")
    return _("I could not read this image. Please try another one.")


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    first_frame: bool  # only the first frame of an animation or video is used
    long_side: int


async def download_image(bot: Bot, ref: ImageRef, *, max_bytes: int, max_pixels: int) -> Downloaded:
    """Download and check the bytes; raises :class:`BadImage` with the reply to send."""
    if ref.file_size is not None and ref.file_size > max_bytes:
        raise BadImage(too_large_text(max_bytes))
    buffer = io.BytesIO()
    try:
        await bot.download(ref.file_id, destination=buffer)
    except TelegramAPIError as exc:
        if "too big" in str(exc).lower():
            raise BadImage(too_large_text(max_bytes)) from exc
        raise BadImage(_("I could not download this file from Telegram. Please send it again.")) from exc
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise BadImage(too_large_text(max_bytes))
    try:
        image = await asyncio.to_thread(load_image, data, max_bytes=max_bytes, max_pixels=max_pixels)
        frames = probe(data).frames
    except ImageError as exc:
        raise BadImage(image_error_text(exc)) from exc
    return Downloaded(data, ref.moving or frames > 1, max(image.size))


def first_frame_text(count: int) -> str:
    """Said once per message (or album) when animations or videos were among the images."""
    return ngettext(
        "🎞 That was an animation or a video: I used its first frame.",
        "🎞 {n} of those were animations or videos: I used the first frame of each.",
        count,
    ).format(n=count)
