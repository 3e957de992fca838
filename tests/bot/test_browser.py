"""The playground in headless Chromium, with the real feed-forward networks: a tappable /help,
photo → the style sheet → a tile → its result; style images → Stylize → a preview that changes →
"Good, send it" → the result.

``WEBCHAT_SCREENSHOT=path.png`` also saves the chat as it looks mid-refinement (the README's
picture: photo, sheet, a result, and the progress message with its preview).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from bot_helpers import jpeg

from stylebot.cli.playground import run_playground
from stylebot.config import get_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_web_chat_sheet_result_and_changing_preview(
    full_models_dir, chromium, monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    get_settings.cache_clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = asyncio.Event()
    playground = asyncio.create_task(
        run_playground(get_settings(), host="127.0.0.1", port=port, stop=stop, pull_weights=False)
    )
    photo, style = tmp_path / "cat.jpg", tmp_path / "bricks.jpg"
    photo.write_bytes(jpeg("chelsea.jpg", size=192))
    style.write_bytes(jpeg("texture_brick.jpg", size=96))
    try:
        for _ in range(1200):  # a cold first start (imports, models off a cold disk) can be slow
            if "Playground ready" in capsys.readouterr().out:
                break
            assert not playground.done(), playground.result()
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the playground did not say it was ready within 120 s")
        page = await chromium.new_page(viewport={"width": 520, "height": 1500})
        await page.goto(f"http://127.0.0.1:{port}/")
        theirs = page.locator(".row.theirs")

        # Commands in the bot's texts are links: tapping /help sends it.
        await page.fill("#text", "/start")
        await page.keyboard.press("Enter")
        await theirs.filter(has_text="/help explains more").first.wait_for(timeout=20_000)
        await theirs.locator("a.cmd", has_text="/help").first.click()
        await theirs.filter(has_text="How it works").first.wait_for(timeout=20_000)

        # Photo → the sheet: a picture of numbered tiles with number buttons under it.
        await page.set_input_files("#file-input", str(photo))
        sheet = theirs.filter(has_text="Pick a style by its number")
        await sheet.locator("img.photo").first.wait_for(timeout=60_000)
        tile = sheet.get_by_role("button", name="7", exact=True)
        assert await tile.count() == 1
        await tile.click()
        result = theirs.filter(has_text="gallery style 7").locator("img.photo")
        await result.first.wait_for(timeout=60_000)
        assert await result.first.evaluate("img => img.complete && img.naturalWidth > 0")

        # Another style: my own style image, refined with a preview that changes.
        await theirs.locator("button[data-callback]", has_text="Another style").last.click()
        sheet2 = theirs.filter(has_text="Pick a style by its number").last
        await sheet2.locator("img.photo").wait_for(timeout=60_000)
        await sheet2.locator("button[data-callback]", has_text="My style images").click()
        await theirs.filter(has_text="Send 1–5 style images").first.wait_for(timeout=20_000)
        await page.set_input_files("#file-input", str(style))
        panel = theirs.filter(has_text="Style images: 1 of 5").last
        await panel.locator("button[data-callback]", has_text="Stylize").click(timeout=20_000)
        progress = theirs.filter(has_text="Style:").last
        await progress.locator("button[data-callback]", has_text="Good, send it").wait_for(timeout=30_000)
        sources: list[str] = []
        for _ in range(900):
            if await progress.count() == 0:
                break
            src = await progress.locator("img.photo").get_attribute("src")
            if src and src not in sources:
                sources.append(src)
            if len(sources) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(sources) >= 3, sources  # the photo, the instant result, then a refined preview
        if shot := os.environ.get("WEBCHAT_SCREENSHOT"):
            await page.screenshot(path=shot, full_page=False)
        await progress.locator("button[data-callback]", has_text="Good, send it").click()
        final = theirs.filter(has_text="your 1 style image").locator("img.photo")
        await final.first.wait_for(timeout=60_000)
        assert await final.first.evaluate("img => img.complete && img.naturalWidth > 0")
    finally:
        stop.set()
        assert await asyncio.wait_for(playground, 30) == 0
