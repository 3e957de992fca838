"""The ML server as a Ray Serve application: the same HTTP API, GPU worker replicas, autoscaling.

The job lifecycle is :mod:`stylebot.server.lifecycle`'s; this module only dispatches.

- ``Ingress`` (one replica) serves the FastAPI app from :mod:`stylebot.server.app`. ``POST /v1/jobs``
  writes the job record and dispatches it through a deployment handle of the job's lane, so no
  HTTP request waits for a job; status is read from the job store, which the workers update.
- ``RefineWorker`` (the ``long`` lane) runs one refinement at a time per replica
  (``max_ongoing_requests=1``) and scales on queued requests; it asks for a GPU when there is one.
- ``FastWorker`` (the ``fast`` lane) runs single feed-forward passes — CycleGAN, instant, gallery,
  sheets — so they never queue behind a refinement; concurrent CycleGAN jobs are grouped into one
  forward pass with ``@serve.batch`` (it pays on a GPU; see ``benchmarks/gpu_check.sh``).

``RAY_ADDRESS`` connects to an existing cluster; otherwise a local one is started (its size from
``STYLEBOT_RAY_NUM_CPUS``/``STYLEBOT_RAY_OBJECT_STORE_MB``; its temp dir from ``RAY_TMPDIR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import Any

from ray import serve
from ray.serve import Deployment
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from stylebot.config import Settings
from stylebot.jobs.spec import JobKind, JobSpec, JobState, JobStatus
from stylebot.jobs.store import JobRecord
from stylebot.server.app import create_app
from stylebot.server.lifecycle import JobLifecycle, JobRecorder, Lane, lane_for

log = logging.getLogger(__name__)

# Workers write progress to the store at most this often (status readers poll the store);
# every preview is written at once.
PROGRESS_PERSIST_S = 1.0
# The ingress reads the records of active jobs this often (queue lengths, previews for /metrics).
REFRESH_S = 0.5
_SECRETS_NOT_FOR_WORKERS = {"api_token", "webhook_secret"}


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings for the replicas, minus the bot's secrets (the ML side never sees the bot token)."""
    return settings.model_dump(exclude=_SECRETS_NOT_FOR_WORKERS)


# --- workers ---------------------------------------------------------------------------------
class _Worker:
    """Worker side: runs jobs while a :class:`JobRecorder` keeps their records current."""

    def __init__(self, payload: dict[str, Any]) -> None:
        from stylebot.storage import make_storage

        self.settings = Settings(**payload)
        self.storage = make_storage(self.settings)
        self.recorder = JobRecorder(self.storage, self.settings, persist_every_s=PROGRESS_PERSIST_S)

    async def _claim(self, spec: JobSpec) -> JobRecord | None:
        record = await self.recorder.store.load(spec.job_id)
        if record is None or not await self.recorder.begin(record):
            return None
        return record

    async def run_one(self, spec_json: str) -> dict[str, Any]:
        from stylebot.jobs.pipeline import run_job
        from stylebot.ml.runtime import CancelToken

        record = await self._claim(JobSpec.model_validate_json(spec_json))
        if record is None:
            return {}
        token = CancelToken()
        task = asyncio.ensure_future(
            run_job(
                record.spec,
                self.storage,
                self.settings,
                on_progress=self.recorder.progress_callback(record),
                cancel=token,
            )
        )
        outcome: Any
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError as cancelled:  # the ingress cancelled this request
            token.cancel()
            with contextlib.suppress(BaseException):
                await task
            await self.recorder.conclude(record, cancelled)
            raise
        except Exception as exc:
            outcome = exc
        final = await self.recorder.conclude(record, outcome)
        return final.model_dump(mode="json") if final is not None else {}


@serve.deployment(max_ongoing_requests=1, graceful_shutdown_timeout_s=30)
class RefineWorker(_Worker):
    async def run(self, spec_json: str) -> dict[str, Any]:
        return await self.run_one(spec_json)


@serve.deployment(max_ongoing_requests=32)
class FastWorker(_Worker):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        # Ray types @serve.batch as returning the plain method; the wrapper it returns has the setter.
        self.run_batch.set_max_batch_size(self.settings.cyclegan_max_batch)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def run_batch(self, spec_jsons: list[str]) -> list[dict[str, Any]]:
        from stylebot.jobs.pipeline import run_cyclegan_batch

        records = [await self._claim(JobSpec.model_validate_json(s)) for s in spec_jsons]
        todo = [(i, r) for i, r in enumerate(records) if r is not None]
        results: list[dict[str, Any]] = [{} for _ in spec_jsons]
        if not todo:
            return results
        try:
            outcomes: list[Any] = await run_cyclegan_batch(
                [r.spec for _, r in todo], self.storage, self.settings
            )
        except Exception as exc:  # the whole batch failed: every job in it fails the same way
            outcomes = [exc] * len(todo)
        for (i, record), outcome in zip(todo, outcomes, strict=True):
            final = await self.recorder.conclude(record, outcome)
            results[i] = final.model_dump(mode="json") if final is not None else {}
        return results

    async def run(self, spec_json: str) -> dict[str, Any]:
        spec = JobSpec.model_validate_json(spec_json)
        if spec.kind is JobKind.cyclegan and self.settings.executor == "direct":
            return await self.run_batch(spec_json)
        return await self.run_one(spec_json)


# --- ingress ---------------------------------------------------------------------------------
class RayJobBackend(JobLifecycle):
    """The ingress side: the lifecycle, dispatching through one deployment handle per lane."""

    live_status = False

    def __init__(
        self, storage: Any, settings: Settings, refine: DeploymentHandle, fast: DeploymentHandle
    ) -> None:
        super().__init__(storage, settings)
        self.handles = {Lane.long: refine, Lane.fast: fast}
        self._responses: dict[str, DeploymentResponse] = {}
        self._tasks: set[asyncio.Task] = set()
        self._refresher: asyncio.Task | None = None

    async def start(self) -> None:
        await super().start()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh(), name="stylebot-refresh")

    async def stop(self) -> None:
        await super().stop()
        tasks = [*self._tasks, *([self._refresher] if self._refresher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refresher = None

    def dispatch(self, record: JobRecord) -> None:
        spec = record.spec
        response = self.handles[lane_for(spec)].run.remote(spec.model_dump_json())
        assert isinstance(response, DeploymentResponse)  # a generator only comes from a streaming handle
        self._responses[spec.job_id] = response
        task = asyncio.create_task(self._follow(record, response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def interrupt(self, job_id: str) -> None:
        response = self._responses.get(job_id)
        if response is not None:
            response.cancel()

    def queue_lengths(self) -> dict[Lane, int]:
        lengths = dict.fromkeys(Lane, 0)
        for record in list(self.active.values()):
            if record.status.state is JobState.queued:
                lengths[lane_for(record.spec)] += 1
        return lengths

    def queue_position(self, job_id: str) -> int | None:
        lane = lane_for(self.active[job_id].spec) if job_id in self.active else None
        ahead = 0
        for other_id, other in list(self.active.items()):
            if other_id == job_id:
                return ahead
            ahead += lane_for(other.spec) is lane and other.status.state is JobState.queued
        return None

    async def _refresh(self) -> None:
        """Keep the ingress's view of active jobs current (queue lengths, previews for /metrics)."""
        while True:
            for job_id, record in list(self.active.items()):
                with contextlib.suppress(Exception):
                    stored = await self.store.load(job_id)
                    if stored is not None and job_id in self.active and not record.status.finished:
                        record.status, record.previews = stored.status, stored.previews
                        record.attempts = stored.attempts
            await asyncio.sleep(REFRESH_S)

    async def _follow(self, record: JobRecord, response: DeploymentResponse) -> None:
        spec = record.spec
        failure: BaseException | None = None
        try:
            await response
        except asyncio.CancelledError:
            if not response.cancelled():
                raise
            failure = asyncio.CancelledError()
        except Exception as exc:  # the replica died or the request was cancelled after assignment
            failure = asyncio.CancelledError() if response.cancelled() else exc
        finally:
            self._responses.pop(spec.job_id, None)
        stored = await self.store.load(spec.job_id)
        if stored is None:
            return
        final: JobStatus = stored.status
        ours = self.final.get(spec.job_id)
        if ours is not None and ours.finished and ours != final:
            # Ended here (finish now, cancel) while the worker was still writing: ours stands.
            await self.store.save(stored.model_copy(update={"status": ours}))
            final = ours
        elif not final.finished and failure is not None:
            log.warning("job %s: its worker request ended without a final state (%r)", spec.job_id, failure)
            record.status = final
            final = await self.conclude(record, failure) or final
        if final.finished:
            record.attempts = stored.attempts
            record.status = final
            self.observe_start(record)
            record.previews = max(record.previews, stored.previews)
            self.ended(final, spec)


_ingress_backend: RayJobBackend | None = None


def ingress_backend() -> RayJobBackend | None:
    """The backend of the ingress replica in this process (set by ``Ingress.__init__``)."""
    return _ingress_backend


def _set_ingress_backend(backend: RayJobBackend) -> None:
    # A function, not a ``global`` statement in Ingress: Ray pickles the ingress class by value,
    # so its methods see a copy of this module's globals; this function is pickled by reference.
    global _ingress_backend
    _ingress_backend = backend


app = create_app(ingress_backend)


@serve.deployment(num_replicas=1, max_ongoing_requests=200)
@serve.ingress(app)
class Ingress:
    # Ray Serve awaits an async __init__ of a deployment; Python's data model (and mypy) say no.
    async def __init__(  # type: ignore[misc]
        self, payload: dict[str, Any], refine: DeploymentHandle, fast: DeploymentHandle
    ) -> None:
        from stylebot.storage import make_storage

        settings = Settings(**payload)
        backend = RayJobBackend(make_storage(settings), settings, refine, fast)
        await backend.start()  # re-dispatch jobs left unfinished by a previous run
        _set_ingress_backend(backend)


def _as_deployment(decorated: object) -> Deployment:
    """A class under ``@serve.deployment`` is a Deployment; mypy keeps seeing the class."""
    assert isinstance(decorated, Deployment)
    return decorated


def build_app(settings: Settings, *, gpus: float | None = None) -> Any:
    """The bound application: ingress + worker deployments sized for the cluster."""
    import ray

    if gpus is None:
        gpus = ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0
    payload = settings_payload(settings)
    max_replicas = settings.ray_max_replicas
    refine = (
        _as_deployment(RefineWorker)
        .options(
            ray_actor_options={"num_gpus": 1 if gpus else 0, "num_cpus": 1},
            autoscaling_config={
                "min_replicas": 1,
                "max_replicas": max_replicas,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 5,
                "downscale_delay_s": 120,
            },
        )
        .bind(payload)
    )
    fast = (
        _as_deployment(FastWorker)
        .options(
            ray_actor_options={"num_gpus": 0.5 if gpus else 0, "num_cpus": 1},
            autoscaling_config={
                "min_replicas": 1,
                "max_replicas": max_replicas,
                "target_ongoing_requests": settings.cyclegan_max_batch,
            },
        )
        .bind(payload)
    )
    return _as_deployment(Ingress).options(ray_actor_options={"num_cpus": 0}).bind(payload, refine, fast)


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
        print(
            f"stylebot server (ray) ready on http://{host}:{port} in {time.monotonic() - started:.1f} s",
            flush=True,
        )
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
