"""Durable job records: one JSON document per job (spec + latest status) in the Storage backend.

The store is what makes jobs survive a server restart: the service writes a record when a job is
accepted and on every state change, and on start re-queues those that were not finished.
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, ValidationError

from stylebot.jobs.spec import JobSpec, JobStatus
from stylebot.storage.base import KeyNotFoundError, Storage

log = logging.getLogger(__name__)

NAMESPACE = "jobs"


class JobRecord(BaseModel):
    spec: JobSpec
    status: JobStatus
    attempts: int = 0
    """How many times a worker started this job (a restart mid-job makes it more than one)."""
    previews: int = 0
    """How many previews were stored for it (each under a new key; only the latest is kept)."""


class JobStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def key(self, job_id: str) -> str:
        return self.storage.record_key(NAMESPACE, f"{job_id}.json")

    def _prefix(self) -> str:
        # record_key refuses an empty name, so derive the folder from a placeholder key.
        return self.storage.record_key(NAMESPACE, "x.json").rsplit("/", 1)[0] + "/"

    async def save(self, record: JobRecord) -> None:
        await self.storage.put_at(
            self.key(record.spec.job_id), record.model_dump_json().encode(), content_type="application/json"
        )

    async def load(self, job_id: str) -> JobRecord | None:
        try:
            raw = await self.storage.get(self.key(job_id))
        except KeyNotFoundError:
            return None
        try:
            return JobRecord.model_validate_json(raw)
        except ValidationError:
            log.warning("job record %s is unreadable; treating it as missing", job_id)
            return None

    async def all(self) -> list[JobRecord]:
        """Every readable record, oldest first (unreadable ones are logged and skipped)."""
        records = []
        for key in await self.storage.list(self._prefix()):
            name = key.rsplit("/", 1)[-1]
            if not name.endswith(".json"):
                continue
            record = await self.load(name.removesuffix(".json"))
            if record is not None:
                records.append(record)
        records.sort(key=lambda r: r.status.created_at)
        return records

    async def prune(self, older_than_s: float, *, now: float | None = None) -> int:
        """Delete records of jobs that finished more than ``older_than_s`` ago; unfinished ones stay."""
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = 0
        for record in await self.all():
            finished_at = record.status.finished_at
            if record.status.finished and finished_at is not None and finished_at < cutoff:
                await self.storage.delete(self.key(record.spec.job_id))
                removed += 1
        return removed
