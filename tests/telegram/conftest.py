"""Fixtures: a fresh local Telegram per test, and the aiogram echo bot polling it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import echo_aiogram
import pytest
from aiogram import Bot

from stylebot.telegram import LocalTelegram, UserClient


@pytest.fixture
async def tg(tmp_path) -> AsyncIterator[LocalTelegram]:
    async with LocalTelegram(files_dir=tmp_path / "tg-files") as server:
        yield server


@contextlib.asynccontextmanager
async def polling(bot: Bot, **kwargs: Any) -> AsyncIterator[None]:
    dispatcher = echo_aiogram.build_dispatcher()
    task = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False, **kwargs)
    )
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            await dispatcher.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def echo_bot(tg: LocalTelegram) -> AsyncIterator[Bot]:
    bot = echo_aiogram.make_bot(tg.base_url, tg.token)
    async with polling(bot, polling_timeout=2):
        yield bot
    await bot.session.close()


@pytest.fixture
async def user(tg: LocalTelegram) -> AsyncIterator[UserClient]:
    async with UserClient(tg.base_url, user_id=4242, first_name="Ada", username="ada") as client:
        yield client
