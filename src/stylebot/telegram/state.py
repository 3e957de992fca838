"""The emulator's world, in memory: bots, users, private chats, messages, files and pending updates.

Everything here runs on the server's event loop; nothing is shared across threads. Chats are keyed by
``(bot_id, user_id)`` and a private chat's id is the user's id, as in Telegram. Each chat keeps a
version number that grows with every new, edited or deleted message, so user-side clients can wait for
a change (long poll or server-sent events) instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import mimetypes
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylebot.imaging import ImageError, encode_image, load_image, probe, resize_long_side
from stylebot.telegram.errors import ApiError, bad_request

PHOTO_BOXES = (90, 320, 800, 1280)  # Telegram's s, m, x, y variants; the original (≤ 2560) comes last
MAX_PHOTO_SIDE = 2560
DOWNLOAD_LIMIT = 20 * 2**20
PHOTO_UPLOAD_LIMIT = 10 * 2**20
FILE_UPLOAD_LIMIT = 50 * 2**20
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "my_chat_member",
    "chat_member",
)
DEFAULT_UPDATES = tuple(t for t in UPDATE_TYPES if t != "chat_member")


@dataclass(frozen=True)
class FloodLimit:
    """A token bucket per chat: ``burst`` messages at once, refilled at ``per_second``."""

    per_second: float = 1.0
    burst: int = 20


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    path: Path
    file_path: str
    size: int
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width,
            "height": self.height,
            "file_size": self.size,
        }

    def as_file(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
            "file_path": self.file_path,
        }


@dataclass
class Webhook:
    url: str
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class CallbackQuery:
    id: str
    chat_key: tuple[int, int]
    message_id: int
    data: str
    created: float
    answer: dict[str, Any] | None = None


@dataclass
class Bot:
    id: int
    token: str
    first_name: str
    username: str
    pending: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    allowed_updates: list[str] | None = None
    webhook: Webhook | None = None
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    callbacks: dict[str, CallbackQuery] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poll_generation: int = 0
    webhook_task: asyncio.Task | None = None

    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    def me(self) -> dict[str, Any]:
        return {
            **self.user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def accepts(self, update_type: str) -> bool:
        allowed = self.webhook.allowed_updates if self.webhook and self.webhook.allowed_updates else None
        allowed = allowed or self.allowed_updates or list(DEFAULT_UPDATES)
        return update_type in allowed


@dataclass
class Chat:
    bot_id: int
    user: dict[str, Any]
    messages: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    next_message_id: int = 1
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: set[asyncio.Queue] = field(default_factory=set)
    reply_keyboard: dict[str, Any] | None = None
    blocked: bool = False
    started: bool = False  # the user has written to the bot, so the bot may write back
    flood_tokens: float = 0.0
    flood_stamp: float = 0.0
    last_action: dict[str, Any] | None = None

    @property
    def id(self) -> int:
        return int(self.user["id"])

    def as_chat(self) -> dict[str, Any]:
        chat = {"id": self.id, "type": "private", "first_name": self.user["first_name"]}
        for key in ("last_name", "username"):
            if self.user.get(key):
                chat[key] = self.user[key]
        return chat

    @property
    def chat_instance(self) -> str:
        return str(int.from_bytes(hashlib.sha256(f"{self.bot_id}:{self.id}".encode()).digest()[:7], "big"))


class World:
    """All state of one emulator; :meth:`reset` empties it between tests."""

    def __init__(self, files_dir: Path, *, flood_limit: FloodLimit | None = None) -> None:
        self.files_dir = files_dir
        self.flood_limit = flood_limit
        self.flood_refusals = 0  # how many sends got a 429 (for tests that check a bot keeps the pace)
        self.bots: dict[int, Bot] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.chats: dict[tuple[int, int], Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        # Any file_id a bot may resend -> ("photo", [PhotoSize...]) | ("document"|"sticker", {...}).
        self.media: dict[str, tuple[str, Any]] = {}
        self._file_counter = 0
        self._next_user_id = 1_000_001
        self.files_dir.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        for bot in self.bots.values():
            if bot.webhook_task:
                bot.webhook_task.cancel()
            bot.pending.clear()
            bot.webhook = None
            bot.allowed_updates = None
            bot.commands.clear()
            bot.callbacks.clear()
            bot.requests.clear()
            bot.poll_generation += 1
            pulse(bot)
        for chat in self.chats.values():
            self.publish(chat, "reset", {})
        self.users.clear()
        self.chats.clear()
        for stored in self.files.values():
            stored.path.unlink(missing_ok=True)
        self.files.clear()
        self.files_by_path.clear()
        self.media.clear()

    # --- bots and users -----------------------------------------------------------------------
    def bot_for_token(self, token: str) -> Bot:
        bot_id = int(token.split(":", 1)[0])
        bot = self.bots.get(bot_id)
        if bot is None or bot.token != token:
            bot = Bot(id=bot_id, token=token, first_name="Local Bot", username=f"local{bot_id}_bot")
            self.bots[bot_id] = bot
        return bot

    def upsert_user(self, fields: dict[str, Any]) -> dict[str, Any]:
        user_id = fields.get("id")
        if user_id is None:
            user_id = self._next_user_id
            while user_id in self.users:
                user_id += 1
            self._next_user_id = user_id + 1
        user_id = int(user_id)
        if not 0 < user_id < 2**52:
            raise bad_request("user id must be a positive integer")
        first_name = str(fields.get("first_name") or "").strip()[:64] or "User"
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        for key in ("last_name", "username", "language_code"):
            value = fields.get(key)
            if value:
                user[key] = str(value)[:64]
        self.users[user_id] = user
        for chat in self.chats.values():
            if chat.id == user_id:
                chat.user = user
        return user

    def chat(self, bot_id: int, user_id: int) -> Chat:
        """The user's side of a private chat, created on first look (the bot sees it once started)."""
        key = (bot_id, user_id)
        chat = self.chats.get(key)
        if chat is None:
            user = self.users.get(user_id)
            if user is None:
                raise ApiError(404, "Not Found: no such user; create it with POST /api/users")
            chat = self.chats[key] = Chat(bot_id=bot_id, user=user)
        return chat

    def chat_for_bot(self, bot: Bot, chat_id: Any) -> Chat:
        try:
            user_id = int(chat_id)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        chat = self.chats.get((bot.id, user_id))
        if chat is None or not chat.started:
            if user_id in self.users:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise bad_request("chat not found")
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    # --- messages -----------------------------------------------------------------------------
    def add_message(self, chat: Chat, sender: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": chat.next_message_id,
            "from": sender,
            "chat": chat.as_chat(),
            "date": int(time.time()),
            **content,
        }
        chat.next_message_id += 1
        chat.messages[message["message_id"]] = message
        self.publish(chat, "message", message)
        return message

    def publish(self, chat: Chat, kind: str, payload: dict[str, Any]) -> None:
        chat.version += 1
        event = {"type": kind, "version": chat.version, "data": payload}
        for queue in list(chat.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)
        pulse(chat)

    def check_flood(self, chat: Chat) -> None:
        limit = self.flood_limit
        if limit is None:
            return
        now = time.monotonic()
        if chat.flood_stamp == 0.0:
            chat.flood_tokens = float(limit.burst)
        else:
            chat.flood_tokens = min(
                limit.burst, chat.flood_tokens + (now - chat.flood_stamp) * limit.per_second
            )
        chat.flood_stamp = now
        if chat.flood_tokens < 1.0:
            self.flood_refusals += 1
            retry_after = max(1, math.ceil((1.0 - chat.flood_tokens) / limit.per_second))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        chat.flood_tokens -= 1.0

    # --- updates ------------------------------------------------------------------------------
    def enqueue(self, bot: Bot, update_type: str, payload: dict[str, Any]) -> None:
        if not bot.accepts(update_type):
            return
        bot.pending.append({"update_id": bot.next_update_id, update_type: payload})
        bot.next_update_id += 1
        pulse(bot)

    def confirm(self, bot: Bot, offset: int) -> None:
        if offset < 0:
            bot.pending = bot.pending[offset:]
        else:
            bot.pending = [u for u in bot.pending if u["update_id"] >= offset]

    # --- files --------------------------------------------------------------------------------
    def _new_file_ids(self, prefix: str) -> tuple[str, str]:
        return prefix + secrets.token_urlsafe(45), prefix[:2] + secrets.token_urlsafe(9)

    def store_file(
        self,
        data: bytes,
        *,
        folder: str,
        extension: str,
        mime_type: str | None = None,
        file_name: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        self._file_counter += 1
        file_path = f"{folder}/file_{self._file_counter}{extension}"
        disk_path = self.files_dir / file_path
        disk_path.parent.mkdir(parents=True, exist_ok=True)
        disk_path.write_bytes(data)
        prefix = {"photos": "AgAC", "documents": "BQAC", "stickers": "CAAC", "thumbnails": "AAMC"}[folder]
        file_id, unique_id = self._new_file_ids(prefix)
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=unique_id,
            path=disk_path,
            file_path=file_path,
            size=len(data),
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )
        self.files[file_id] = stored
        self.files_by_path[file_path] = stored
        return stored

    def get_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return stored

    def store_photo(self, data: bytes) -> list[dict[str, Any]]:
        """Telegram keeps a photo as re-encoded JPEG variants, smallest first, the largest last."""
        if len(data) > PHOTO_UPLOAD_LIMIT:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        try:
            info = probe(data)
            if info.width + info.height > 10_000 or max(info.width, info.height) > 20 * min(
                info.width, info.height
            ):
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            image = load_image(data, min_side=1)
        except ImageError:
            raise bad_request("IMAGE_PROCESS_FAILED") from None
        original = resize_long_side(image, MAX_PHOTO_SIDE)
        boxes = [box for box in PHOTO_BOXES if box < max(original.size)]
        variants = [resize_long_side(original, box) for box in boxes] + [original]
        sizes = []
        for variant in variants:
            stored = self.store_file(
                encode_image(variant, "JPEG", quality=87),
                folder="photos",
                extension=".jpg",
                width=variant.width,
                height=variant.height,
            )
            sizes.append(stored.photo_size())
        for size in sizes:
            self.media[size["file_id"]] = ("photo", sizes)
        return sizes

    def store_document(self, data: bytes, file_name: str | None, mime_type: str | None) -> dict[str, Any]:
        if len(data) > FILE_UPLOAD_LIMIT:
            raise ApiError(413, "Request Entity Too Large")
        if not data:
            raise bad_request("file must be non-empty")
        file_name = _safe_file_name(file_name) or "document"
        guessed = mimetypes.guess_type(file_name)[0]
        mime = (
            guessed or (mime_type if mime_type and "/" in mime_type else None) or "application/octet-stream"
        )
        extension = Path(file_name).suffix[:10] if Path(file_name).suffix.isascii() else ""
        stored = self.store_file(
            data, folder="documents", extension=extension, mime_type=mime, file_name=file_name
        )
        document: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime,
            "file_size": stored.size,
        }
        if mime.startswith("image/"):
            thumbnail = self._thumbnail(data)
            if thumbnail:
                document["thumbnail"] = thumbnail
        self.media[stored.file_id] = ("document", document)
        return document

    def store_animation(self, data: bytes, file_name: str | None, mime_type: str | None) -> dict[str, Any]:
        """A GIF or a short silent video. Telegram makes an MP4 of it; here the file is kept as sent.

        Its thumbnail is the first frame when the file is an image the emulator can read (GIF,
        animated WebP); a video gets none (the emulator decodes no video).
        """
        document = self.store_document(data, file_name or "animation.gif", mime_type)
        width = height = 0
        with contextlib.suppress(ImageError):
            info = probe(data)
            width, height = info.width, info.height
        animation = {**document, "width": width, "height": height, "duration": 1}
        self.media[document["file_id"]] = ("animation", animation)
        return animation

    def _thumbnail(self, data: bytes) -> dict[str, Any] | None:
        try:
            image = load_image(data, min_side=1, max_pixels=40_000_000)
        except ImageError:
            return None
        small = resize_long_side(image, 320)
        stored = self.store_file(
            encode_image(small, "JPEG", quality=80),
            folder="thumbnails",
            extension=".jpg",
            width=small.width,
            height=small.height,
        )
        return stored.photo_size()

    def store_sticker(self, data: bytes, emoji: str | None) -> dict[str, Any]:
        try:
            info = probe(data, max_bytes=512 * 1024)
        except ImageError:
            raise bad_request("STICKER_PNG_NOPNG") from None
        stored = self.store_file(
            data,
            folder="stickers",
            extension=".webp",
            mime_type="image/webp",
            width=info.width,
            height=info.height,
        )
        sticker: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": info.width,
            "height": info.height,
            "is_animated": False,
            "is_video": False,
            "file_size": stored.size,
        }
        if emoji:
            sticker["emoji"] = emoji
        self.media[stored.file_id] = ("sticker", sticker)
        return sticker


def _safe_file_name(name: str | None) -> str:
    if not name:
        return ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name.strip()[:255]


def pulse(holder: Bot | Chat) -> None:
    """Wake everyone waiting on ``holder.changed``; later waiters wait on a fresh event."""
    event, holder.changed = holder.changed, asyncio.Event()
    event.set()
