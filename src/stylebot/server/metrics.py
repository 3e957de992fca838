"""Prometheus metrics for the ML server, every name prefixed ``stylebot_``.

Each service owns its own registry (no process-global state), so several services — or tests —
can live in one process. Gauges are computed at scrape time from the service's own state.

- ``stylebot_queue_length{lane}``: jobs waiting for a worker, per lane (``fast``, ``long``)
- ``stylebot_jobs{state}``: queued/running now; done/failed/cancelled since start
- ``stylebot_job_duration_seconds{kind,preset}``: run time of jobs that ended ``done`` (histogram)
- ``stylebot_job_wait_seconds{lane}``: submit → a worker starts the job (histogram)
- ``stylebot_jobs_finished_total{kind,state}``, ``stylebot_previews_total``,
  ``stylebot_finish_now_total``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stylebot.jobs.spec import JobState

# NST runs from about a second (GPU, fast preset) to tens of minutes (CPU, quality preset).
DURATION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1200)
LANES = ("fast", "long")

StateSource = Callable[[], Mapping[str, Any]]
"""Returns ``{"queues": {lane: n}, "jobs": {state: n}, "previews": n}`` at scrape time."""


class _StateCollector(Collector):
    def __init__(self, source: StateSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._source()
        queues = GaugeMetricFamily(
            "stylebot_queue_length", "Jobs waiting for a worker, per lane", labels=["lane"]
        )
        for lane in LANES:
            queues.add_metric([lane], state["queues"].get(lane, 0))
        yield queues
        jobs = GaugeMetricFamily(
            "stylebot_jobs",
            "Jobs by state: queued/running now; done/failed/cancelled since this server started",
            labels=["state"],
        )
        for job_state in JobState:
            jobs.add_metric([job_state.value], state["jobs"].get(job_state.value, 0))
        yield jobs
        yield CounterMetricFamily(
            "stylebot_previews", "Live previews stored for users to see", value=state["previews"]
        )


class ServiceMetrics:
    def __init__(self, source: StateSource) -> None:
        self.registry = CollectorRegistry()
        self.job_duration = Histogram(
            "stylebot_job_duration_seconds",
            "Run time of jobs that ended done (running → done)",
            ["kind", "preset"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.job_wait = Histogram(
            "stylebot_job_wait_seconds",
            "Time from submit to a worker starting the job",
            ["lane"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "stylebot_jobs_finished",
            "Jobs that reached a final state",
            ["kind", "state"],
            registry=self.registry,
        )
        self.finish_now = Counter(
            "stylebot_finish_now",
            "Refinements ended early with their latest image (finish now)",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(source))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
