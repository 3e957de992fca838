"""A real kill -9 at the moment of delivery: ``stylebot bot`` as an OS process, the real in-process
job service and models, and a proxy between the bot and the local Telegram that pulls the trigger.

The proxy forwards every Bot API call unchanged, except the first ``sendPhoto`` that carries a
result (its caption has the "⏱" of a result). Then, by ``moment``:

* ``before_send``: the result never reaches Telegram; the proxy SIGKILLs the bot while the request hangs.
* ``after_send``: Telegram accepts and stores the result; the proxy SIGKILLs the bot before it can
  read the answer (so it never learns that the send worked).

The bot is started again on the same folders. The user must see exactly one result labelled "sent
again", in their own language, and no unlabelled duplicate; nothing may stay pending afterwards,
and the second process must stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bot_helpers import buttons, jpeg, press_button, reply_to, text_of

from stylebot.telegram import LocalTelegram, UserClient

pytestmark = pytest.mark.slow

RESULT_MARK = "⏱"
BOT_COMMAND = (sys.executable, "-m", "stylebot.cli", "bot")  # what `stylebot bot` runs
READY_LINE = "Run polling for bot"  # aiogram logs it once getMe answered and polling begins
START_TIMEOUT = 120.0  # a cold start imports aiogram, torch and onnxruntime on a small machine
# What the user reads, per language: the press answer, the result's style, the "sent again" note,
# /cancel's answers.
PHRASES = {
    "en": {
        "started": "Started.",
        "style": "gallery style 7",
        "again": "Sent again after a restart",
        "nothing": "Nothing to cancel",
        "stopped": "Stopped your stylization",
    },
    "ru": {
        "started": "Запущено.",
        "style": "стиль галереи 7",
        "again": "Отправлено повторно после перезапуска",
        "nothing": "Отменять нечего",
        "stopped": "Остановил",
    },
}


def is_result(m: dict) -> bool:
    return "photo" in m and RESULT_MARK in text_of(m)


def is_sheet(m: dict) -> bool:
    return "photo" in m and "7" in buttons(m)


class DeliveryKiller:
    """A reverse proxy in front of the local Telegram that kills the bot at the result's delivery."""

    def __init__(self, upstream: str, moment: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.moment = moment
        self.pid: int | None = None
        self.armed = True
        self.killed = asyncio.Event()
        self.result_reached_telegram = False
        self.session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        async with self.session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as response:
            payload = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() == "content-type"}
            return web.Response(status=response.status, body=payload, headers=kept)

    def _kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        self.killed.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # raw bytes: a multipart upload goes on byte for byte
        is_the_result = request.path.lower().endswith("/sendphoto") and RESULT_MARK.encode() in body
        if not (self.armed and is_the_result):
            return await self._forward(request, body)
        self.armed = False
        if self.moment == "before_send":
            self._kill()
            return web.Response(status=502)  # nobody reads it: the process is gone
        response = await self._forward(request, body)
        self.result_reached_telegram = response.status == 200
        self._kill()
        return response


@asynccontextmanager
async def delivery_killer(upstream: str, moment: str) -> AsyncIterator[tuple[DeliveryKiller, str]]:
    killer = DeliveryKiller(upstream, moment)
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", killer.handle)
    server = TestServer(app, host="127.0.0.1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        killer.session = session
        await server.start_server()
        try:
            yield killer, str(server.make_url("")).rstrip("/")
        finally:
            await server.close()


async def start_bot_process(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    """``stylebot bot`` with its output in ``log``; returns once it polls Telegram."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *BOT_COMMAND, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while READY_LINE not in log.read_text(errors="replace"):
        if proc.returncode is not None:
            raise AssertionError(f"the bot exited with {proc.returncode} before polling")
        if loop.time() > deadline:
            raise AssertionError(f"the bot did not start polling within {START_TIMEOUT} s")
        await asyncio.sleep(0.1)
    return proc


def pending_records(state_dir: Path) -> list[dict]:
    """Every pending delivery the bot keeps on disk (it runs without Redis here)."""
    records: list[dict] = []
    for path in sorted(state_dir.glob("pending-*.json")):
        records.extend(json.loads(path.read_text()).values())
    return records


async def wait_gone(user: UserClient, message_id: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(m["message_id"] == message_id for m in await user.history()):
        if loop.time() > deadline:
            raise AssertionError(f"message {message_id} is still in the chat after {timeout} s")
        await asyncio.sleep(0.1)


def count_results(messages: list[dict], label: str) -> tuple[int, int]:
    """(unlabelled, labelled) result photos."""
    results = [m for m in messages if is_result(m)]
    labelled = sum(label in text_of(m) for m in results)
    return len(results) - labelled, labelled


@pytest.mark.parametrize(("moment", "language"), [("before_send", "en"), ("after_send", "ru")])
async def test_a_real_kill_at_delivery_gives_no_unlabelled_duplicate(
    moment: str, language: str, full_models_dir: Path, tmp_path: Path
) -> None:
    said = PHRASES[language]
    state_dir = tmp_path / "bot-state"
    logs = [tmp_path / "bot-1.log", tmp_path / "bot-2.log"]
    procs: list[asyncio.subprocess.Process] = []
    async with LocalTelegram() as tg, delivery_killer(tg.base_url, moment) as (killer, proxy_url):
        env = {
            **os.environ,  # the autouse fixture already removed every STYLEBOT_*, REDIS_URL, ML_SERVER_*...
            "API_TOKEN": tg.token,
            "STYLEBOT_TELEGRAM_API_BASE": proxy_url,
            "STYLEBOT_STORAGE_DIR": str(tmp_path / "storage"),
            "STYLEBOT_MODELS_DIR": str(full_models_dir),
            "STYLEBOT_BOT_STATE_DIR": str(state_dir),
            "DEFAULT_FAST_DEV_RUN": "1",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("REDIS_URL", "ML_SERVER_HOST_ADDR"):  # else no in-process worker, or no JSON records
            assert name not in env and f"STYLEBOT_{name}" not in env, name
        try:
            async with UserClient(
                tg.base_url, user_id=7001, first_name="Ada", language_code=language
            ) as user:
                first = await start_bot_process(env, tmp_path, logs[0])
                procs.append(first)
                killer.pid = first.pid

                sent = await user.send_photo(jpeg("coffee.jpg", 96))
                sheet = await reply_to(user, sent, is_sheet, timeout=90)
                assert (await press_button(user, sheet, "7")).get("text") == said["started"]
                await asyncio.wait_for(killer.killed.wait(), 90)
                assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
                assert killer.result_reached_telegram is (moment == "after_send")

                # What the dead process left: the record says "sending", the progress message is there.
                assert [r["phase"] for r in pending_records(state_dir)] == ["sending"]
                progress_id = pending_records(state_dir)[0]["progress_message_id"]
                assert any(m["message_id"] == progress_id for m in await user.history())
                expected_unlabelled = 1 if moment == "after_send" else 0
                assert count_results(await user.bot_messages(), said["again"]) == (expected_unlabelled, 0)

                before_restart = max(m["message_id"] for m in await user.history())
                second = await start_bot_process(env, tmp_path, logs[1])
                procs.append(second)
                again = await user.wait_for(is_result, timeout=90, after_message_id=before_restart)
                assert said["again"] in text_of(again) and said["style"] in text_of(again), text_of(again)
                # The bot drops the record as soon as Telegram accepted, then deletes the progress message.
                await wait_gone(user, progress_id, timeout=30)
                assert pending_records(state_dir) == []
                stop = await user.send_command("cancel")
                answer = await reply_to(
                    user, stop, lambda m: said["nothing"] in text_of(m) or said["stopped"] in text_of(m)
                )
                assert said["nothing"] in text_of(answer)  # nothing runs for this chat any more

                second.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(second.wait(), 60) == 0
                # Both processes are gone: what the user has now is final.
                unlabelled, labelled = count_results(await user.bot_messages(), said["again"])
                assert (unlabelled, labelled) == (expected_unlabelled, 1)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for log in logs:
                if log.exists():
                    print(f"----- {log.name} -----\n{log.read_text(errors='replace')}")
    secret = tg.token.split(":", 1)[1]
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert secret.encode() not in path.read_bytes(), f"the bot token is in {path.name}"
