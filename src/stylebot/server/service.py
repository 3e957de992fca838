"""The job service: a bounded queue, N workers, per-owner limits, cancel, progress and recovery.

One ``JobService`` runs jobs in this process (the embedded default and ``stylebot server
--backend local``). ``JobFrontend`` holds what every backend shares — input upload, spec
admission, results, previews, styles — so the Ray ingress behaves the same on the wire.

Every accepted job is written to the :class:`~stylebot.jobs.store.JobStore` before ``submit``
returns and again on each state change. On ``start()`` jobs recorded as queued or running are
queued again (in submit order); finished ones never run again, and resubmitting a finished job's
id returns its final status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stylebot.config import Settings
from stylebot.imaging import ImageError, encode_image, load_image
from stylebot.jobs.spec import (
    JOB_ID_PATTERN,
    OWNER_PATTERN,
    JobClientError,
    JobError,
    JobKind,
    JobSpec,
    JobState,
    JobStatus,
    StyleInfo,
)
from stylebot.jobs.store import JobRecord, JobStore
from stylebot.server.metrics import ServiceMetrics
from stylebot.storage.base import InvalidKeyError, KeyNotFoundError, Storage

log = logging.getLogger(__name__)

Runner = Callable[..., Awaitable[Any]]
"""``run_job(spec, storage, settings, *, on_progress, cancel) -> JobOutcome`` (jobs.pipeline)."""

# How long DELETE waits for a running job to reach its next cancel check before answering.
CANCEL_WAIT_S = 10.0
# Progress is kept in memory; the durable record is rewritten at most this often while running.
PERSIST_EVERY_S = 5.0
# Finished statuses kept in memory for fast polling; older ones are read back from the store.
FINISHED_CACHE = 1000
INPUT_FALLBACK_QUALITY = 85
def input_name(name: str) -> str:
    """Inputs are stored re-encoded as JPEG, so their name says so (the storage sanitises the rest)."""
    stem = name.rpartition(".")[0] if "." in name.rsplit("/", 1)[-1] else name
    return f"{stem or 'input'}.jpg"


def is_job_failed(exc: BaseException) -> bool:
    """``jobs.pipeline.JobFailed`` (or any error carrying a user-safe ``code`` and ``message``)."""
    return isinstance(getattr(exc, "code", None), str) and isinstance(getattr(exc, "message", None), str)


HOUSEKEEPING_INTERVAL_S = 3600.0


def owns_key(storage: Storage, owner: str, key: str) -> bool:
    """Whether ``key`` is a data key the storage generated for ``owner``'s scope.

    Keys look like ``<prefix>/<scope>-<32 hex>/<name>``; a fresh key for the owner gives the
    ``<prefix>/<scope>-`` part to compare with, so records and notebooks never match.
    """
    folder = storage.new_key(scope=owner, name="x").rsplit("/", 1)[0]
    head = folder[: -32]
    return re.fullmatch(re.escape(head) + r"[0-9a-f]{32}/[A-Za-z0-9_][A-Za-z0-9_.-]*", key) is not None


def default_workers(settings: Settings) -> int:
    """Settings win when given; else one worker per GPU, or one on CPU."""
    if "workers" in settings.model_fields_set:
        return settings.workers
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # torch missing or CUDA broken: CPU
        return 1


class JobBackend(Protocol):
    """What the HTTP app needs; implemented by JobService (local) and the Ray ingress backend."""

    settings: Settings

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str: ...
    async def submit(self, spec: JobSpec) -> JobStatus: ...
    async def status(self, job_id: str) -> JobStatus: ...
    async def cancel(self, job_id: str) -> JobStatus: ...
    async def result(self, job_id: str) -> bytes: ...
    async def preview(self, job_id: str) -> bytes | None: ...
    async def styles(self) -> list[StyleInfo]: ...
    def metrics(self) -> tuple[bytes, str]: ...


class JobFrontend:
    """Admission and read paths shared by every backend."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self.store = JobStore(storage)
        self._housekeeping: asyncio.Task | None = None

    # --- retention -----------------------------------------------------------------------------
    async def housekeep(self) -> int:
        """One retention sweep: expired inputs/results/notebooks, then old finished job records."""
        removed = await self.storage.expire()
        removed += await self.store.prune(self.settings.retention_hours * 3600)
        return removed

    def start_housekeeping(self, every_s: float = HOUSEKEEPING_INTERVAL_S) -> None:
        """Run :meth:`housekeep` now and then every ``every_s`` seconds; failures are logged, not fatal."""

        async def loop() -> None:
            while True:
                try:
                    removed = await self.housekeep()
                    if removed:
                        log.info("retention: removed %d expired object(s)", removed)
                except Exception as exc:  # storage down: try again at the next tick
                    log.warning("retention sweep failed: %s", exc)
                await asyncio.sleep(every_s)

        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(loop(), name="stylebot-retention")

    async def stop_housekeeping(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
            self._housekeeping = None

    # --- inputs --------------------------------------------------------------------------------
    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        """Validate an image with ``imaging`` and store it re-encoded (no EXIF, no surprises)."""
        if not OWNER_PATTERN.fullmatch(owner):
            raise JobClientError("invalid", "owner must be 1-64 characters of [A-Za-z0-9_.:-]", field="owner")
        try:
            img = await asyncio.to_thread(
                load_image, data, max_pixels=self.settings.max_input_pixels,
                max_bytes=self.settings.max_upload_bytes,
            )
            encoded = await asyncio.to_thread(encode_image, img, "JPEG")
            if len(encoded) > self.settings.max_upload_bytes:
                # Quality 95 at 4:4:4 can outgrow a camera's own JPEG; the stored input must stay
                # within the limit the pipeline reads it back with.
                encoded = await asyncio.to_thread(encode_image, img, "JPEG", quality=INPUT_FALLBACK_QUALITY)
        except ImageError as exc:
            raise JobClientError(exc.code, str(exc), field="file") from exc
        return await self.storage.put(
            encoded, scope=owner, name=input_name(name), content_type="image/jpeg"
        )

    # --- admission -----------------------------------------------------------------------------
    def effective_spec(self, spec: JobSpec) -> JobSpec:
        """Apply operator policy: fast-dev-run is the operator's switch, not the caller's.

        ``DEFAULT_FAST_DEV_RUN`` turns it on for every job; a caller's ``params.fast_dev_run``
        counts only when ``ALLOW_CALLER_FAST_DEV_RUN`` is set, otherwise it is ignored.
        """
        requested = spec.params.fast_dev_run and self.settings.allow_caller_fast_dev_run
        fast = self.settings.default_fast_dev_run or requested
        if fast == spec.params.fast_dev_run:
            return spec
        return spec.model_copy(update={"params": spec.params.model_copy(update={"fast_dev_run": fast})})

    async def check_inputs(self, spec: JobSpec) -> None:
        """Every key must be an image in the owner's own scope that exists (not a record, not a
        notebook, not another owner's input or result)."""
        keys = [("content_key", spec.content_key)] + [
            (f"style_keys.{i}", k) for i, k in enumerate(spec.style_keys)
        ]
        for field_name, key in keys:
            if not owns_key(self.storage, spec.owner, key):
                raise JobClientError(
                    "foreign_key", f"{field_name}: this image belongs to someone else or is not an input; "
                    "upload it first", field=field_name,
                )
            try:
                found = await self.storage.exists(key)
            except InvalidKeyError:
                found = False
            if not found:
                raise JobClientError(
                    "invalid", f"{field_name}: no such input; upload the image first", field=field_name
                )

    @staticmethod
    def same_job(old: JobSpec, new: JobSpec) -> None:
        if old.model_dump(exclude={"params": {"fast_dev_run"}}) != new.model_dump(
            exclude={"params": {"fast_dev_run"}}
        ):
            raise JobClientError("invalid", "job_id is already used by a different job", field="job_id")

    # --- reads ---------------------------------------------------------------------------------
    async def _record(self, job_id: str) -> JobRecord:
        record = await self.store.load(job_id) if JOB_ID_PATTERN.fullmatch(job_id) else None
        if record is None:
            raise JobClientError("not_found", "There is no such job.")
        return record

    async def status(self, job_id: str) -> JobStatus:
        return (await self._record(job_id)).status

    async def result(self, job_id: str) -> bytes:
        status = await self.status(job_id)
        if status.state is not JobState.done or status.result_key is None:
            raise JobClientError("not_ready", f"The job is {status.state.value}, it has no result.")
        try:
            return await self.storage.get(status.result_key)
        except KeyNotFoundError as exc:
            raise JobClientError("not_found", "The result has expired.") from exc

    async def preview(self, job_id: str) -> bytes | None:
        status = await self.status(job_id)
        if status.preview_key is None:
            return None
        try:
            return await self.storage.get(status.preview_key)
        except KeyNotFoundError:
            return None

    async def styles(self) -> list[StyleInfo]:
        from stylebot.ml.weights import list_models

        models = await asyncio.to_thread(list_models, self.settings.models_dir)
        return [
            StyleInfo(name=m.name, title=m.title, kind=m.kind, installed=m.installed, reason=m.reason)
            for m in models
            if m.kind == "cyclegan"  # backbones are not styles a user can pick
        ]


@dataclass
class _Job:
    record: JobRecord
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_token: Any = None
    recovered: bool = False
    preview_bytes: bytes | None = None
    preview_task: asyncio.Task | None = None
    last_persist: float = 0.0
    # Record writes of one job go one at a time, so a late progress write never lands after the
    # final one.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def spec(self) -> JobSpec:
        return self.record.spec

    @property
    def status(self) -> JobStatus:
        return self.record.status

    def update(self, **changes: Any) -> None:
        self.record.status = self.record.status.model_copy(update=changes)


class JobService(JobFrontend):
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        runner: Runner | None = None,
        workers: int | None = None,
        queue_size: int | None = None,
        per_owner_limit: int | None = None,
    ) -> None:
        super().__init__(storage, settings)
        if runner is None:
            from stylebot.jobs.pipeline import run_job

            runner = run_job
        self.runner = runner
        self.workers = workers or default_workers(settings)
        self.queue_size = queue_size or settings.queue_size
        self.per_owner_limit = per_owner_limit or settings.per_owner_limit
        self._jobs: dict[str, _Job] = {}  # queued and running
        self._finished: collections.OrderedDict[str, JobStatus] = collections.OrderedDict()
        self._queue: collections.deque[str] = collections.deque()
        self._wakeup: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._mean_run_s: dict[JobKind, float] = {}
        self._finished_counts: collections.Counter[str] = collections.Counter()
        self._submit_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self._metrics = ServiceMetrics(self._metric_state)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started, self._stopping = True, False
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Condition()
        recovered = 0
        for record in await self.store.all():
            if record.status.finished:
                continue
            job = _Job(record, recovered=True)
            job.update(state=JobState.queued, progress=0.0, eta_s=None, stage=None, position=None)
            await self.store.save(job.record)
            self._jobs[record.spec.job_id] = job
            self._queue.append(record.spec.job_id)
            recovered += 1
        if recovered:
            log.info("re-queued %d unfinished job(s) from the job store", recovered)
        self._tasks = [asyncio.create_task(self._worker(i), name=f"stylebot-worker-{i}")
                       for i in range(self.workers)]
        self.start_housekeeping()

    async def stop(self) -> None:
        """Stop workers; running jobs stay recorded as running and resume on the next start."""
        if not self._started:
            return
        self._stopping = True
        await self.stop_housekeeping()
        for job in self._jobs.values():
            if job.cancel_token is not None:
                job.cancel_token.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._started = False

    # --- submit / status / cancel --------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> JobStatus:
        if not self._started:
            raise JobClientError("unavailable", "The style service is not running.")
        spec = self.effective_spec(spec)
        async with self._submit_lock:  # the checks and the enqueue must not interleave
            existing = await self._existing(spec.job_id)
            if existing is not None:
                self.same_job(existing[0], spec)
                return existing[1]
            active = sum(1 for j in self._jobs.values() if j.spec.owner == spec.owner)
            if active >= self.per_owner_limit:
                raise JobClientError(
                    "owner_limit",
                    f"You already have {active} job(s) in progress; wait for it to finish or cancel it.",
                )
            if len(self._queue) >= self.queue_size:
                raise JobClientError(
                    "busy", "The style service is busy right now; please try again in a minute.",
                    retry_after=self._retry_after(),
                )
            await self.check_inputs(spec)
            job = _Job(JobRecord(spec=spec, status=JobStatus(
                job_id=spec.job_id, owner=spec.owner, kind=spec.kind, state=JobState.queued)))
            await self.store.save(job.record)
            self._jobs[spec.job_id] = job
            self._queue.append(spec.job_id)
        await self._notify()
        return self._snapshot(job)

    async def _existing(self, job_id: str) -> tuple[JobSpec, JobStatus] | None:
        if job_id in self._jobs:
            job = self._jobs[job_id]
            return job.spec, self._snapshot(job)
        record = await self.store.load(job_id)
        return (record.spec, record.status) if record is not None else None

    async def status(self, job_id: str) -> JobStatus:
        if job_id in self._jobs:
            return self._snapshot(self._jobs[job_id])
        if job_id in self._finished:
            return self._finished[job_id]
        return await super().status(job_id)

    async def cancel(self, job_id: str) -> JobStatus:
        job = self._jobs.get(job_id)
        if job is None:
            return await self.status(job_id)  # finished (unchanged) or not_found
        if job.status.state is JobState.queued:
            with contextlib.suppress(ValueError):
                self._queue.remove(job_id)
            await self._finish(job, JobState.cancelled)
        elif job.cancel_token is not None:
            job.cancel_token.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.finished.wait(), CANCEL_WAIT_S)
        return await self.status(job_id)

    def metrics(self) -> tuple[bytes, str]:
        return self._metrics.render()

    # --- internals -----------------------------------------------------------------------------
    async def _notify(self) -> None:
        assert self._wakeup is not None
        async with self._wakeup:
            self._wakeup.notify_all()

    def _snapshot(self, job: _Job) -> JobStatus:
        status = job.status
        if status.state is JobState.queued:
            try:
                position = self._queue.index(status.job_id)
            except ValueError:  # being handed to a worker right now
                position = 0
            return status.model_copy(update={"position": position, "eta_s": self._queued_eta(position)})
        return status.model_copy()

    def _queued_eta(self, position: int) -> float | None:
        """Rough wait: the work ahead of this job (and the job itself) spread over the workers."""
        ahead = [self._jobs[i].spec.kind for i in list(self._queue)[: position + 1] if i in self._jobs]
        if any(kind not in self._mean_run_s for kind in ahead):
            return None
        running = [j.status.eta_s or 0.0 for j in self._jobs.values() if j.status.state is JobState.running]
        return (sum(self._mean_run_s[k] for k in ahead) + sum(running)) / self.workers

    def _retry_after(self) -> float:
        mean = max(self._mean_run_s.values(), default=30.0)
        return max(5.0, round(mean, 0))

    def _metric_state(self) -> tuple[int, dict[str, int]]:
        counts = collections.Counter(j.status.state.value for j in self._jobs.values())
        counts.update(self._finished_counts)
        return len(self._queue), dict(counts)

    async def _next_job(self) -> _Job:
        assert self._wakeup is not None
        async with self._wakeup:
            await self._wakeup.wait_for(lambda: bool(self._queue))
            return self._jobs[self._queue.popleft()]

    async def _worker(self, index: int) -> None:
        while True:
            job = await self._next_job()
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one job take a worker down
                log.exception("worker %d: job %s crashed outside the runner", index, job.spec.job_id)

    async def _run(self, job: _Job) -> None:
        from stylebot.ml.nst import Cancelled, CancelToken

        spec = job.spec
        started = time.time()
        job.cancel_token = CancelToken()
        job.record.attempts += 1
        job.update(state=JobState.running, position=None, started_at=started, progress=0.0)
        if not job.recovered:
            self._metrics.job_wait.labels(spec.kind.value).observe(max(0.0, started - job.status.created_at))
        await self._persist(job)
        try:
            outcome = await self.runner(
                spec, self.storage, self.settings,
                on_progress=self._progress_callback(job), cancel=job.cancel_token,
            )
        except Cancelled:
            if self._stopping:
                return  # shutdown, not a user cancel: the record stays "running" and resumes later
            await self._finish(job, JobState.cancelled)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_job_failed(exc):
                error = JobError(code=exc.code, message=exc.message)  # type: ignore[attr-defined]
            else:
                log.exception("job %s failed unexpectedly", spec.job_id)
                error = JobError(code="internal", message="Something went wrong while styling the image.")
            await self._finish(job, JobState.failed, error=error)
        else:
            await self._finish(
                job, JobState.done, result_key=outcome.result_key, losses=outcome.losses, progress=1.0
            )

    def _progress_callback(self, job: _Job) -> Callable[[Any], None]:
        def on_progress(progress: Any) -> None:
            if threading.get_ident() == self._loop_thread:
                self._apply_progress(job, progress)
            elif self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._apply_progress, job, progress)

        return on_progress

    def _apply_progress(self, job: _Job, progress: Any) -> None:
        if job.status.state is not JobState.running:
            return
        job.update(
            progress=min(1.0, max(0.0, float(progress.fraction))), eta_s=progress.eta_s,
            stage=progress.stage, losses=progress.losses or job.status.losses,
        )
        if progress.preview:
            job.preview_bytes = progress.preview
            if job.preview_task is None or job.preview_task.done():
                job.preview_task = asyncio.create_task(self._store_preview(job))
        if time.monotonic() - job.last_persist >= PERSIST_EVERY_S:
            job.last_persist = time.monotonic()
            task = asyncio.create_task(self._persist(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _store_preview(self, job: _Job) -> None:
        # Only the newest preview matters: keep writing until no newer one arrived meanwhile.
        while job.preview_bytes is not None:
            data, job.preview_bytes = job.preview_bytes, None
            try:
                key = await self.storage.put(data, scope=job.spec.owner, name="preview.jpg",
                                             content_type="image/jpeg")
            except Exception:
                log.warning("could not store a preview for job %s", job.spec.job_id, exc_info=True)
                return
            old = job.status.preview_key
            job.update(preview_key=key)
            if old is not None:  # a new key per preview; only the latest is kept
                with contextlib.suppress(Exception):
                    await self.storage.delete(old)

    async def _persist(self, job: _Job) -> None:
        async with job.write_lock:
            if job.status.finished:
                return
            try:
                await self.store.save(job.record)
            except Exception:
                log.warning("could not save the record of job %s", job.spec.job_id, exc_info=True)

    async def _finish(self, job: _Job, state: JobState, **changes: Any) -> None:
        now = time.time()
        if job.preview_task is not None:
            with contextlib.suppress(Exception):
                await job.preview_task
        final = job.status.model_copy(
            update={"state": state, "finished_at": now, "eta_s": None, "position": None, **changes})
        # Durable before anyone is told it is finished; from here on no await, so no caller can see
        # the job finished while it still counts against its owner's limit.
        async with job.write_lock:
            await self.store.save(job.record.model_copy(update={"status": final}))
            job.record.status = final
        kind = job.spec.kind
        if state is JobState.done and job.status.started_at is not None:
            seconds = now - job.status.started_at
            self._metrics.job_duration.labels(kind.value).observe(seconds)
            previous = self._mean_run_s.get(kind)
            self._mean_run_s[kind] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
        self._metrics.jobs_finished.labels(kind.value, state.value).inc()
        self._finished_counts[state.value] += 1
        self._jobs.pop(job.spec.job_id, None)
        self._finished[job.spec.job_id] = job.status
        while len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)
        job.finished.set()
