"""Helpers for the bot tests: images, a fake ML side, and reading chat messages.

``FakeJobClient`` stands in for the ML side where a test is about the conversation; the happy
paths, restarts and the browser test use the real in-process job service with fast-dev-run jobs.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from PIL import Image

from stylebot.assets import sample_path
from stylebot.bot.delivery import Timing
from stylebot.client import JobClientError
from stylebot.imaging import load_image
from stylebot.jobs.spec import PRETRAINED_MODELS, JobError, JobSpec, JobState, JobStatus
from stylebot.telegram import UserClient

FAST_TIMING = Timing(
    edit_interval=0.1,
    preview_interval=0.2,
    watch_interval=0.05,
    retry_base=0.05,
    retry_cap=0.2,
    outage_notice_after=0.5,
    claim_ttl=2.0,
    sweep_interval=0.3,
)
# Tests type faster than people: bursts merge only within 50 ms here (the flood test uses the default).
FAST = {"timing": FAST_TIMING, "album_latency": 0.3, "burst_gap": 0.05}


def jpeg(name: str = "chelsea.jpg", size: int = 64) -> bytes:
    img = Image.open(sample_path(name)).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png(size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (size, size), (10, 200, 30, 128)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class FakeStyle:
    name: str
    title: str
    installed: bool = True
    reason: str | None = None
    kind: str = "cyclegan"


@dataclass
class FakeJob:
    spec: JobSpec
    status: JobStatus
    release: asyncio.Event = field(default_factory=asyncio.Event)


class FakeJobClient:
    """The ML side in memory: jobs advance queued → running 50% → done when ``release``d
    (or at once with ``auto=True``); ``down`` makes every call fail as unreachable."""

    def __init__(self, *, auto: bool = True, per_owner_limit: int = 1, sheets: bool = True) -> None:
        self.auto = auto
        self.sheets = sheets  # False: as without the gallery network (sheet jobs fail)
        self.sheet_jobs: dict[str, JobStatus] = {}
        self.finished_early: list[str] = []
        self.per_owner_limit = per_owner_limit
        self.down = False
        self.inputs: dict[str, bytes] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.cancelled: list[str] = []
        self.uninstalled = {"style_vangogh": "weights not downloaded (stylebot models pull style_vangogh)"}

    def _check(self) -> None:
        if self.down:
            raise JobClientError("unavailable", "The style service is not reachable right now.")

    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        self._check()
        load_image(data)
        key = f"inputs/{owner.replace(':', '-')}-{uuid.uuid4().hex[:8]}/{name}"
        self.inputs[key] = data
        return key

    async def submit(self, spec: JobSpec) -> JobStatus:
        self._check()
        if spec.kind == "sheet":
            assert spec.content_key in self.inputs
            state = JobState.done if self.sheets else JobState.failed
            error = None if self.sheets else JobError(code="model_not_installed", message="not installed")
            status = JobStatus(job_id=spec.job_id, owner=spec.owner, kind=spec.kind, state=state, error=error)
            self.sheet_jobs[spec.job_id] = status
            return status
        active = [j for j in self.jobs.values() if j.spec.owner == spec.owner and not j.status.finished]
        if len(active) >= self.per_owner_limit:
            raise JobClientError("owner_limit", "one job at a time")
        assert spec.content_key in self.inputs and all(k in self.inputs for k in spec.style_keys)
        status = JobStatus(
            job_id=spec.job_id, owner=spec.owner, kind=spec.kind, state=JobState.queued, position=1
        )
        job = FakeJob(spec, status)
        if self.auto:
            job.release.set()
        self.jobs[spec.job_id] = job
        return status

    def _job(self, job_id: str) -> FakeJob:
        if job_id not in self.jobs:
            raise JobClientError("not_found", "no such job")
        return self.jobs[job_id]

    async def status(self, job_id: str) -> JobStatus:
        self._check()
        if job_id in self.sheet_jobs:
            return self.sheet_jobs[job_id]
        return self._job(job_id).status

    async def finish(self, job_id: str) -> JobStatus:
        """ "Good, send it": the job ends now with its latest image."""
        self._check()
        job = self._job(job_id)
        if not job.status.finished:
            if job.status.preview_key is None:
                raise JobClientError("not_ready", "no image yet")
            self.finished_early.append(job_id)
            job.release.set()
        return job.status

    async def cancel(self, job_id: str) -> JobStatus:
        self._check()
        job = self._job(job_id)
        self.cancelled.append(job_id)
        if not job.status.finished:
            job.status = job.status.model_copy(
                update={"state": JobState.cancelled, "finished_at": time.time()}
            )
        return job.status

    async def result(self, job_id: str) -> bytes:
        self._check()
        if job_id in self.sheet_jobs:
            return jpeg("astronaut.jpg", 96)
        return jpeg("coffee.jpg", 80)

    async def preview(self, job_id: str) -> bytes | None:
        return jpeg("rocket.jpg", 40)

    async def styles(self) -> list[FakeStyle]:
        self._check()
        return [
            FakeStyle(n, n, n not in self.uninstalled, self.uninstalled.get(n)) for n in PRETRAINED_MODELS
        ]

    async def watch(self, job_id: str, *, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        self._check()
        if job_id in self.sheet_jobs:
            yield self.sheet_jobs[job_id]
            return
        job = self._job(job_id)
        yield job.status
        if not job.status.finished:
            await asyncio.sleep(interval)
            job.status = job.status.model_copy(
                update={
                    "state": JobState.running,
                    "position": None,
                    "progress": 0.5,
                    "eta_s": 3.0,
                    "started_at": time.time(),
                    "preview_key": "p1",
                }
            )
            yield job.status
        while not job.release.is_set() and not job.status.finished:
            self._check()
            await asyncio.sleep(interval)
        if not job.status.finished:
            job.status = job.status.model_copy(
                update={
                    "state": JobState.done,
                    "progress": 1.0,
                    "finished_at": time.time(),
                    "result_key": "r",
                }
            )
        yield job.status

    async def aclose(self) -> None:
        return None


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


def buttons(message: dict) -> dict[str, str]:
    """Button text → callback data."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row}


def button(message: dict, contains: str) -> str:
    for text, data in buttons(message).items():
        if contains in text:
            return data
    raise AssertionError(f"no button with {contains!r} in {list(buttons(message))}")


async def reply_to(user: UserClient, sent: dict | list[dict], predicate=None, timeout: float = 15.0) -> dict:
    last = sent[-1] if isinstance(sent, list) else sent
    return await user.wait_for(predicate, timeout=timeout, after_message_id=last["message_id"])


def has_buttons(message: dict) -> bool:
    return bool(buttons(message))


async def press_button(user: UserClient, message: dict, contains: str) -> dict:
    """Press the button whose text contains ``contains``, paging a sheet keyboard to find it;
    returns the bot's answer to the press."""
    for _ in range(5):
        message = next(m for m in await user.history() if m["message_id"] == message["message_id"])
        if any(contains in text for text in buttons(message)):
            press = await user.press(message["message_id"], button(message, contains))
            return await user.wait_answer(press["id"])
        if not any("▶" in text for text in buttons(message)):
            break
        press = await user.press(message["message_id"], button(message, "▶"))
        await user.wait_answer(press["id"])
    raise AssertionError(f"no button with {contains!r} in {list(buttons(message))}")
