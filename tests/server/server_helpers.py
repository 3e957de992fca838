"""Helpers for the ML server tests: a controllable fake runner, tiny images, polling."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from stylebot.config import Settings
from stylebot.jobs.spec import JobSpec


def jpeg(size: tuple[int, int] = (48, 32), color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class FakeOutcome:
    result_key: str
    losses: dict | None
    seconds: float


@dataclass
class FakeProgress:
    fraction: float
    eta_s: float | None = None
    stage: str | None = None
    losses: dict | None = None
    preview: bytes | None = None


def FakeJobFailed(code: str, message: str) -> Exception:
    from stylebot.jobs.pipeline import JobFailed

    return JobFailed(code, message)


@dataclass
class FakeRunner:
    """Stands in for ``jobs.pipeline.run_job``; each job waits at a gate the test opens.

    ``hold=False`` lets jobs run straight through. ``fail`` maps job ids to an exception to raise.
    """

    hold: bool = True
    started: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    fail: dict[str, BaseException] = field(default_factory=dict)
    preview: bytes | None = None
    running: asyncio.Event = field(default_factory=asyncio.Event)

    def gate(self, job: str) -> asyncio.Event:
        return self.gates.setdefault(job, asyncio.Event())

    async def __call__(
        self, spec: JobSpec, storage: Any, settings: Settings, *, on_progress: Callable, cancel: Any
    ) -> FakeOutcome:
        from stylebot.ml.runtime import Cancelled

        self.started.append(spec.job_id)
        self.running.set()
        # Progress comes from a worker thread in the real pipeline.
        await asyncio.to_thread(
            on_progress,
            FakeProgress(0.5, eta_s=3.0, stage="scale 1/2", losses={"style": 1.0}, preview=self.preview),
        )
        gate = self.gate(spec.job_id)
        while self.hold and not gate.is_set():
            if cancel.cancelled:
                raise Cancelled()
            await asyncio.sleep(0.01)
        if cancel.cancelled:
            raise Cancelled()
        if spec.job_id in self.fail:
            raise self.fail[spec.job_id]
        key = await storage.put(jpeg((40, 40), (10, 200, 10)), scope="result", name="result.jpg")
        return FakeOutcome(result_key=key, losses={"style": 0.5}, seconds=0.01)


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(proc: Any, base_url: str, timeout: float = 60.0) -> None:
    """Poll ``/healthz`` of a server subprocess until it answers (or the process dies)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become healthy in {timeout}s")
