"""The conversation through the local Telegram with the real feed-forward networks (and the
synthetic VGG19 and CycleGANs): the real in-process job service, no fast-dev-run shortcuts.

photo → sheet; a tile → its result; style images → the instant preview → a changing preview →
"Good, send it" → result; and Cancel after a bot restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bot_helpers import FAST, buttons, jpeg, press_button, reply_to, text_of

from stylebot.bot.app import BotApp, create_bot
from stylebot.client import InProcessJobClient
from stylebot.config import Settings, get_settings
from stylebot.imaging import load_image
from stylebot.telegram import LocalTelegram, UserClient


def is_choice(m: dict) -> bool:
    return "How should I restyle" in text_of(m)


def is_result(m: dict) -> bool:
    return "photo" in m and "⏱" in text_of(m)


@pytest.fixture
def real_settings(full_models_dir, monkeypatch) -> Settings:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
async def client(real_settings) -> AsyncIterator[InProcessJobClient]:
    c = InProcessJobClient(settings=real_settings)
    yield c
    await c.aclose()


async def start(telegram: LocalTelegram, settings: Settings, client: InProcessJobClient) -> BotApp:
    app = BotApp(settings, client, bot=create_bot(telegram.token, telegram.base_url), **FAST)
    await app.start_polling()
    return app


async def current(user: UserClient, message: dict) -> dict:
    return next(m for m in await user.history() if m["message_id"] == message["message_id"])


async def test_photo_sheet_and_a_tile_to_the_full_size_result(telegram, user, real_settings, client) -> None:
    app = await start(telegram, real_settings, client)
    try:
        sent = await user.send_photo(jpeg("coffee.jpg", 96))
        sheet = await reply_to(user, sent, is_choice, timeout=60)
        picture = load_image(await user.download(sheet["photo"][-1]["file_id"]))
        assert min(picture.size) >= 4 * 64  # many tiles, not the photo itself
        labels = list(buttons(sheet))
        assert labels[:20] == [str(n) for n in range(20)]
        await press_button(user, sheet, "▶")
        page_two = list(buttons(await current(user, sheet)))
        # The synthetic models folder has two CycleGANs: only those are offered.
        assert "26 Monet" in page_two and "30 Summer → winter" in page_two
        assert not any("Van Gogh" in b or "Cézanne" in b for b in page_two)
        assert (await press_button(user, sheet, "25")).get("text") == "Started."
        result = await reply_to(user, sheet, is_result, timeout=60)
        assert "gallery style 25" in text_of(result)
        image = load_image(await user.download(result["photo"][-1]["file_id"]))
        assert max(image.size) == 96  # the photo's own size: "original" is the default
    finally:
        await app.stop()


async def test_style_images_instant_then_changing_previews_then_good_send_it(
    telegram, user, real_settings, client
) -> None:
    app = await start(telegram, real_settings, client)
    try:
        sent = await user.send_album([jpeg("coffee.jpg", 160), jpeg("texture_brick.jpg", 64)])
        panel = await reply_to(user, sent, lambda m: "Style images: 1 of 5" in text_of(m), timeout=30)
        assert (await press_button(user, panel, "Stylize")).get("text") == "Started."
        progress = await reply_to(user, panel, lambda m: "Style:" in text_of(m), timeout=30)
        assert "Good, send it" in " ".join(buttons(progress))
        seen: list[str] = []
        for _ in range(600):  # the preview changes as the refinement goes (instant result first)
            now = await current(user, progress)
            if "photo" not in now:
                break
            unique = now["photo"][-1]["file_unique_id"]
            if unique not in seen:
                seen.append(unique)
            if len(seen) >= 3:  # the placeholder/thumbnail, the instant result, a refined preview
                break
            await asyncio.sleep(0.1)
        assert len(seen) >= 3, seen
        assert (await press_button(user, progress, "Good, send it")).get("text") == "Sending this image…"
        result = await reply_to(user, progress, is_result, timeout=60)
        image = load_image(await user.download(result["photo"][-1]["file_id"]))
        assert max(image.size) == 160  # the job's full size (the photo's, as "original"), not a preview's
    finally:
        await app.stop()


async def test_cancel_a_refinement_after_a_restart(telegram, user, real_settings, client) -> None:
    first = await start(telegram, real_settings, client)
    sent = await user.send_album([jpeg("coffee.jpg", 160), jpeg("texture_grass.jpg", 64)])
    panel = await reply_to(user, sent, lambda m: "Style images: 1 of 5" in text_of(m), timeout=30)
    await press_button(user, panel, "Stylize")
    progress = await reply_to(user, panel, lambda m: "Style:" in text_of(m), timeout=30)
    await first.stop()
    second = await start(telegram, real_settings, client)
    try:
        assert (await press_button(user, progress, "Cancel")).get("text") == "Cancelled."
        job_id = next(iter((await second.pending.all()) or []), None)
        assert job_id is None  # nothing left to deliver
        await asyncio.sleep(1.0)
        assert not any(is_result(m) for m in await user.bot_messages())
        assert "Cancelled" in text_of(await current(user, progress))
    finally:
        await second.stop()
