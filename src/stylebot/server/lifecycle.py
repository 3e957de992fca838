"""The one job lifecycle, on :class:`~stylebot.jobs.store.JobStore`, for every backend.

Two classes, one set of rules:

- :class:`JobRecorder` is what runs next to a job: it marks the job running, applies progress
  (a new storage key per preview; only the latest is kept), and writes the final state — never
  over a state that is already final (cancelled or finished early meanwhile). The local workers
  use it in-process; each Ray worker replica has its own.
- :class:`JobLifecycle` adds what the API needs: input upload, admission (per-owner limit in each lane, a
  bounded queue, idempotent submit by job id, inputs in the owner's own scope), status with queue
  position, cancel, "finish now", restart recovery, retention and the metrics.

A backend subclasses :class:`JobLifecycle` and provides only dispatch: :meth:`~JobLifecycle.dispatch`
(hand an admitted job to a worker), :meth:`~JobLifecycle.interrupt` (stop a running one) and
:meth:`~JobLifecycle.queue_lengths`. Errors reach users only through :func:`error_for`.

Jobs run in two lanes: ``fast`` (single feed-forward passes: CycleGAN, instant, gallery, sheets)
and ``long`` (refinement), so a short job never waits behind a long one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from stylebot.config import Settings
from stylebot.imaging import ImageError, encode_image, load_image, probe, resize_long_side
from stylebot.jobs.pipeline import INTERNAL_MESSAGE, JobFailed
from stylebot.jobs.spec import (
    JOB_ID_PATTERN,
    OWNER_PATTERN,
    JobClientError,
    JobError,
    JobKind,
    JobSpec,
    JobState,
    JobStatus,
    Preset,
    StyleInfo,
)
from stylebot.jobs.store import JobRecord, JobStore
from stylebot.ml.runtime import Cancelled
from stylebot.server.metrics import ServiceMetrics
from stylebot.storage.base import InvalidKeyError, KeyNotFoundError, Storage

log = logging.getLogger(__name__)

# How long DELETE waits for a running job to reach its next cancel check before answering.
CANCEL_WAIT_S = 10.0
# Finished statuses kept in memory for fast polling; older ones are read back from the store.
FINISHED_CACHE = 1000
HOUSEKEEPING_INTERVAL_S = 3600.0
# Stored inputs are re-encoded; when quality 95 at 4:4:4 outgrows the upload limit, this is used.
INPUT_FALLBACK_QUALITY = 85
PREVIEW_NAME = "preview.jpg"
RESULT_NAME = "result.jpg"


class Lane(StrEnum):
    fast = "fast"
    long = "long"


def lane_for(spec: JobSpec) -> Lane:
    """Refinement (NST with any preset but ``instant``) is long; every single pass is fast."""
    if spec.kind.fast_lane or spec.params.preset is Preset.instant:
        return Lane.fast
    return Lane.long


def preset_label(spec: JobSpec) -> str:
    """The preset as a metrics label; ``none`` for kinds that have no preset."""
    return spec.params.preset.value if spec.kind is JobKind.nst else "none"


def error_for(exc: BaseException) -> JobError:
    """The user-safe ``code`` and ``message`` for an exception that ended a job.

    ``JobFailed`` (the pipeline's) and ``JobClientError`` carry their own; anything else is
    logged and becomes ``internal`` with one generic message.
    """
    if isinstance(exc, JobFailed | JobClientError):
        return JobError(code=exc.code, message=exc.message)
    log.error("job failed unexpectedly: %r", exc, exc_info=exc)
    return JobError(code="internal", message=INTERNAL_MESSAGE)


def input_name(name: str) -> str:
    """Inputs are stored re-encoded as JPEG, so their name says so (the storage sanitises the rest)."""
    stem = name.rpartition(".")[0] if "." in name.rsplit("/", 1)[-1] else name
    return f"{stem or 'input'}.jpg"


class JobRecorder:
    """Keeps a running job's record current: start, progress, previews, final state."""

    def __init__(self, storage: Storage, settings: Settings, *, persist_every_s: float = 5.0) -> None:
        self.storage = storage
        self.settings = settings
        self.store = JobStore(storage)
        self.persist_every_s = persist_every_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending_preview: dict[str, bytes] = {}
        self._preview_tasks: dict[str, asyncio.Task] = {}
        self._last_persist: dict[str, float] = {}
        self._background: set[asyncio.Task] = set()

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def begin(self, record: JobRecord) -> bool:
        """Mark the job running; False when its stored record is already final (never run twice)."""
        stored = await self.store.load(record.spec.job_id)
        if record.status.finished or (stored is not None and stored.status.finished):
            return False
        record.attempts = max(record.attempts, stored.attempts if stored else 0) + 1
        record.status = record.status.model_copy(
            update={
                "state": JobState.running,
                "position": None,
                "started_at": time.time(),
                "progress": 0.0,
                "eta_s": None,
                "stage": None,
            }
        )
        self._last_persist[record.spec.job_id] = time.monotonic()
        await self.store.save(record)
        return True

    def progress_callback(self, record: JobRecord) -> Callable[[Any], None]:
        """``on_progress`` for the pipeline; safe to call from any thread."""
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()

        def on_progress(progress: Any) -> None:
            if threading.get_ident() == loop_thread:
                self.progress(record, progress)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self.progress, record, progress)

        return on_progress

    def progress(self, record: JobRecord, progress: Any) -> None:
        """Apply one progress event (on the event loop's thread)."""
        if record.status.state is not JobState.running:
            return
        record.status = record.status.model_copy(
            update={
                "progress": min(1.0, max(0.0, float(progress.fraction))),
                "eta_s": progress.eta_s,
                "stage": progress.stage,
                "losses": progress.losses or record.status.losses,
            }
        )
        job_id = record.spec.job_id
        if progress.preview:
            self._pending_preview[job_id] = progress.preview
            task = self._preview_tasks.get(job_id)
            if task is None or task.done():
                self._preview_tasks[job_id] = asyncio.create_task(self._store_previews(record))
        elif time.monotonic() - self._last_persist.get(job_id, 0.0) >= self.persist_every_s:
            self._spawn(self._persist(record))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store_previews(self, record: JobRecord) -> None:
        # Only the newest preview matters: keep writing until no newer one arrived meanwhile.
        job_id = record.spec.job_id
        while (data := self._pending_preview.pop(job_id, None)) is not None:
            try:
                key = await self.storage.put(
                    data, scope=record.spec.owner, name=PREVIEW_NAME, content_type="image/jpeg"
                )
            except Exception:
                log.warning("could not store a preview for job %s", job_id, exc_info=True)
                return
            old = record.status.preview_key
            record.status = record.status.model_copy(update={"preview_key": key})
            record.previews += 1
            await self._persist(record)
            if old is not None:  # a new key per preview; storage keeps only the latest
                with contextlib.suppress(Exception):
                    await self.storage.delete(old)

    async def _persist(self, record: JobRecord) -> None:
        job_id = record.spec.job_id
        async with self._lock(job_id):
            if record.status.finished:
                return
            self._last_persist[job_id] = time.monotonic()
            try:
                stored = await self.store.load(job_id)
                if stored is not None and stored.status.finished:  # ended elsewhere meanwhile
                    return
                await self.store.save(record)
            except Exception:
                log.warning("could not save the record of job %s", job_id, exc_info=True)

    async def conclude(
        self, record: JobRecord, outcome: Any, *, shutting_down: bool = False
    ) -> JobStatus | None:
        """Record how a run ended: a ``JobOutcome``, ``Cancelled`` or another exception.

        Returns the final status, or None on shutdown (the record stays running and the job is
        dispatched again on the next start).
        """
        if isinstance(outcome, Cancelled | asyncio.CancelledError):
            if shutting_down:
                return None
            return await self.finish(record, JobState.cancelled)
        if isinstance(outcome, BaseException):
            return await self.finish(record, JobState.failed, error=error_for(outcome))
        return await self.finish(
            record, JobState.done, result_key=outcome.result_key, losses=outcome.losses, progress=1.0
        )

    async def finish(self, record: JobRecord, state: JobState, **changes: Any) -> JobStatus:
        """Write the final state, unless the job already has one (which is then returned)."""
        job_id = record.spec.job_id
        task = self._preview_tasks.pop(job_id, None)
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        self._pending_preview.pop(job_id, None)
        async with self._lock(job_id):
            if record.status.finished:
                return record.status
            stored = await self.store.load(job_id)
            if stored is not None and stored.status.finished:
                record.status = stored.status
                return record.status
            final = record.status.model_copy(
                update={
                    "state": state,
                    "finished_at": time.time(),
                    "eta_s": None,
                    "position": None,
                    **changes,
                }
            )
            await self.store.save(record.model_copy(update={"status": final}))
            record.status = final  # durable before anyone is told
        self._locks.pop(job_id, None)
        self._last_persist.pop(job_id, None)
        return final


class JobLifecycle(JobRecorder):
    """Admission, status, cancel, finish-now, recovery, retention and metrics; dispatch is abstract.

    ``live_status``: whether records in :attr:`active` are updated in this process (local
    workers); otherwise (Ray) the workers update the store and status is read from there.
    """

    live_status = True

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        per_owner_limit: int | None = None,
        queue_size: int | None = None,
        persist_every_s: float = 5.0,
    ) -> None:
        super().__init__(storage, settings, persist_every_s=persist_every_s)
        self.per_owner_limit = per_owner_limit or settings.per_owner_limit
        self.queue_size = queue_size or settings.queue_size
        self.active: dict[str, JobRecord] = {}  # admitted, not finished; in submit order
        self.final: collections.OrderedDict[str, JobStatus] = collections.OrderedDict()
        self._ended: dict[str, asyncio.Event] = {}
        self._admit_lock = asyncio.Lock()
        self._mean_run_s: dict[Lane, float] = {}
        self._finished_counts: collections.Counter[str] = collections.Counter()
        self._previews_of_finished = 0
        self._housekeeping: asyncio.Task | None = None
        self.started = False
        self.metrics = ServiceMetrics(self._metric_state)

    # --- what a backend provides -----------------------------------------------------------------
    def dispatch(self, record: JobRecord) -> None:
        """Hand an admitted (queued) job to a worker of its lane."""
        raise NotImplementedError

    def interrupt(self, job_id: str) -> None:
        """Ask a queued or running job's worker to stop (its record is final already or soon)."""
        raise NotImplementedError

    def queue_lengths(self) -> dict[Lane, int]:
        raise NotImplementedError

    def queue_position(self, job_id: str) -> int | None:
        """0-based place of a queued job in its lane (None when unknown)."""
        return None

    # --- start / stop ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        await self.recover()
        self.start_housekeeping()

    async def stop(self) -> None:
        await self.stop_housekeeping()
        self.started = False

    async def recover(self) -> int:
        """Queue again every job a previous run left unfinished, in submit order."""
        recovered = 0
        for record in await self.store.all():
            if record.status.finished or record.spec.job_id in self.active:
                continue
            record.status = record.status.model_copy(
                update={
                    "state": JobState.queued,
                    "progress": 0.0,
                    "eta_s": None,
                    "stage": None,
                    "position": None,
                }
            )
            await self.store.save(record)
            self._admitted(record)
            recovered += 1
        if recovered:
            log.info("re-queued %d unfinished job(s) from the job store", recovered)
        return recovered

    # --- retention ---------------------------------------------------------------------------------
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
                load_image,
                data,
                max_pixels=self.settings.max_input_pixels,
                max_bytes=self.settings.max_upload_bytes,
            )
            encoded = await asyncio.to_thread(encode_image, img, "JPEG")
            if len(encoded) > self.settings.max_upload_bytes:
                encoded = await asyncio.to_thread(encode_image, img, "JPEG", quality=INPUT_FALLBACK_QUALITY)
        except ImageError as exc:
            raise JobClientError(exc.code, str(exc), field="file") from exc
        return await self.storage.put(encoded, scope=owner, name=input_name(name), content_type="image/jpeg")

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
            if not self.storage.is_data_key_of(key, spec.owner):
                raise JobClientError(
                    "foreign_key",
                    f"{field_name}: this image belongs to someone else or is not an input; upload it first",
                    field=field_name,
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

    async def submit(self, spec: JobSpec) -> JobStatus:
        """Admit a job (or return the status of the same job submitted before) and dispatch it."""
        if not self.started:
            raise JobClientError("unavailable", "The style service is not running.")
        spec = self.effective_spec(spec)
        async with self._admit_lock:  # the checks and the enqueue must not interleave
            old = self.active.get(spec.job_id) or await self.store.load(spec.job_id)
            if old is not None:
                self.same_job(old.spec, spec)
                return await self.status(spec.job_id)
            # The limit holds per lane: a style sheet or an instant result for a new photo must
            # not wait until the same owner's minutes-long refinement ends.
            lane = lane_for(spec)
            active = sum(
                1 for r in self.active.values() if r.spec.owner == spec.owner and lane_for(r.spec) is lane
            )
            if active >= self.per_owner_limit:
                raise JobClientError(
                    "owner_limit",
                    f"You already have {active} job(s) in progress; wait for it to finish or cancel it.",
                )
            if self.queue_lengths().get(lane, 0) >= self.queue_size:
                raise JobClientError(
                    "busy",
                    "The style service is busy right now; please try again in a minute.",
                    retry_after=max(5.0, round(self._mean_run_s.get(lane, 30.0))),
                )
            await self.check_inputs(spec)
            record = JobRecord(
                spec=spec,
                status=JobStatus(job_id=spec.job_id, owner=spec.owner, kind=spec.kind, state=JobState.queued),
            )
            await self.store.save(record)
            self._admitted(record)
        return await self.status(spec.job_id)

    def _admitted(self, record: JobRecord) -> None:
        self.active[record.spec.job_id] = record
        self._ended[record.spec.job_id] = asyncio.Event()
        self.dispatch(record)

    def ended(self, status: JobStatus, spec: JobSpec) -> None:
        """Bookkeeping once a job's final state is durable: frees its owner's slot, metrics."""
        job_id = status.job_id
        record = self.active.pop(job_id, None)
        if record is None and job_id in self.final:
            return
        self.final[job_id] = status
        while len(self.final) > FINISHED_CACHE:
            self.final.popitem(last=False)
        self._previews_of_finished += record.previews if record is not None else 0
        lane = lane_for(spec)
        seconds = status.run_seconds
        if status.state is JobState.done and seconds is not None:
            self.metrics.job_duration.labels(spec.kind.value, preset_label(spec)).observe(seconds)
            previous = self._mean_run_s.get(lane)
            self._mean_run_s[lane] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
        self.metrics.jobs_finished.labels(spec.kind.value, status.state.value).inc()
        self._finished_counts[status.state.value] += 1
        event = self._ended.pop(job_id, None)
        if event is not None:
            event.set()

    def observe_start(self, record: JobRecord) -> None:
        if record.attempts == 1:
            waited = max(0.0, (record.status.started_at or time.time()) - record.status.created_at)
            self.metrics.job_wait.labels(lane_for(record.spec).value).observe(waited)

    # --- reads ---------------------------------------------------------------------------------
    async def _record(self, job_id: str) -> JobRecord:
        record = await self.store.load(job_id) if JOB_ID_PATTERN.fullmatch(job_id) else None
        if record is None:
            raise JobClientError("not_found", "There is no such job.")
        return record

    async def status(self, job_id: str) -> JobStatus:
        if job_id in self.final:
            return self.final[job_id]
        record = self.active.get(job_id)
        if record is None or not self.live_status:
            record = await self._record(job_id)
        status = record.status
        if status.state is JobState.queued:
            position = self.queue_position(job_id)
            eta = self._queued_eta(record, position)
            return status.model_copy(update={"position": position, "eta_s": eta})
        return status.model_copy()

    def _queued_eta(self, record: JobRecord, position: int | None) -> float | None:
        mean = self._mean_run_s.get(lane_for(record.spec))
        if mean is None or position is None:
            return None
        return mean * (position + 1)

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
            if m.kind != "backbone"  # the NST backbones are not styles; the feed-forward networks are
        ]

    # --- cancel / finish now -----------------------------------------------------------------------
    async def cancel(self, job_id: str) -> JobStatus:
        status = await self.status(job_id)  # not_found for unknown ids
        if status.finished or job_id not in self.active:
            return status
        record = self.active[job_id]
        if status.state is JobState.queued:
            final = await self.finish(record, JobState.cancelled)
            if final.state is JobState.cancelled:
                self.ended(final, record.spec)
        self.interrupt(job_id)
        event = self._ended.get(job_id)
        if event is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), CANCEL_WAIT_S)
        return await self.status(job_id)

    async def finish_now(self, job_id: str) -> JobStatus:
        """End a running job with its latest image (instant result or refined preview), full size.

        Idempotent: a finished job answers with its state. With no image yet: ``not_ready``.
        """
        status = await self.status(job_id)
        record = self.active.get(job_id)
        if status.finished or record is None:
            return status
        if status.preview_key is None:
            raise JobClientError("not_ready", "There is no image to finish with yet; try again in a moment.")
        spec = record.spec
        try:
            latest, content = await asyncio.gather(
                self.storage.get(status.preview_key), self.storage.get(spec.content_key)
            )
            data = await asyncio.to_thread(_full_size, latest, content, spec.params.size)
            result_key = await self.storage.put(
                data, scope=spec.owner, name=RESULT_NAME, content_type="image/jpeg"
            )
        except KeyNotFoundError:  # the preview was replaced meanwhile: take the newer one
            return await self.finish_now(job_id)
        if not self.live_status:  # the worker writes the record elsewhere: start from the latest
            latest_record = await self._record(job_id)
            record.status, record.previews = latest_record.status, latest_record.previews
        final = await self.finish(
            record, JobState.done, result_key=result_key, progress=1.0, stage="finished early"
        )
        if final.result_key == result_key:
            self.metrics.finish_now.inc()
        else:  # it ended on its own meanwhile: that result stands
            with contextlib.suppress(Exception):
                await self.storage.delete(result_key)
        self.ended(final, spec)
        self.interrupt(job_id)
        return final

    # --- metrics -------------------------------------------------------------------------------
    def _metric_state(self) -> dict[str, Any]:
        counts = collections.Counter(r.status.state.value for r in self.active.values())
        counts.update(self._finished_counts)
        previews = self._previews_of_finished + sum(r.previews for r in self.active.values())
        return {
            "queues": {lane.value: n for lane, n in self.queue_lengths().items()},
            "jobs": dict(counts),
            "previews": previews,
        }

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render()


def _full_size(latest: bytes, content: bytes, size: int) -> bytes:
    """The latest image at the job's full result size (as the finished job would have it)."""
    info = probe(content)
    target = min(size, max(info.width, info.height))
    image = load_image(latest)
    return encode_image(resize_long_side(image, target, upscale=True), "JPEG")
