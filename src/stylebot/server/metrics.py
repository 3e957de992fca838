"""Prometheus metrics for the ML server, every name prefixed ``stylebot_``.

Each service owns its own registry (no process-global state), so several services — or tests —
can live in one process. Gauges are computed at scrape time from the service's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stylebot.jobs.spec import JobState

# NST runs from about a second (GPU, fast preset) to tens of minutes (CPU, quality preset).
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1200)

StateSource = Callable[[], tuple[int, Mapping[str, int]]]
"""Returns (queue length, {state: number of jobs}) at scrape time."""


class _StateCollector(Collector):
    def __init__(self, source: StateSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue_length, by_state = self._source()
        yield GaugeMetricFamily("stylebot_queue_length", "Jobs waiting for a worker", value=queue_length)
        jobs = GaugeMetricFamily(
            "stylebot_jobs",
            "Jobs by state: queued/running now; done/failed/cancelled since this server started",
            labels=["state"],
        )
        for state in JobState:
            jobs.add_metric([state.value], by_state.get(state.value, 0))
        yield jobs


class ServiceMetrics:
    def __init__(self, source: StateSource) -> None:
        self.registry = CollectorRegistry()
        self.job_duration = Histogram(
            "stylebot_job_duration_seconds", "Run time of finished jobs (running → finished)",
            ["kind"], buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.job_wait = Histogram(
            "stylebot_job_wait_seconds", "Time from submit to a worker starting the job",
            ["kind"], buckets=WAIT_BUCKETS, registry=self.registry,
        )
        self.jobs_finished = Counter(
            "stylebot_jobs_finished", "Jobs that reached a final state", ["kind", "state"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(source))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
