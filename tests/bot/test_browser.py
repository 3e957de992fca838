"""The playground in headless Chromium: send a photo, press a style button, see the result image."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from bot_helpers import jpeg

from stylebot.cli.playground import run_playground
from stylebot.config import get_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_web_chat_photo_style_result(
    synthetic_models_dir, chromium, monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    monkeypatch.setenv("DEFAULT_FAST_DEV_RUN", "1")
    get_settings.cache_clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = asyncio.Event()
    playground = asyncio.create_task(
        run_playground(get_settings(), host="127.0.0.1", port=port, stop=stop, pull_weights=False)
    )
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(jpeg(size=96))
    try:
        for _ in range(100):
            if "Playground ready" in capsys.readouterr().out:
                break
            await asyncio.sleep(0.1)
        page = await chromium.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.set_input_files("#file-input", str(photo))
        monet = page.locator("button[data-callback]", has_text="Monet")
        await monet.first.click(timeout=20_000)
        result = page.locator(".row.theirs", has_text="⏱").locator("img")
        await result.first.wait_for(timeout=60_000)
        loaded = await result.first.evaluate("img => img.complete && img.naturalWidth > 0")
        assert loaded
    finally:
        stop.set()
        assert await asyncio.wait_for(playground, 30) == 0
