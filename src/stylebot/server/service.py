"""The local backend: the job lifecycle with asyncio workers in this process, one queue per lane.

Used by the embedded default (``InProcessJobClient``) and ``stylebot server --backend local``.
Everything about a job's life — admission, records, progress, cancel, finish now, recovery —
lives in :mod:`stylebot.server.lifecycle`; this module only queues jobs and runs them. The
``fast`` lane (single feed-forward passes) has its own worker, so an instant or CycleGAN result
never waits behind a refinement in the ``long`` lane.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stylebot.config import Settings
from stylebot.jobs.spec import JobState
from stylebot.jobs.store import JobRecord
from stylebot.server.lifecycle import JobLifecycle, Lane, lane_for
from stylebot.storage.base import Storage

log = logging.getLogger(__name__)

Runner = Callable[..., Awaitable[Any]]
"""``run_job(spec, storage, settings, *, on_progress, cancel) -> JobOutcome`` (jobs.pipeline)."""


def default_workers(settings: Settings) -> int:
    """Settings win when given; else one worker per GPU, or one on CPU."""
    if "workers" in settings.model_fields_set:
        return settings.workers
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # torch missing or CUDA broken: CPU
        return 1


class JobService(JobLifecycle):
    """``workers`` run refinements (the long lane); ``fast_workers`` run single passes."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        runner: Runner | None = None,
        workers: int | None = None,
        fast_workers: int = 1,
        queue_size: int | None = None,
        per_owner_limit: int | None = None,
    ) -> None:
        super().__init__(storage, settings, per_owner_limit=per_owner_limit, queue_size=queue_size)
        if runner is None:
            from stylebot.jobs.pipeline import run_job

            runner = run_job
        self.runner = runner
        self.workers = workers or default_workers(settings)
        self.fast_workers = fast_workers
        self._queues: dict[Lane, collections.deque[str]] = {lane: collections.deque() for lane in Lane}
        self._wakeup: dict[Lane, asyncio.Condition] = {}
        self._tokens: dict[str, Any] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        if self.started:
            return
        self._stopping = False
        self._wakeup = {lane: asyncio.Condition() for lane in Lane}
        await super().start()
        counts = {Lane.long: self.workers, Lane.fast: self.fast_workers}
        self._tasks = [
            asyncio.create_task(self._worker(lane, i), name=f"stylebot-{lane}-worker-{i}")
            for lane, n in counts.items()
            for i in range(n)
        ]

    async def stop(self) -> None:
        """Stop workers; running jobs stay recorded as running and resume on the next start."""
        if not self.started:
            return
        self._stopping = True
        await super().stop()
        for token in self._tokens.values():
            token.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for queue in self._queues.values():
            queue.clear()
        self.active.clear()

    # --- dispatch ------------------------------------------------------------------------------
    def dispatch(self, record: JobRecord) -> None:
        lane = lane_for(record.spec)
        self._queues[lane].append(record.spec.job_id)
        self._spawn(self._notify(lane))

    def interrupt(self, job_id: str) -> None:
        for queue in self._queues.values():
            with contextlib.suppress(ValueError):
                queue.remove(job_id)
        token = self._tokens.get(job_id)
        if token is not None:
            token.cancel()

    def queue_lengths(self) -> dict[Lane, int]:
        return {lane: len(queue) for lane, queue in self._queues.items()}

    def queue_position(self, job_id: str) -> int | None:
        for queue in self._queues.values():
            with contextlib.suppress(ValueError):
                return queue.index(job_id)
        return 0  # being handed to a worker right now

    async def _notify(self, lane: Lane) -> None:
        condition = self._wakeup.get(lane)
        if condition is not None:
            async with condition:
                condition.notify_all()

    async def _next(self, lane: Lane) -> str:
        condition, queue = self._wakeup[lane], self._queues[lane]
        async with condition:
            await condition.wait_for(lambda: bool(queue))
            return queue.popleft()

    async def _worker(self, lane: Lane, index: int) -> None:
        while True:
            job_id = await self._next(lane)
            record = self.active.get(job_id)
            if record is None:
                continue
            try:
                await self._run(record)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one job take a worker down
                log.exception("%s worker %d: job %s crashed outside the runner", lane, index, job_id)

    async def _run(self, record: JobRecord) -> None:
        from stylebot.ml.runtime import CancelToken

        job_id = record.spec.job_id
        token = self._tokens[job_id] = CancelToken()  # before the first await: cancel may come now
        if not await self.begin(record):
            self._tokens.pop(job_id, None)
            return
        self.observe_start(record)
        outcome: Any
        try:
            outcome = await self.runner(
                record.spec,
                self.storage,
                self.settings,
                on_progress=self.progress_callback(record),
                cancel=token,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = exc
        finally:
            self._tokens.pop(job_id, None)
        final = await self.conclude(record, outcome, shutting_down=self._stopping)
        if final is not None and final.state is not JobState.running:
            self.ended(final, record.spec)
