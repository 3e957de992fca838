"""The ML server as a Ray Serve application: the same HTTP API, GPU worker replicas, autoscaling.

- ``Ingress`` (one replica) serves the FastAPI app from :mod:`stylebot.server.app`. ``POST /v1/jobs``
  writes the job record and dispatches it through a deployment handle in a background task, so no
  HTTP request waits for a job; status is read from the job store, which the workers update.
- ``NSTWorker`` runs one NST job at a time per replica (``max_ongoing_requests=1``) and scales on
  queued requests; it asks for a GPU when the cluster has one.
- ``CycleGANWorker`` groups concurrent CycleGAN jobs into one forward pass with ``@serve.batch``.

``RAY_ADDRESS`` connects to an existing cluster; otherwise a local one is started (its size from
``STYLEBOT_RAY_NUM_CPUS``/``STYLEBOT_RAY_OBJECT_STORE_MB``; its temp dir from ``RAY_TMPDIR``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from stylebot.config import Settings
from stylebot.jobs.spec import JobClientError, JobError, JobKind, JobSpec, JobState, JobStatus
from stylebot.jobs.store import JobRecord, JobStore
from stylebot.server.app import create_app
from stylebot.server.metrics import ServiceMetrics
from stylebot.server.service import CANCEL_WAIT_S, JobFrontend, is_job_failed

log = logging.getLogger(__name__)

# Workers write progress to the store at most this often (status readers poll the store).
PROGRESS_PERSIST_S = 1.0
_SECRETS_NOT_FOR_WORKERS = {"api_token", "webhook_secret"}


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings for the replicas, minus the bot's secrets (the ML side never sees the bot token)."""
    return settings.model_dump(exclude=_SECRETS_NOT_FOR_WORKERS)


# --- workers ---------------------------------------------------------------------------------
class _RecordedJobs:
    """Worker side: runs a job while keeping its record in the store current."""

    def __init__(self, payload: dict[str, Any]) -> None:
        from stylebot.storage import make_storage

        self.settings = Settings(**payload)
        self.storage = make_storage(self.settings)
        self.store = JobStore(self.storage)

    async def claim(self, spec: JobSpec) -> JobRecord | None:
        """Mark the job running, or None when it is already finished (never run a job twice)."""
        record = await self.store.load(spec.job_id)
        if record is None or record.status.finished:
            return None
        record.attempts += 1
        record.status = record.status.model_copy(update={
            "state": JobState.running, "position": None, "started_at": time.time(), "progress": 0.0})
        await self.store.save(record)
        return record

    async def finish(self, record: JobRecord, state: JobState, **changes: Any) -> dict[str, Any]:
        latest = await self.store.load(record.spec.job_id)
        if latest is not None and latest.status.finished:  # e.g. cancelled by the ingress meanwhile
            return latest.status.model_dump(mode="json")
        record.status = record.status.model_copy(
            update={"state": state, "finished_at": time.time(), "eta_s": None, **changes})
        await self.store.save(record)
        return record.status.model_dump(mode="json")

    async def outcome(self, record: JobRecord, outcome: Any) -> dict[str, Any]:
        if isinstance(outcome, BaseException):
            return await self.finish(record, JobState.failed, error=self.error(outcome))
        return await self.finish(record, JobState.done, result_key=outcome.result_key,
                                 losses=outcome.losses, progress=1.0)

    @staticmethod
    def error(exc: BaseException) -> JobError:
        if is_job_failed(exc):
            return JobError(code=exc.code, message=exc.message)  # type: ignore[attr-defined]
        log.error("job failed unexpectedly: %r", exc)
        return JobError(code="internal", message="Something went wrong while styling the image.")


@serve.deployment(max_ongoing_requests=1, graceful_shutdown_timeout_s=30)
class NSTWorker(_RecordedJobs):
    async def run(self, spec_json: str) -> dict[str, Any]:
        from stylebot.jobs.pipeline import run_job
        from stylebot.ml.nst import Cancelled, CancelToken

        spec = JobSpec.model_validate_json(spec_json)
        record = await self.claim(spec)
        if record is None:
            return {}
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()
        last_saved = 0.0

        write_lock, stopped = asyncio.Lock(), False

        async def save_progress(progress: Any) -> None:
            async with write_lock:
                if not stopped:  # never after the final record
                    await write_progress(progress)

        async def stop_progress() -> None:
            nonlocal stopped
            async with write_lock:
                stopped = True

        async def write_progress(progress: Any) -> None:
            changes: dict[str, Any] = {"progress": min(1.0, max(0.0, float(progress.fraction))),
                                       "eta_s": progress.eta_s, "stage": progress.stage,
                                       "losses": progress.losses or record.status.losses}
            old = record.status.preview_key
            if progress.preview:  # a new key per preview; only the latest is kept
                changes["preview_key"] = await self.storage.put(
                    progress.preview, scope=spec.owner, name="preview.jpg", content_type="image/jpeg")
            record.status = record.status.model_copy(update=changes)
            await self.store.save(record)
            if progress.preview and old is not None:
                with contextlib.suppress(Exception):
                    await self.storage.delete(old)

        def on_progress(progress: Any) -> None:
            nonlocal last_saved
            recent = time.monotonic() - last_saved < PROGRESS_PERSIST_S
            if recent and progress.fraction < 1.0 and not progress.preview:
                return  # previews are never dropped: each one is a new image for the chat
            last_saved = time.monotonic()
            if threading.get_ident() == loop_thread:
                loop.create_task(save_progress(progress))
            else:
                asyncio.run_coroutine_threadsafe(save_progress(progress), loop)

        token = CancelToken()
        task = asyncio.ensure_future(
            run_job(spec, self.storage, self.settings, on_progress=on_progress, cancel=token))
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:  # DELETE: the ingress cancelled this request
            token.cancel()
            with contextlib.suppress(BaseException):
                await task
            await stop_progress()
            await self.finish(record, JobState.cancelled)
            raise
        except Cancelled:
            await stop_progress()
            return await self.finish(record, JobState.cancelled)
        except Exception as exc:
            await stop_progress()
            return await self.outcome(record, exc)
        await stop_progress()
        return await self.outcome(record, outcome)


@serve.deployment(max_ongoing_requests=32)
class CycleGANWorker(_RecordedJobs):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        self.run_batch.set_max_batch_size(self.settings.cyclegan_max_batch)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def run_batch(self, spec_jsons: list[str]) -> list[dict[str, Any]]:
        from stylebot.jobs.pipeline import run_cyclegan_batch

        specs = [JobSpec.model_validate_json(s) for s in spec_jsons]
        records = [await self.claim(spec) for spec in specs]
        todo = [(i, r) for i, r in enumerate(records) if r is not None]
        results: list[dict[str, Any]] = [{} for _ in specs]
        if not todo:
            return results
        try:
            outcomes = await run_cyclegan_batch([r.spec for _, r in todo], self.storage, self.settings)
        except Exception as exc:  # the whole batch failed: every job in it fails the same way
            outcomes = [exc] * len(todo)
        for (i, record), outcome in zip(todo, outcomes, strict=True):
            results[i] = await self.outcome(record, outcome)
        return results

    async def run(self, spec_json: str) -> dict[str, Any]:
        return await self.run_batch(spec_json)


# --- ingress ---------------------------------------------------------------------------------
class RayJobBackend(JobFrontend):
    """The ingress side: admission, records, dispatch through handles, status from the store."""

    def __init__(self, storage: Any, settings: Settings, nst: DeploymentHandle,
                 cyclegan: DeploymentHandle) -> None:
        super().__init__(storage, settings)
        self.handles = {JobKind.nst: nst, JobKind.cyclegan: cyclegan}
        self._active: collections.OrderedDict[str, JobSpec] = collections.OrderedDict()
        self._responses: dict[str, DeploymentResponse] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()
        self._finished_counts: collections.Counter[str] = collections.Counter()
        self._started = False
        self._metrics = ServiceMetrics(self._metric_state)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for record in await self.store.all():
            if not record.status.finished:
                record.status = record.status.model_copy(update={"state": JobState.queued, "progress": 0.0})
                await self.store.save(record)
                self._dispatch(record.spec)
        self.start_housekeeping()

    async def stop(self) -> None:
        await self.stop_housekeeping()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _dispatch(self, spec: JobSpec) -> None:
        self._active[spec.job_id] = spec
        response = self.handles[spec.kind].run.remote(spec.model_dump_json())
        self._responses[spec.job_id] = response
        task = asyncio.create_task(self._follow(spec, response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, spec: JobSpec, response: DeploymentResponse) -> None:
        try:
            await response
        except asyncio.CancelledError:
            if not response.cancelled():
                raise
        except Exception as exc:  # the replica died or the request was cancelled after assignment
            record = await self.store.load(spec.job_id)
            if record is not None and not record.status.finished:
                state = JobState.cancelled if response.cancelled() else JobState.failed
                error = None if state is JobState.cancelled else JobError(
                    code="internal", message="Something went wrong while styling the image.")
                log.warning("job %s: %s (%r)", spec.job_id, state.value, exc)
                record.status = record.status.model_copy(
                    update={"state": state, "error": error, "finished_at": time.time()})
                await self.store.save(record)
        finally:
            self._active.pop(spec.job_id, None)
            self._responses.pop(spec.job_id, None)
        record = await self.store.load(spec.job_id)
        if record is not None and record.status.finished:
            state = record.status.state
            self._finished_counts[state.value] += 1
            self._metrics.jobs_finished.labels(spec.kind.value, state.value).inc()
            if state is JobState.done and record.status.run_seconds is not None:
                self._metrics.job_duration.labels(spec.kind.value).observe(record.status.run_seconds)

    async def submit(self, spec: JobSpec) -> JobStatus:
        spec = self.effective_spec(spec)
        async with self._lock:
            existing = await self.store.load(spec.job_id)
            if existing is not None:
                self.same_job(existing.spec, spec)
                return await self.status(spec.job_id)
            active = sum(1 for s in self._active.values() if s.owner == spec.owner)
            if active >= self.settings.per_owner_limit:
                raise JobClientError("owner_limit", "You already have a job in progress; wait for it to "
                                     "finish or cancel it.")
            if len(self._active) >= self.settings.queue_size:
                raise JobClientError("busy", "The style service is busy right now; please try again in a "
                                     "minute.", retry_after=30)
            await self.check_inputs(spec)
            status = JobStatus(job_id=spec.job_id, owner=spec.owner, kind=spec.kind, state=JobState.queued)
            await self.store.save(JobRecord(spec=spec, status=status))
            self._dispatch(spec)
        return await self.status(spec.job_id)

    async def status(self, job_id: str) -> JobStatus:
        status = await super().status(job_id)
        if status.state is not JobState.queued:
            return status
        ahead = 0
        for other_id, other in list(self._active.items()):
            if other_id == job_id:
                break
            if other.kind is status.kind:
                record = await self.store.load(other_id)
                ahead += record is not None and record.status.state is JobState.queued
        return status.model_copy(update={"position": ahead})

    async def cancel(self, job_id: str) -> JobStatus:
        status = await super().status(job_id)
        if status.finished:
            return status
        response = self._responses.get(job_id)
        if status.state is JobState.queued:
            record = await self.store.load(job_id)
            if record is not None and record.status.state is JobState.queued:
                record.status = record.status.model_copy(
                    update={"state": JobState.cancelled, "finished_at": time.time()})
                await self.store.save(record)  # a worker that picks it up now skips it
        if response is not None:
            response.cancel()
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            status = await super().status(job_id)
            if status.finished:
                break
            await asyncio.sleep(0.1)
        return status

    def metrics(self) -> tuple[bytes, str]:
        return self._metrics.render()

    def _metric_state(self) -> tuple[int, dict[str, int]]:
        # Scrapes must stay cheap: active jobs counted from memory, not read from the store.
        counts = collections.Counter({"queued": 0, "running": 0})
        counts["queued"] = len(self._active)
        counts.update(self._finished_counts)
        return len(self._active), dict(counts)


_ingress_backend: RayJobBackend | None = None


def ingress_backend() -> RayJobBackend | None:
    """The backend of the ingress replica in this process (set by ``Ingress.__init__``)."""
    return _ingress_backend


def _set_ingress_backend(backend: RayJobBackend) -> None:
    # A function, not a ``global`` statement in Ingress: Ray pickles the ingress class by value,
    # so its methods see a copy of this module's globals; this function is pickled by reference.
    global _ingress_backend
    _ingress_backend = backend


app = create_app(None, manage_backend=False, backend_lookup=ingress_backend)


@serve.deployment(num_replicas=1, max_ongoing_requests=200)
@serve.ingress(app)
class Ingress:
    async def __init__(
        self, payload: dict[str, Any], nst: DeploymentHandle, cyclegan: DeploymentHandle
    ) -> None:
        from stylebot.storage import make_storage

        settings = Settings(**payload)
        backend = RayJobBackend(make_storage(settings), settings, nst, cyclegan)
        await backend.start()  # re-dispatch jobs left unfinished by a previous run
        _set_ingress_backend(backend)


def build_app(settings: Settings, *, gpus: float | None = None) -> Any:
    """The bound application: ingress + worker deployments sized for the cluster."""
    import ray

    if gpus is None:
        gpus = ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0
    payload = settings_payload(settings)
    max_replicas = settings.ray_max_replicas
    nst = NSTWorker.options(
        ray_actor_options={"num_gpus": 1 if gpus else 0, "num_cpus": 1},
        autoscaling_config={"min_replicas": 1, "max_replicas": max_replicas, "target_ongoing_requests": 1,
                            "upscale_delay_s": 5, "downscale_delay_s": 120},
    ).bind(payload)
    cyclegan = CycleGANWorker.options(
        ray_actor_options={"num_gpus": 0.5 if gpus else 0, "num_cpus": 1},
        autoscaling_config={"min_replicas": 1, "max_replicas": max_replicas,
                            "target_ongoing_requests": settings.cyclegan_max_batch},
    ).bind(payload)
    return Ingress.options(ray_actor_options={"num_cpus": 0}).bind(payload, nst, cyclegan)


def start_ray(settings: Settings) -> None:
    """Connect to ``RAY_ADDRESS`` or start a small local cluster (no dashboard)."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if settings.ray_num_cpus:
        kwargs["num_cpus"] = settings.ray_num_cpus
    if settings.ray_object_store_mb:
        kwargs["object_store_memory"] = settings.ray_object_store_mb * 2**20
    ray.init(**kwargs)


def serve_main(host: str, port: int, settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then shut Serve and the local cluster down and return 0.

    Jobs in flight keep their records as they are (queued or running) and are dispatched again
    on the next start. The signal handlers are installed after Ray has started, because
    ``ray.init`` installs its own.
    """
    import signal

    import ray

    started = time.monotonic()
    start_ray(settings)
    stop = threading.Event()
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(settings), name="stylebot", route_prefix="/")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: stop.set())
        log.info("Ray Serve ready on http://%s:%d in %.1f s", host, port, time.monotonic() - started)
        print(f"stylebot server (ray) ready on http://{host}:{port} in {time.monotonic() - started:.1f} s",
              flush=True)
        while not stop.wait(1.0):
            pass
        print("stylebot server (ray): stopping", flush=True)
    except KeyboardInterrupt:  # a signal before the handlers were installed
        pass
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
    return 0
