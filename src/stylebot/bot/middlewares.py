"""Middlewares: albums as one event, the once-only restart notice, and Telegram flood control."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.fsm.context import FSMContext
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Message, TelegramObject
from aiogram.utils.i18n import gettext as _

from stylebot.bot.media import input_kind, is_image
from stylebot.bot.persistence import TrackingMemoryStorage

log = logging.getLogger(__name__)


class AlbumMiddleware(BaseMiddleware):
    """Telegram sends an album as separate messages sharing ``media_group_id``.

    The first one waits ``latency`` seconds for the rest, then reaches the handler with
    ``album`` (all messages, in order); the others stop here. With Redis (several bot processes
    behind one webhook URL, each getting some of the album's messages) the messages are gathered
    in a Redis list, and the process that added the first one hands the whole album on.
    """

    def __init__(self, latency: float = 0.6, redis: Any | None = None, bot_id: int = 0) -> None:
        self.latency = latency
        self.redis = redis
        self.prefix = f"stylebot:album:{bot_id}:"
        self._albums: dict[str, list[Message]] = {}

    async def _gather_in_redis(self, redis: Any, event: Message, bot: Bot) -> list[Message] | None:
        """All of the album's messages once its first has waited, or None for the others."""
        key = f"{self.prefix}{event.chat.id}:{event.media_group_id}"
        async with redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, event.model_dump_json(exclude_none=True))
            pipe.expire(key, max(60, int(self.latency * 10)))
            count, _ = await pipe.execute()
        if count > 1:
            return None
        await asyncio.sleep(self.latency)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        return [Message.model_validate_json(item).as_(bot) for item in raw]

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Message) or not event.media_group_id:
            return await handler(event, data)
        if self.redis is not None:
            gathered = await self._gather_in_redis(self.redis, event, data["bot"])
            if gathered is None:
                return None
            data["album"] = album = sorted(gathered, key=lambda m: m.message_id)
            return await handler(album[0], data)
        group = event.media_group_id
        if group in self._albums:
            self._albums[group].append(event)
            return None
        self._albums[group] = [event]
        await asyncio.sleep(self.latency)
        album = sorted(self._albums.pop(group), key=lambda m: m.message_id)
        data["album"] = album
        return await handler(album[0], data)


def burst_signature(message: Message) -> str | None:
    """What makes two messages "the same again" for flood purposes; None for images (never merged)."""
    if message.media_group_id or is_image(message):
        return None
    text = message.text or ""
    if text.startswith("/"):
        return "command:" + text.split()[0].split("@", 1)[0].lower()
    return "kind:" + input_kind(message).value


class BurstMiddleware(BaseMiddleware):
    """A burst of the same kind of message gets one answer, not one per message.

    A message of the same kind as the chat's previous one, arriving less than ``gap`` seconds
    after it, is dropped (the gap slides: 30 messages in 3 s are one burst). Images always go
    through (several style images in a row are meant), so does any change of kind, and so does
    text while the bot waits for typed input (the weights). With Redis (several bot processes,
    each getting some of the burst) the chat's last kind lives in Redis, for ``gap`` seconds.
    """

    def __init__(
        self,
        gap: float = 1.0,
        *,
        typed_states: tuple[str, ...] = (),
        max_chats: int = 100_000,
        redis: Any | None = None,
        bot_id: int = 0,
    ) -> None:
        self.gap = gap
        self.typed_states = typed_states
        self.max_chats = max_chats
        self.redis = redis
        self.prefix = f"stylebot:burst:{bot_id}:"
        self._last: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self.dropped = 0

    async def _repeats(self, chat: int, signature: str | None) -> bool:
        """Record this message's kind as the chat's latest; whether it repeats the one before
        within ``gap`` seconds."""
        if self.redis is not None:
            # SET ... GET: the previous kind and the new one in one step, expiring after the gap
            previous = await self.redis.set(
                f"{self.prefix}{chat}", signature or "", px=max(1, round(self.gap * 1000)), get=True
            )
            return signature is not None and previous is not None and previous.decode() == signature
        now = time.monotonic()
        last = self._last.pop(chat, None)
        self._last[chat] = (signature or "", now)
        if len(self._last) > self.max_chats:
            self._last.popitem(last=False)
        return (
            signature is not None and last is not None and last[0] == signature and now - last[1] < self.gap
        )

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Message):
            return await handler(event, data)
        signature = burst_signature(event)
        state: FSMContext | None = data.get("state")
        if signature == "kind:text" and state is not None and await state.get_state() in self.typed_states:
            signature = None
        if await self._repeats(event.chat.id, signature):
            self.dropped += 1
            return None
        return await handler(event, data)


class UpdateOnceMiddleware(BaseMiddleware):
    """Each update is handled once, even when it reaches more than one bot process.

    With Redis (several processes behind one webhook URL), the first process to ``SET NX`` the
    update's key handles it; a retry or a copy that reaches another process stops here. Without
    Redis, a bounded in-memory set catches the webhook retries of this one process.
    """

    def __init__(self, redis: Any | None, bot_id: int, *, ttl: int = 86_400, remember: int = 10_000) -> None:
        self.redis = redis
        self.prefix = f"stylebot:update:{bot_id}:"
        self.ttl = ttl
        self.remember = remember
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.skipped = 0

    async def first_time(self, update_id: int) -> bool:
        if self.redis is not None:
            return bool(await self.redis.set(self.prefix + str(update_id), b"1", nx=True, ex=self.ttl))
        if update_id in self._seen:
            return False
        self._seen[update_id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        update_id = getattr(event, "update_id", None)
        if isinstance(update_id, int) and not await self.first_time(update_id):
            self.skipped += 1
            log.info("update %d already handled (by this or another bot process)", update_id)
            return None
        return await handler(event, data)


class RestartNoticeMiddleware(BaseMiddleware):
    """With memory storage: tell a returning user, once, that their conversation was lost."""

    def __init__(self, storage: TrackingMemoryStorage) -> None:
        self.storage = storage

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state: FSMContext | None = data.get("state")
        if state is not None and await state.get_state() is None and self.storage.pop_lost(state.key):
            chat_id = event.chat.id if isinstance(event, Message) else state.key.chat_id
            bot: Bot = data["bot"]
            text = _(
                "I was restarted and lost where we were. Send a photo to start again "
                "(if you just sent one, I will use it)."
            )
            if isinstance(event, CallbackQuery):
                text = _("I was restarted and lost where we were. Please send the photo again.")
            await bot.send_message(chat_id, text)
        return await handler(event, data)


class UserLocks:
    """One lock per chat+user around a read-modify-write of the conversation by concurrent updates.

    Without Redis an ``asyncio.Lock`` (one process). With Redis (several bot processes behind one
    webhook URL, e.g. style images sent one by one and routed to different processes) redis-py's
    ``Lock``, so two processes cannot interleave their load and save either.
    """

    def __init__(self, redis: Any | None = None, bot_id: int = 0, *, timeout: float = 30.0) -> None:
        self.redis = redis
        self.prefix = f"stylebot:conversation-lock:{bot_id}:"
        self.timeout = timeout
        self._locks: defaultdict[tuple[int, int], asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, state: FSMContext) -> AbstractAsyncContextManager[Any]:
        if self.redis is not None:
            name = f"{self.prefix}{state.key.chat_id}:{state.key.user_id}"
            # timeout: a process that dies holding it frees it; blocking_timeout: never wait forever
            lock: AbstractAsyncContextManager[Any] = self.redis.lock(
                name, timeout=self.timeout, blocking_timeout=self.timeout
            )
            return lock
        return self._locks[(state.key.chat_id, state.key.user_id)]


class ChatPacer(BaseRequestMiddleware):
    """Telegram's per-chat limit: about one message a second, short bursts allowed.

    A token bucket per chat (``burst`` at once, refilled at ``per_second``): a send that would
    go over waits its turn instead of earning a 429. Edits have their own throttle (progress).
    """

    SENDING = ("Send", "Copy", "Forward")

    def __init__(
        self, per_second: float = 1.0, burst: int = 10, *, margin: float = 0.1, max_chats: int = 100_000
    ) -> None:
        self.per_second = per_second
        self.margin = margin
        self.burst = burst
        self.max_chats = max_chats
        self._buckets: OrderedDict[int | str, tuple[float, float]] = OrderedDict()

    def reserve(self, chat_id: int | str) -> float:
        """Take a token for ``chat_id``; returns how long to wait before using it."""
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(chat_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.per_second) - 1.0
        self._buckets[chat_id] = (tokens, now)
        if len(self._buckets) > self.max_chats:
            self._buckets.popitem(last=False)
        if tokens >= 0:
            return 0.0
        # A little extra: Telegram's clock starts when the request arrives, which is later than now.
        return -tokens / self.per_second + self.margin

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = type(method).__name__
        chat_id = getattr(method, "chat_id", None)
        if chat_id is not None and name.startswith(self.SENDING) and name != "SendChatAction":
            wait = self.reserve(chat_id)
            if wait > 0:
                await asyncio.sleep(wait)
        return await make_request(bot, method)


class RetryAfterMiddleware(BaseRequestMiddleware):
    """On a 429 from Telegram, wait the time it asks for and try again (a few times)."""

    def __init__(self, max_retries: int = 5, max_wait: float = 60.0) -> None:
        self.max_retries = max_retries
        self.max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(self.max_retries + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.max_retries or exc.retry_after > self.max_wait:
                    raise
                log.info("Telegram flood control on %s: waiting %s s", type(method).__name__, exc.retry_after)
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")
