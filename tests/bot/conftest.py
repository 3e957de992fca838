"""Bot tests: a real local Telegram over HTTP, the bot polling it, and a JobClient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from bot_helpers import FAST

from stylebot.bot.app import BotApp, create_bot
from stylebot.client import JobClient
from stylebot.config import Settings, get_settings
from stylebot.telegram import LocalTelegram, UserClient

BotFactory = Callable[..., Awaitable[BotApp]]


@pytest.fixture
async def telegram() -> AsyncIterator[LocalTelegram]:
    async with LocalTelegram() as tg:
        yield tg


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DEFAULT_FAST_DEV_RUN", "1")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
async def start_bot(telegram: LocalTelegram, settings: Settings) -> AsyncIterator[BotFactory]:
    """Start a bot on the local Telegram; every started bot is stopped at the end."""
    apps: list[BotApp] = []

    async def start(client: JobClient, *, app_settings: Settings | None = None) -> BotApp:
        bot = create_bot(telegram.token, telegram.base_url)
        app = BotApp(app_settings or settings, client, bot=bot, **FAST)
        await app.start_polling()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


@pytest.fixture
async def user(telegram: LocalTelegram) -> AsyncIterator[UserClient]:
    async with UserClient(telegram.base_url, user_id=1001, first_name="Ada", language_code="en") as client:
        yield client
