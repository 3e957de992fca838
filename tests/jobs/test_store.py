"""JobStore: durable JobSpec + JobStatus records in the storage backend."""

from __future__ import annotations

import uuid
from pathlib import Path

from stylebot.jobs.spec import JobSpec, JobState, JobStatus
from stylebot.jobs.store import JobRecord, JobStore
from stylebot.storage.local import LocalStorage


def record(created_at: float, state: JobState = JobState.queued) -> JobRecord:
    job_id = uuid.uuid4().hex
    spec = JobSpec(
        job_id=job_id,
        owner="chat:1",
        kind="cyclegan",
        model="style_monet",
        content_key="stylebot/chat-1-ab/in.jpg",
    )
    return JobRecord(
        spec=spec,
        status=JobStatus(job_id=job_id, owner="chat:1", kind="cyclegan", state=state, created_at=created_at),
    )


async def test_records_round_trip_and_list_oldest_first(tmp_path: Path) -> None:
    store = JobStore(LocalStorage(tmp_path))
    newer, older = record(200.0), record(100.0, JobState.done)
    await store.save(newer)
    await store.save(older)
    assert [r.spec.job_id for r in await store.all()] == [older.spec.job_id, newer.spec.job_id]
    loaded = await store.load(older.spec.job_id)
    assert loaded == older
    newer.status = newer.status.model_copy(update={"state": JobState.running})
    newer.attempts = 1
    await store.save(newer)
    again = await store.load(newer.spec.job_id)
    assert again is not None and again.status.state is JobState.running and again.attempts == 1


async def test_records_survive_a_new_store_over_the_same_storage(tmp_path: Path) -> None:
    saved = record(1.0)
    await JobStore(LocalStorage(tmp_path)).save(saved)
    assert await JobStore(LocalStorage(tmp_path)).load(saved.spec.job_id) == saved


async def test_missing_and_corrupt_records_read_as_absent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    store = JobStore(storage)
    assert await store.load(uuid.uuid4().hex) is None
    good = record(1.0)
    await store.save(good)
    broken = uuid.uuid4().hex
    await storage.put_at(store.key(broken), b"{not json")
    assert await store.load(broken) is None
    assert [r.spec.job_id for r in await store.all()] == [good.spec.job_id]
