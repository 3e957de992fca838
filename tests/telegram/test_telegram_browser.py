"""The web chat page in real headless Chromium, against the aiogram echo bot."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from stylebot.assets import sample_path
from stylebot.telegram import LocalTelegram

pytestmark = pytest.mark.browser

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "webchat.png"


@pytest.fixture
async def page(chromium):
    context = await chromium.new_context(viewport={"width": 760, "height": 900})
    yield await context.new_page()
    await context.close()


async def test_web_chat_text_button_and_photo(tg: LocalTelegram, echo_bot, page, tmp_path: Path) -> None:
    await page.goto(tg.web_url)
    await page.wait_for_selector(".empty")
    await page.fill("#text", "/start")
    await page.press("#text", "Enter")
    button = page.locator(".keyboard button", has_text="Ping")
    await button.wait_for()
    await button.click()
    await page.wait_for_selector(".toast:has-text('pong')")
    await page.locator(".row.theirs .bubble", has_text="Pong!").wait_for()
    assert await page.locator(".keyboard button").count() == 0  # the edit removed the keyboard

    await page.set_input_files("#file-input", str(sample_path("chelsea.jpg")))
    bot_photo = page.locator(".row.theirs img.photo").last
    await bot_photo.wait_for()
    await page.locator(".row.theirs .caption", has_text="photo 451x300").wait_for()
    await page.wait_for_function(
        "() => { const imgs = document.querySelectorAll('.row.theirs img.photo');"
        " return imgs.length && imgs[imgs.length - 1].complete && imgs[imgs.length - 1].naturalWidth > 0; }"
    )
    box = await bot_photo.bounding_box()
    assert box is not None and box["width"] > 40
    assert box["y"] >= 0 and box["y"] + box["height"] <= 900, "the bot's photo is scrolled out of view"
    await page.set_input_files(
        "#file-input", [str(sample_path("coffee.jpg")), str(sample_path("rocket.jpg"))]
    )  # several files at once: one album
    await page.locator(".row.mine .album img.photo").nth(1).wait_for()
    await page.locator(".row.theirs .caption", has_text="photo 512x342").wait_for()
    await page.fill("#text", "/html")
    await page.press("#text", "Enter")
    await page.locator(".row.theirs b", has_text="bold").wait_for()
    await page.fill("#text", "/start")
    await page.press("#text", "Enter")
    await page.locator(".keyboard button", has_text="Ping").wait_for()

    await page.wait_for_selector(".toast", state="hidden")
    shot = tmp_path / "webchat.png"
    await page.screenshot(path=str(shot))
    assert shot.stat().st_size > 5000
    if os.environ.get("SAVE_WEBCHAT_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, README_SCREENSHOT)


async def test_a_message_sent_while_the_page_is_still_connecting_is_delivered(
    tg: LocalTelegram, echo_bot, page
) -> None:
    async def slow_users(route) -> None:  # a slow first load: the page does not know its user yet
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route("**/api/users", slow_users)
    await page.goto(tg.web_url, wait_until="domcontentloaded")
    await page.fill("#text", "/start")
    await page.press("#text", "Enter")
    await page.locator(".row.mine .bubble", has_text="/start").wait_for(timeout=15_000)
    await page.locator(".keyboard button", has_text="Ping").wait_for(timeout=15_000)
    assert await page.locator(".toast:has-text('Not sent')").count() == 0
