"""The bot's own overhead per interaction, ML side stubbed, under N concurrent simulated users.

Each simulated user (over HTTP, against the local Telegram) sends a photo, waits for the style
choice, presses a pretrained style and waits for the result photo. The ML side is an instant
stub, so what is measured is the bot: download + validation + upload to the (stub) storage,
FSM, keyboards, the progress message and delivery. Side by side, a bare aiogram echo bot on the
same emulator gives the baseline cost of one Telegram round trip here.

    .venv/bin/python benchmarks/bot_overhead.py --users 100
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from aiogram import Dispatcher
from aiogram.types import Message
from PIL import Image

from stylebot.assets import sample_path
from stylebot.bot.app import BotApp, create_bot
from stylebot.bot.delivery import Timing
from stylebot.client import StyleInfo
from stylebot.config import Settings
from stylebot.jobs.spec import PRETRAINED_MODELS, JobSpec, JobState, JobStatus
from stylebot.telegram import LocalTelegram, UserClient


def photo_bytes() -> bytes:
    img = Image.open(sample_path("chelsea.jpg")).convert("RGB")
    img.thumbnail((256, 256))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class InstantJobs:
    """A JobClient whose jobs are done the moment they are submitted."""

    def __init__(self, result: bytes) -> None:
        self._result = result
        self._jobs: dict[str, JobStatus] = {}

    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        return f"inputs/{uuid.uuid4().hex}/{name}"

    async def submit(self, spec: JobSpec) -> JobStatus:
        now = time.time()
        status = JobStatus(
            job_id=spec.job_id,
            owner=spec.owner,
            kind=spec.kind,
            state=JobState.done,
            progress=1.0,
            started_at=now,
            finished_at=now,
        )
        self._jobs[spec.job_id] = status
        return status

    async def status(self, job_id: str) -> JobStatus:
        return self._jobs[job_id]

    async def cancel(self, job_id: str) -> JobStatus:
        return self._jobs[job_id]

    async def result(self, job_id: str) -> bytes:
        return self._result

    async def preview(self, job_id: str) -> bytes | None:
        return None

    async def styles(self) -> list[StyleInfo]:
        return [
            StyleInfo(name=n, title=n, kind="cyclegan", installed=True, reason=None)
            for n in PRETRAINED_MODELS
        ]

    async def watch(self, job_id: str, *, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        yield self._jobs[job_id]

    async def aclose(self) -> None:
        return None


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def stylebot_user(base_url: str, user_id: int, photo: bytes, http: httpx.AsyncClient) -> list[float]:
    user = UserClient(base_url, user_id=user_id, http=http)
    t0 = time.perf_counter()
    sent = await user.send_photo(photo)
    choice = await user.wait_for(lambda m: bool(buttons(m)), timeout=120, after_message_id=sent["message_id"])
    t1 = time.perf_counter()
    monet = next(v for k, v in buttons(choice).items() if "Monet" in k)
    await user.press(choice["message_id"], monet)
    await user.wait_for(
        lambda m: "photo" in m and "⏱" in (m.get("caption") or ""),
        timeout=120,
        after_message_id=choice["message_id"],
    )
    t2 = time.perf_counter()
    return [t1 - t0, t2 - t1]


async def echo_user(base_url: str, user_id: int, http: httpx.AsyncClient) -> list[float]:
    user = UserClient(base_url, user_id=user_id, http=http)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        sent = await user.send_text("ping")
        await user.wait_for(
            lambda m: m.get("text") == "pong", timeout=120, after_message_id=sent["message_id"]
        )
        times.append(time.perf_counter() - t0)
    return times


def summary(name: str, samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p95 = samples[int(0.95 * (len(samples) - 1))]
    print(f"{name:<36} n={len(samples):4d}  p50={p50 * 1000:7.1f} ms  p95={p95 * 1000:7.1f} ms")
    return p50, p95


async def main(users: int) -> int:
    photo = photo_bytes()
    limits = httpx.Limits(max_connections=users * 2 + 10)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(storage_dir=Path(tmp) / "storage")
        async with LocalTelegram() as tg, httpx.AsyncClient(timeout=120, limits=limits) as http:
            # Baseline: a bare aiogram echo bot on the same emulator.
            echo_bot = create_bot(tg.token, tg.base_url)
            dp = Dispatcher()

            @dp.message()
            async def pong(message: Message) -> None:
                await message.answer("pong")

            polling = asyncio.create_task(dp.start_polling(echo_bot, handle_signals=False, polling_timeout=5))
            await asyncio.sleep(0.5)
            start = time.perf_counter()
            echo = await asyncio.gather(*(echo_user(tg.base_url, 10_000 + i, http) for i in range(users)))
            echo_wall = time.perf_counter() - start
            await dp.stop_polling()
            await polling
            tg.reset()

            app = BotApp(
                settings,
                InstantJobs(photo),
                bot=create_bot(tg.token, tg.base_url),
                timing=Timing(edit_interval=1.0, watch_interval=0.2),
            )
            async with app:
                await asyncio.sleep(0.5)
                start = time.perf_counter()
                runs = await asyncio.gather(
                    *(stylebot_user(tg.base_url, 20_000 + i, photo, http) for i in range(users))
                )
                wall = time.perf_counter() - start
    print(f"{users} concurrent users, local Telegram on 127.0.0.1, ML stubbed (instant jobs)")
    base50, _ = summary("baseline: echo bot, text → reply", [t for r in echo for t in r])
    c50, _ = summary("stylebot: photo → style choice", [r[0] for r in runs])
    r50, _ = summary("stylebot: press style → result photo", [r[1] for r in runs])
    print(f"ratio to baseline (p50): photo→choice {c50 / base50:.1f}×, press→result {r50 / base50:.1f}×")
    print(
        f"wall: echo {echo_wall:.1f} s for {2 * users} round trips; stylebot {wall:.1f} s for {users} "
        f"conversations ({users / wall:.1f} conversations/s)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    sys.exit(asyncio.run(main(parser.parse_args().users)))
