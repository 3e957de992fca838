"""Assembling and running the bot: polling or webhook (the commands live in ``stylebot.cli``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import BotCommand, ErrorEvent
from aiogram.utils.callback_answer import CallbackAnswerMiddleware
from aiogram.utils.i18n import gettext as _

from stylebot.bot.delivery import JobRunner, Timing
from stylebot.bot.handlers import routers
from stylebot.bot.handlers.common import Services
from stylebot.bot.i18n import UserLocaleMiddleware, make_i18n
from stylebot.bot.middlewares import (
    AlbumMiddleware,
    BurstMiddleware,
    ChatPacer,
    RestartNoticeMiddleware,
    RetryAfterMiddleware,
    UpdateOnceMiddleware,
    UserLocks,
)
from stylebot.bot.persistence import JsonPendingStore, PendingStore, RedisPendingStore, TrackingMemoryStorage
from stylebot.bot.states import Flow
from stylebot.bot.styles import StyleCatalog
from stylebot.client import JobClient
from stylebot.config import Settings

log = logging.getLogger(__name__)
PLAYGROUND_TOKEN_ID = 100000001


def bot_state_dir(settings: Settings) -> Path:
    """Where pending deliveries and the memory-storage session file live without Redis:
    ``STYLEBOT_BOT_STATE_DIR``, else next to the local storage folder."""
    return settings.bot_state_dir or settings.storage_dir.parent / "bot-state"


def create_bot(token: str, api_base: str | None = None, *, pacer: ChatPacer | None = None) -> Bot:
    """A Bot whose sends keep to Telegram's per-chat pace and wait out a 429 when one comes anyway."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else AiohttpSession()
    session.middleware(RetryAfterMiddleware())
    session.middleware(pacer or ChatPacer())
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=None))


def create_storage(settings: Settings, bot_id: int) -> tuple[BaseStorage, PendingStore]:
    if settings.redis_url:
        from aiogram.fsm.storage.base import DefaultKeyBuilder
        from aiogram.fsm.storage.redis import RedisStorage

        # Keys like "stylebot:fsm:<bot id>:<chat>:<user>:<destiny>:data"; the bot id is public.
        keys = DefaultKeyBuilder(prefix="stylebot:fsm", with_bot_id=True, with_destiny=True)
        storage = RedisStorage.from_url(settings.redis_url, key_builder=keys)
        return storage, RedisPendingStore(storage.redis, bot_id)
    state_dir = bot_state_dir(settings)
    return (
        TrackingMemoryStorage(state_dir / f"sessions-{bot_id}.json"),
        JsonPendingStore(state_dir / f"pending-{bot_id}.json"),
    )


COMMANDS = {
    "start": ("Start over", "Начать заново"),
    "help": ("How it works", "Как это работает"),
    "cancel": ("Stop what is going on", "Остановить"),
    "settings": ("Strength, colours, size, language", "Сила, цвета, размер, язык"),
    "styles": ("Pretrained styles", "Готовые стили"),
}


class BotApp:
    """One bot: dispatcher, storage, job runner. ``async with`` runs long polling in the background."""

    def __init__(
        self,
        settings: Settings,
        client: JobClient,
        *,
        bot: Bot | None = None,
        timing: Timing | None = None,
        album_latency: float = 0.6,
        burst_gap: float = 1.0,
    ) -> None:
        if bot is None:
            if settings.api_token is None:
                raise ValueError("API_TOKEN is not set")
            bot = create_bot(settings.api_token.get_secret_value(), settings.telegram_api_base)
        self.settings = settings
        self.bot = bot
        self.client = client
        self.storage, self.pending = create_storage(settings, bot.id)
        self.i18n = make_i18n()
        self.runner = JobRunner(
            bot=bot,
            client=client,
            pending=self.pending,
            storage=self.storage,
            i18n=self.i18n,
            timing=timing,
        )
        self.once = UpdateOnceMiddleware(getattr(self.storage, "redis", None), bot.id)
        weights_state = Flow.entering_weights.state
        assert weights_state is not None  # a StatesGroup names its states when the class is created
        self.bursts = BurstMiddleware(
            burst_gap,
            typed_states=(weights_state,),
            redis=getattr(self.storage, "redis", None),
            bot_id=bot.id,
        )
        self.dispatcher = self._build_dispatcher(album_latency)
        self._polling: asyncio.Task[None] | None = None

    def _build_dispatcher(self, album_latency: float) -> Dispatcher:
        dp = Dispatcher(storage=self.storage)
        dp.update.outer_middleware(self.once)
        dp.include_routers(*routers())
        dp.message.outer_middleware(self.bursts)
        dp.message.outer_middleware(
            AlbumMiddleware(album_latency, getattr(self.storage, "redis", None), self.bot.id)
        )
        UserLocaleMiddleware(self.i18n).setup(dp)
        if isinstance(self.storage, TrackingMemoryStorage):
            notice = RestartNoticeMiddleware(self.storage)
            dp.message.outer_middleware(notice)
            dp.callback_query.outer_middleware(notice)
        dp.callback_query.middleware(CallbackAnswerMiddleware(pre=False))
        dp["services"] = self.services = Services(
            settings=self.settings,
            client=self.client,
            runner=self.runner,
            catalog=StyleCatalog(self.client),
            locks=UserLocks(getattr(self.storage, "redis", None), self.bot.id),
            i18n=self.i18n,
        )
        dp.startup.register(self._on_startup)
        dp.shutdown.register(self._on_shutdown)
        dp.errors.register(self._on_error)
        return dp

    async def _on_startup(self) -> None:
        with contextlib.suppress(TelegramAPIError):
            for index, language in ((0, None), (1, "ru")):
                commands = [BotCommand(command=c, description=d[index]) for c, d in COMMANDS.items()]
                await self.bot.set_my_commands(commands, language_code=language)
        await self.runner.resume()
        await self.services.catalog.log_for_operator()

    async def _on_shutdown(self) -> None:
        await self.runner.shutdown()

    async def _on_error(self, event: ErrorEvent) -> bool:
        log.error("update %s failed: %s", event.update.update_id, event.exception, exc_info=event.exception)
        query = event.update.callback_query
        message = event.update.message or (query.message if query is not None else None)
        if message is not None:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.send_message(
                    message.chat.id, _("Sorry, something went wrong on my side. Please try again.")
                )
        return True

    # --- long polling --------------------------------------------------------------------------
    async def start_polling(self) -> None:
        self._polling = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot, handle_signals=False, close_bot_session=False, polling_timeout=5
            )
        )

    async def stop(self) -> None:
        """Stop polling and watching (pending deliveries stay for the next start)."""
        if self._polling is not None:
            try:
                await self.dispatcher.stop_polling()
            except RuntimeError:  # not started yet (stopped at once): it would never see the stop
                self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
            self._polling = None
        await self.runner.shutdown()
        await self.storage.close()
        await self.pending.aclose()
        await self.bot.session.close()

    async def __aenter__(self) -> BotApp:
        await self.start_polling()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- webhook -------------------------------------------------------------------------------
    def webhook_app(self, secret: str) -> Any:
        """An aiohttp app that accepts updates only with the right secret token header."""
        from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
        from aiohttp import web

        path = self.settings.webhook_path
        token = self.bot.token
        if token in path or token.split(":", 1)[-1] in path:
            raise ValueError("WEBHOOK_PATH must not contain the bot token")
        app = web.Application()
        SimpleRequestHandler(
            self.dispatcher, self.bot, secret_token=secret, handle_in_background=True
        ).register(app, path=path)
        setup_application(app, self.dispatcher, bot=self.bot)
        return app


async def _run_webhook(app: BotApp, settings: Settings) -> None:
    from aiohttp import web

    assert settings.webhook_host_addr
    secret = (
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    )
    url = settings.webhook_host_addr.rstrip("/") + settings.webhook_path
    web_app = app.webhook_app(secret)

    async def register(_: Any) -> None:
        await app.bot.set_webhook(url, secret_token=secret, drop_pending_updates=False)
        log.info("webhook set to %s", url)

    async def unregister(_: Any) -> None:
        if settings.webhook_delete_on_shutdown:
            with contextlib.suppress(TelegramAPIError):
                await app.bot.delete_webhook()
            log.info("webhook removed")

    web_app.on_startup.append(register)
    web_app.on_shutdown.append(unregister)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, host="0.0.0.0", port=settings.port)
    await site.start()
    log.info("webhook server listening on port %d", settings.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await app.stop()


async def run_bot(settings: Settings) -> None:
    """Run the bot until stopped: polling, or webhook when WEBHOOK_HOST_ADDR is set."""
    from stylebot.client import make_job_client

    client = make_job_client(settings)
    app = BotApp(settings, client)
    try:
        if settings.webhook_host_addr:
            await _run_webhook(app, settings)
        else:
            with contextlib.suppress(TelegramAPIError):
                await app.bot.delete_webhook()
            await app.dispatcher.start_polling(app.bot, handle_signals=True)
            await app.storage.close()
    finally:
        await client.aclose()
