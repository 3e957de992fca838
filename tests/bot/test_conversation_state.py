"""The typed conversation object: round trip through both FSM storages, and damaged data."""

from __future__ import annotations

import pytest
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage

from stylebot.bot.conversation import Content, Conversation, LastResult


def context(storage) -> FSMContext:
    return FSMContext(storage, StorageKey(bot_id=1, chat_id=7, user_id=7))


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_save_load_reset_round_trip(backend, request) -> None:
    if backend == "memory":
        storage = MemoryStorage()
    else:
        from aiogram.fsm.storage.redis import RedisStorage

        storage = RedisStorage.from_url(request.getfixturevalue("redis_url"))
        await storage.redis.flushdb()
    state = context(storage)
    try:
        assert await Conversation.load(state) == Conversation()
        conv = Conversation()
        photo = Content(key="inputs/a/content.jpg", as_document=True, thumb="t1")
        flow = conv.start(photo, ["inputs/a/s0.jpg"])
        conv.weights, conv.panel, conv.job = [2.0], 41, "f" * 32
        conv.last_result = LastResult(job="e" * 32, content=conv.content)
        await conv.save(state)
        loaded = await Conversation.load(state)
        assert loaded == conv and loaded.flow == flow and loaded.content.as_document
        loaded.reset()
        await loaded.save(state)
        again = await Conversation.load(state)
        assert again.content is None and not again.styles and again.weights is None
        assert again.panel is None and again.flow == ""
        assert again.job == "f" * 32 and again.last_result is not None  # kept across a reset
        assert again.start(Content(key="inputs/b/content.jpg")) != flow
    finally:
        await storage.close()


async def test_damaged_or_old_data_starts_clean() -> None:
    state = context(MemoryStorage())
    for raw in ({"styles": "not a list"}, {"content": {"as_document": True}}, {"weights": ["x"]}):
        await state.set_data(raw)
        assert await Conversation.load(state) == Conversation()
    await state.set_data({"flow": "ab12cd34", "job_id": "old-key", "panel": 5})  # unknown keys are ignored
    conv = await Conversation.load(state)
    assert (conv.flow, conv.panel) == ("ab12cd34", 5)
