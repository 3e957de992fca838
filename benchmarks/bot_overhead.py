"""The bot's own overhead per interaction, ML side stubbed, under N concurrent simulated users;
and the two waits a user feels with the real feed-forward networks.

Part 1 (``--users N``): each simulated user (over HTTP, against the local Telegram) does the whole
flow: sends a photo, waits for the style sheet, chooses "My style images", sends one, presses
Stylize and waits for the result photo. The ML side is an instant stub, so what is measured is
the bot: download + validation + upload to the (stub) storage, FSM, keyboards, the progress
message and delivery; and that every user is served exactly once (one sheet, one result).
Side by side, a bare aiogram echo bot on the same emulator gives the baseline cost of one
Telegram round trip here.

Part 2 (``--models DIR``, real in-process job service, one user at a time): photo → sheet
seconds, and Stylize press → first image seconds (the instant result in the progress message,
refinement on, 512 px). Targets on a 2-core CPU: sheet ≤ 3 s, first image ≤ 2 s.

    .venv/bin/python benchmarks/bot_overhead.py --users 100 --models .cache/models
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
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


def photo_bytes(size: int = 256, name: str = "chelsea.jpg") -> bytes:
    img = Image.open(sample_path(name)).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class InstantJobs:
    """A JobClient whose jobs are done the moment they are submitted."""

    def __init__(self, result: bytes) -> None:
        self._result = result
        self._jobs: dict[str, JobStatus] = {}
        self.submitted: dict[str, int] = {}

    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        return f"inputs/{uuid.uuid4().hex}/{name}"

    async def submit(self, spec: JobSpec) -> JobStatus:
        now = time.time()
        self.submitted[spec.kind] = self.submitted.get(spec.kind, 0) + 1
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

    async def finish(self, job_id: str) -> JobStatus:
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


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


async def stylebot_user(
    base_url: str, user_id: int, photo: bytes, http: httpx.AsyncClient
) -> tuple[list[float], list[dict]]:
    """The whole flow; returns (photo→sheet, Stylize→result, whole flow) seconds and the chat."""
    user = UserClient(base_url, user_id=user_id, http=http)
    t0 = time.perf_counter()
    sent = await user.send_photo(photo)
    sheet = await user.wait_for(
        lambda m: "My style images" in str(buttons(m)), timeout=300, after_message_id=sent["message_id"]
    )
    t1 = time.perf_counter()
    mine = next(v for k, v in buttons(sheet).items() if "My style images" in k)
    await user.press(sheet["message_id"], mine)
    await user.wait_for(lambda m: "Send 1–5" in text_of(m), timeout=300, after_message_id=sheet["message_id"])
    style = await user.send_photo(photo)
    panel = await user.wait_for(
        lambda m: "Stylize" in str(buttons(m)), timeout=300, after_message_id=style["message_id"]
    )
    go = next(v for k, v in buttons(panel).items() if "Stylize" in k)
    t2 = time.perf_counter()
    await user.press(panel["message_id"], go)
    await user.wait_for(
        lambda m: "photo" in m and "⏱" in text_of(m), timeout=300, after_message_id=panel["message_id"]
    )
    t3 = time.perf_counter()
    await asyncio.sleep(0.5)  # anything sent twice would arrive by now
    return [t1 - t0, t3 - t2, t3 - t0], await user.bot_messages()


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
    p95 = samples[max(0, math.ceil(0.95 * len(samples)) - 1)]  # nearest rank
    print(f"{name:<36} n={len(samples):4d}  p50={p50 * 1000:7.1f} ms  p95={p95 * 1000:7.1f} ms")
    return p50, p95


async def real_models(models_dir: Path, runs: int) -> None:
    """Part 2: one user at a time, the real in-process job service and feed-forward networks."""
    from stylebot.client import InProcessJobClient

    photo, style = photo_bytes(512), photo_bytes(256, "rocket.jpg")
    sheet_s, first_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(storage_dir=Path(tmp) / "storage", models_dir=models_dir)
        client = InProcessJobClient(settings=settings)
        async with LocalTelegram() as tg:
            app = BotApp(settings, client, bot=create_bot(tg.token, tg.base_url))
            async with app, httpx.AsyncClient(timeout=300) as http:
                for run in range(runs + 1):  # the first run loads the networks: not counted
                    user = UserClient(tg.base_url, user_id=30_000 + run, http=http)
                    t0 = time.perf_counter()
                    sent = await user.send_photo(photo)
                    own = sent["photo"][-1]["file_unique_id"]  # the progress message starts with it
                    sheet = await user.wait_for(
                        lambda m: "photo" in m and "My style images" in str(buttons(m)),
                        timeout=300,
                        after_message_id=sent["message_id"],
                    )
                    t1 = time.perf_counter()
                    mine = next(v for k, v in buttons(sheet).items() if "My style images" in k)
                    await user.press(sheet["message_id"], mine)
                    sent = await user.send_photo(style)
                    panel = await user.wait_for(
                        lambda m: "Stylize" in str(buttons(m)),
                        timeout=300,
                        after_message_id=sent["message_id"],
                    )
                    go = next(v for k, v in buttons(panel).items() if "Stylize" in k)
                    t2 = time.perf_counter()
                    await user.press(panel["message_id"], go)
                    # The first styled image: the progress message no longer shows the user's photo.
                    await user.wait_for(
                        lambda m, own=own: (
                            "photo" in m
                            and "Style:" in text_of(m)
                            and m["photo"][-1]["file_unique_id"] != own
                        ),
                        timeout=300,
                        after_message_id=panel["message_id"],
                    )
                    t3 = time.perf_counter()
                    await user.send_command("cancel")
                    await app.runner.wait_idle()
                    if run:
                        sheet_s.append(t1 - t0)
                        first_s.append(t3 - t2)
        await client.aclose()
    print(f"real feed-forward networks ({models_dir}), photo 512 px, one user at a time, {runs} runs")
    summary("photo → sheet (target ≤ 3 s)", sheet_s)
    summary("Stylize → first image, 512 px (target ≤ 2 s)", first_s)


async def main(users: int, models_dir: Path | None, real_runs: int) -> int:
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

            jobs = InstantJobs(photo)
            app = BotApp(
                settings,
                jobs,
                bot=create_bot(tg.token, tg.base_url),
                timing=Timing(edit_interval=1.0, watch_interval=0.2),
            )
            async with app:
                await asyncio.sleep(0.5)
                start = time.perf_counter()
                flows = await asyncio.gather(
                    *(stylebot_user(tg.base_url, 20_000 + i, photo, http) for i in range(users))
                )
                wall = time.perf_counter() - start
    print(f"{users} concurrent users, local Telegram on 127.0.0.1, ML stubbed (instant jobs)")
    base50, _ = summary("baseline: echo bot, text → reply", [t for r in echo for t in r])
    runs = [f[0] for f in flows]
    c50, _ = summary("stylebot: photo → sheet", [r[0] for r in runs])
    r50, _ = summary("stylebot: Stylize → result photo", [r[1] for r in runs])
    summary("stylebot: whole flow (photo → result)", [r[2] for r in runs])
    print(f"ratio to baseline (p50): photo→sheet {c50 / base50:.1f}×, Stylize→result {r50 / base50:.1f}×")
    sheets = [sum("photo" in m and "Pick a style by its number" in text_of(m) for m in f[1]) for f in flows]
    results = [sum("photo" in m and "⏱" in text_of(m) for m in f[1]) for f in flows]
    once = sum(s == 1 and r == 1 for s, r in zip(sheets, results, strict=True))
    print(f"served once: {once}/{users} users got exactly one sheet and one result; jobs {jobs.submitted}")
    print(
        f"wall: echo {echo_wall:.1f} s for {2 * users} round trips; stylebot {wall:.1f} s for {users} "
        f"whole flows ({users / wall:.1f} flows/s)"
    )
    if models_dir is not None:
        await real_models(models_dir, real_runs)
    return 0 if once == users else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--models", type=Path, default=None, help="models folder with the feed-forward networks"
    )
    parser.add_argument("--runs", type=int, default=5, help="real-model runs (after one warm-up)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.users, args.models, args.runs)))
