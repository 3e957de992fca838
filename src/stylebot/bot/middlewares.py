"""Middlewares: albums as one event, the once-only restart notice, and Telegram flood control."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.fsm.context import FSMContext
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Message, TelegramObject
from aiogram.utils.i18n import gettext as _

from stylebot.bot.persistence import TrackingMemoryStorage

log = logging.getLogger(__name__)


class AlbumMiddleware(BaseMiddleware):
    """Telegram sends an album as separate messages sharing ``media_group_id``.

    The first one waits ``latency`` seconds for the rest, then reaches the handler with
    ``album`` (all messages, in order); the others stop here.
    """

    def __init__(self, latency: float = 0.6) -> None:
        self.latency = latency
        self._albums: dict[str, list[Message]] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Message) or not event.media_group_id:
            return await handler(event, data)
        group = event.media_group_id
        if group in self._albums:
            self._albums[group].append(event)
            return None
        self._albums[group] = [event]
        await asyncio.sleep(self.latency)
        album = sorted(self._albums.pop(group), key=lambda m: m.message_id)
        data["album"] = album
        return await handler(album[0], data)


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
    """One lock per chat+user: read-modify-write of FSM data from concurrent updates."""

    def __init__(self) -> None:
        self._locks: defaultdict[tuple[int, int], asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, state: FSMContext) -> asyncio.Lock:
        return self._locks[(state.key.chat_id, state.key.user_id)]


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
