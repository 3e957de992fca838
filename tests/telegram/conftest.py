"""Fixtures: a fresh local Telegram per test, and the aiogram echo bot polling it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import echo_aiogram
import pytest
from aiogram import Bot

from stylebot.telegram import LocalTelegram, UserClient


@pytest.fixture
async def tg(tmp_path) -> AsyncIterator[LocalTelegram]:
    async with LocalTelegram(files_dir=tmp_path / "tg-files") as server:
        yield server


@pytest.fixture
async def echo_bot(tg: LocalTelegram) -> AsyncIterator[Bot]:
    bot = echo_aiogram.make_bot(tg.base_url, tg.token)
    async with echo_aiogram.polling(bot, polling_timeout=2):
        yield bot
    await bot.session.close()


@pytest.fixture
async def user(tg: LocalTelegram) -> AsyncIterator[UserClient]:
    async with UserClient(tg.base_url, user_id=4242, first_name="Ada", username="ada") as client:
        yield client
