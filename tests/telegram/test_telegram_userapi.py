"""The user side's boundary: hostile or mistaken requests get clear refusals and change nothing."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from echo_aiogram import tiny_png

from stylebot.telegram import LocalTelegram, UserClient, UserClientError


async def test_hostile_user_requests_are_refused(tg: LocalTelegram, user: UserClient) -> None:
    await user.send_text("hello")
    async with httpx.AsyncClient(base_url=tg.base_url) as http:
        assert (
            await http.post("/api/users", content=b"[1, 2]", headers={"Content-Type": "application/json"})
        ).status_code == 400
        assert (await http.post("/api/users", json={"id": -5, "first_name": "x"})).status_code == 400
        assert (await http.get("/api/chats/abc")).status_code == 400
        assert (await http.get("/api/chats/777")).status_code == 404  # no such user
        assert (await http.get("/api/chats/4242?bot=99")).status_code == 404  # no such bot
        assert (await http.get("/api/files/../../etc/passwd")).status_code == 404
        too_many = [("file", (f"{i}.png", tiny_png((i, i, i)), "image/png")) for i in range(11)]
        assert (
            await http.post("/api/chats/4242/messages", data={"kind": "photo"}, files=too_many)
        ).status_code == 400
        bad_kind = [("file", ("x.png", tiny_png((1, 1, 1)), "image/png"))]
        assert (
            await http.post("/api/chats/4242/messages", data={"kind": "video"}, files=bad_kind)
        ).status_code == 400
    with pytest.raises(UserClientError, match="IMAGE_PROCESS_FAILED"):
        await user.send_photo(b"GIF89a but not really")
    with pytest.raises(UserClientError, match="STICKER"):
        await user.send_sticker(b"not a picture")
    with pytest.raises(UserClientError, match="no button"):
        await user.press(1, "nothing-here")
    with pytest.raises(UserClientError, match="empty"):
        await user.send_text("  ")
    assert [m.get("text") for m in await user.history()] == ["hello"]


async def test_reset_forgets_chats_and_files(tg: LocalTelegram, user: UserClient) -> None:
    sent = await user.send_photo(tiny_png((1, 2, 3)))
    file_id = sent["photo"][-1]["file_id"]
    assert await user.download(file_id)
    tg.reset()
    with pytest.raises(UserClientError):
        await user.download(file_id)
    assert list(tg.files_dir.rglob("*.jpg")) == []
    assert await user.history() == []  # the same client keeps working: its user is registered again


def test_thread_mode_and_cli(tmp_path) -> None:
    with LocalTelegram(files_dir=tmp_path / "files") as tg:
        me = httpx.get(f"{tg.base_url}/bot{tg.token}/getMe").json()
        assert me["ok"] and me["result"]["id"] == tg.bot_id
        assert "Local Telegram" in httpx.get(tg.web_url).text

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebot.cli", "telegram", "--port", str(port), "--token", "555:only-this"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/")
                break
            assert proc.poll() is None, "the command exited early"
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/bot555:only-this/getMe").json()["ok"] is True
        assert httpx.get(f"http://127.0.0.1:{port}/bot556:other/getMe").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}" in output and "555:only-this" in output and "Web chat" in output
