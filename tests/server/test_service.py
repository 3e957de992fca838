"""JobService with a fake runner: queue, limits, cancel, progress, failures and restart recovery."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from server_helpers import FakeJobFailed, FakeRunner, job_id, jpeg, wait_until

from stylebot.client import JobClientError
from stylebot.config import Settings
from stylebot.jobs.spec import JobParams, JobSpec, JobState
from stylebot.jobs.store import JobStore
from stylebot.server.service import JobService
from stylebot.storage.keys import scope_segment
from stylebot.storage.local import LocalStorage


@pytest.fixture
async def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
async def service(storage: LocalStorage, settings: Settings, runner: FakeRunner) -> AsyncIterator[JobService]:
    svc = JobService(storage, settings, runner=runner, workers=1, queue_size=3)
    await svc.start()
    yield svc
    await svc.stop()


async def nst_spec(svc: JobService, owner: str = "chat:1", **params: object) -> JobSpec:
    content = await svc.upload_input(jpeg(), owner=owner, name="photo.jpg")
    style = await svc.upload_input(jpeg(color=(0, 0, 255)), owner=owner, name="style.png")
    return JobSpec(
        job_id=job_id(),
        owner=owner,
        kind="nst",
        content_key=content,
        style_keys=[style],
        params=JobParams(**params),
    )


async def test_job_runs_to_done_and_is_recorded(service: JobService, runner: FakeRunner) -> None:
    spec = await nst_spec(service)
    queued = await service.submit(spec)
    assert queued.state in (JobState.queued, JobState.running)
    runner.gate(spec.job_id).set()
    await wait_until(lambda: _done(service, spec.job_id))
    status = await service.status(spec.job_id)
    assert status.state is JobState.done and status.progress == 1.0
    assert status.losses == {"style": 0.5} and status.started_at and status.finished_at
    image = Image.open(io.BytesIO(await service.result(spec.job_id)))
    assert image.size == (40, 40)
    record = await JobStore(service.storage).load(spec.job_id)
    assert record is not None and record.status.state is JobState.done and record.attempts == 1


async def _done(svc: JobService, job: str) -> bool:
    return (await svc.status(job)).finished


async def test_submit_is_idempotent_by_job_id(service: JobService, runner: FakeRunner) -> None:
    spec = await nst_spec(service)
    first = await service.submit(spec)
    second = await service.submit(spec)
    assert first.job_id == second.job_id
    runner.gate(spec.job_id).set()
    await wait_until(lambda: _done(service, spec.job_id))
    again = await service.submit(spec)
    assert again.state is JobState.done
    assert runner.started == [spec.job_id]


async def test_reusing_a_job_id_for_another_job_is_invalid(service: JobService) -> None:
    spec = await nst_spec(service)
    await service.submit(spec)
    other = spec.model_copy(update={"params": JobParams(size=128)})
    with pytest.raises(JobClientError) as err:
        await service.submit(other)
    assert err.value.code == "invalid" and err.value.field == "job_id"


async def test_per_owner_limit_then_other_owners_still_welcome(service: JobService) -> None:
    await service.submit(await nst_spec(service, owner="chat:1"))
    with pytest.raises(JobClientError) as err:
        await service.submit(await nst_spec(service, owner="chat:1"))
    assert err.value.code == "owner_limit"
    assert (await service.submit(await nst_spec(service, owner="chat:2"))).state is JobState.queued


async def test_per_owner_limit_holds_per_lane(service: JobService, runner: FakeRunner) -> None:
    """A new photo's style sheet is not refused while the same chat's refinement runs."""
    refinement = await nst_spec(service, owner="chat:1")
    await service.submit(refinement)
    await wait_until(lambda: refinement.job_id in runner.started)
    sheet = JobSpec(job_id=job_id(), owner="chat:1", kind="sheet", content_key=refinement.content_key)
    assert (await service.submit(sheet)).state in (JobState.queued, JobState.running)
    for second in (
        sheet.model_copy(update={"job_id": job_id()}),  # the fast lane's one job is taken too
        await nst_spec(service, owner="chat:1"),
    ):
        with pytest.raises(JobClientError) as err:
            await service.submit(second)
        assert err.value.code == "owner_limit"


async def test_full_queue_is_busy_with_retry_after(service: JobService, runner: FakeRunner) -> None:
    await service.submit(await nst_spec(service, owner="chat:0"))
    await wait_until(lambda: runner.started)  # the first job occupies the only worker
    for n in range(1, 4):
        await service.submit(await nst_spec(service, owner=f"chat:{n}"))
    with pytest.raises(JobClientError) as err:
        await service.submit(await nst_spec(service, owner="chat:9"))
    assert err.value.code == "busy" and err.value.retry_after and err.value.retry_after > 0


async def test_queue_positions_count_down(service: JobService, runner: FakeRunner) -> None:
    specs = [await nst_spec(service, owner=f"chat:{n}") for n in range(3)]
    for spec in specs:
        await service.submit(spec)
    await wait_until(lambda: runner.started)
    states = [await service.status(s.job_id) for s in specs]
    assert [s.state for s in states] == [JobState.running, JobState.queued, JobState.queued]
    assert [s.position for s in states[1:]] == [0, 1]
    runner.gate(specs[0].job_id).set()
    await wait_until(lambda: len(runner.started) == 2)
    assert (await service.status(specs[2].job_id)).position == 0


async def test_cancel_queued_job_never_runs(service: JobService, runner: FakeRunner) -> None:
    first, second = await nst_spec(service, owner="chat:1"), await nst_spec(service, owner="chat:2")
    await service.submit(first)
    await service.submit(second)
    cancelled = await service.cancel(second.job_id)
    assert cancelled.state is JobState.cancelled
    runner.gate(first.job_id).set()
    await wait_until(lambda: _done(service, first.job_id))
    assert second.job_id not in runner.started
    # Cancelling a finished job changes nothing.
    assert (await service.cancel(first.job_id)).state is JobState.done


async def test_cancel_running_job_stops_it(service: JobService, runner: FakeRunner) -> None:
    spec = await nst_spec(service)
    await service.submit(spec)
    await wait_until(lambda: runner.started)
    status = await service.cancel(spec.job_id)
    assert status.state is JobState.cancelled and status.result_key is None
    record = await JobStore(service.storage).load(spec.job_id)
    assert record is not None and record.status.state is JobState.cancelled
    # The owner may submit again right away.
    assert (await service.submit(await nst_spec(service))).state in (JobState.queued, JobState.running)


async def test_unknown_job_is_not_found(service: JobService) -> None:
    for call in (service.status, service.cancel, service.result, service.preview):
        with pytest.raises(JobClientError) as err:
            await call("0" * 32)
        assert err.value.code == "not_found"
    with pytest.raises(JobClientError):
        await service.status("../../etc/passwd")


async def test_result_of_unfinished_job_is_not_ready(service: JobService) -> None:
    spec = await nst_spec(service)
    await service.submit(spec)
    with pytest.raises(JobClientError) as err:
        await service.result(spec.job_id)
    assert err.value.code == "not_ready"


async def test_pipeline_failure_is_reported_with_its_safe_message(
    service: JobService, runner: FakeRunner
) -> None:
    spec = await nst_spec(service)
    runner.fail[spec.job_id] = FakeJobFailed("model_missing", "The Monet model is not installed.")
    runner.gate(spec.job_id).set()
    await service.submit(spec)
    await wait_until(lambda: _done(service, spec.job_id))
    status = await service.status(spec.job_id)
    assert status.state is JobState.failed
    assert (status.error.code, status.error.message) == ("model_missing", "The Monet model is not installed.")


async def test_unexpected_crash_fails_the_job_without_leaking_details(
    service: JobService, runner: FakeRunner
) -> None:
    spec = await nst_spec(service)
    runner.fail[spec.job_id] = RuntimeError("CUDA error at /secret/path/kernel.cu:12")
    runner.gate(spec.job_id).set()
    await service.submit(spec)
    await wait_until(lambda: _done(service, spec.job_id))
    status = await service.status(spec.job_id)
    assert status.state is JobState.failed and status.error.code == "internal"
    assert "secret" not in status.error.message
    # The worker survived: the next job runs.
    nxt = await nst_spec(service)
    runner.gate(nxt.job_id).set()
    await service.submit(nxt)
    await wait_until(lambda: _done(service, nxt.job_id))
    assert (await service.status(nxt.job_id)).state is JobState.done


async def test_progress_from_a_thread_and_preview_reach_the_status(
    service: JobService, runner: FakeRunner
) -> None:
    runner.preview = jpeg((20, 20), (1, 2, 3))
    spec = await nst_spec(service)
    await service.submit(spec)

    async def has_preview() -> bool:
        return (await service.status(spec.job_id)).preview_key is not None

    await wait_until(has_preview)
    status = await service.status(spec.job_id)
    assert status.state is JobState.running and status.progress == 0.5
    assert status.stage == "scale 1/2" and status.eta_s == 3.0
    assert await service.preview(spec.job_id) == runner.preview


async def test_inputs_must_be_the_owners_and_exist(service: JobService, storage: LocalStorage) -> None:
    good = await service.upload_input(jpeg(), owner="chat:1", name="a.jpg")
    other = await service.upload_input(jpeg(), owner="chat:2", name="a.jpg")
    look_alike = good.replace(scope_segment("chat:1"), scope_segment("chat:11"))
    foreign = [
        "stylebot/nobody-0000/photo.jpg",
        "elsewhere/x/photo.jpg",
        other,
        JobStore(storage).key(job_id()),
        look_alike,
        storage.layout.notebook_key(scope="chat:1", name="nst.ipynb", failed=False),
    ]
    for bad in foreign:
        spec = JobSpec(job_id=job_id(), owner="chat:1", kind="nst", content_key=good, style_keys=[bad])
        with pytest.raises(JobClientError) as err:
            await service.submit(spec)
        assert err.value.code == "foreign_key" and err.value.field == "style_keys.0", bad
    spec = JobSpec(
        job_id=job_id(),
        owner="chat:1",
        kind="cyclegan",
        model="style_monet",
        content_key=storage.new_key(scope="chat:1", name="none.jpg"),
    )
    with pytest.raises(JobClientError) as err:
        await service.submit(spec)
    assert err.value.code == "invalid" and err.value.field == "content_key"
    assert await service.store.all() == []  # nothing was recorded for refused jobs


@pytest.mark.parametrize(
    ("default", "allowed", "requested", "effective"),
    [
        (False, False, True, False),
        (False, True, True, True),
        (True, False, False, True),
        (False, True, False, False),
    ],
)
async def test_fast_dev_run_is_an_operator_setting(
    storage: LocalStorage, tmp_path, default: bool, allowed: bool, requested: bool, effective: bool
) -> None:
    settings = Settings(
        storage_dir=tmp_path / "storage", default_fast_dev_run=default, allow_caller_fast_dev_run=allowed
    )
    runner = FakeRunner(hold=False)
    svc = JobService(storage, settings, runner=runner, workers=1)
    await svc.start()
    try:
        spec = await nst_spec(svc, fast_dev_run=requested)
        await svc.submit(spec)
        await wait_until(lambda: _done(svc, spec.job_id))
        record = await JobStore(storage).load(spec.job_id)
        assert record is not None and record.spec.params.fast_dev_run is effective
    finally:
        await svc.stop()


async def test_restart_requeues_unfinished_and_never_reruns_finished(
    storage: LocalStorage, settings: Settings
) -> None:
    first_runner = FakeRunner()
    svc = JobService(storage, settings, runner=first_runner, workers=1)
    await svc.start()
    done_spec, running_spec, queued_spec = [await nst_spec(svc, owner=f"chat:{n}") for n in range(3)]
    first_runner.gate(done_spec.job_id).set()
    await svc.submit(done_spec)
    await wait_until(lambda: _done(svc, done_spec.job_id))
    await svc.submit(running_spec)
    await svc.submit(queued_spec)
    await wait_until(lambda: running_spec.job_id in first_runner.started)
    await svc.stop()  # as far as the records go, the same as a crash mid-job

    second_runner = FakeRunner(hold=False)
    svc2 = JobService(storage, settings, runner=second_runner, workers=1)
    await svc2.start()
    try:
        await wait_until(lambda: _done(svc2, queued_spec.job_id))
        assert second_runner.started == [running_spec.job_id, queued_spec.job_id]
        record = await JobStore(storage).load(running_spec.job_id)
        assert record is not None and record.status.state is JobState.done and record.attempts == 2
        assert (await svc2.submit(done_spec)).state is JobState.done
        assert done_spec.job_id not in second_runner.started
    finally:
        await svc2.stop()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "not_an_image"),
        (b"%PDF-1.4 not an image", "not_an_image"),
        (jpeg()[:200], "truncated_image"),
        (jpeg((8, 8)), "image_too_small"),
    ],
)
async def test_hostile_uploads_are_refused(service: JobService, data: bytes, code: str) -> None:
    with pytest.raises(JobClientError) as err:
        await service.upload_input(data, owner="chat:1", name="photo.jpg")
    assert err.value.code == code and err.value.field == "file"


async def test_upload_is_stored_as_clean_jpeg_under_a_generated_key(service: JobService) -> None:
    buf = io.BytesIO()
    img = Image.new("RGB", (40, 30), (5, 5, 5))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    img.save(buf, "PNG", exif=exif)
    key = await service.upload_input(buf.getvalue(), owner="chat:1", name="../../etc/passwd.png")
    assert ".." not in key and key.endswith("passwd.jpg")
    stored = await service.storage.get(key)
    assert stored.startswith(b"\xff\xd8") and b"SecretCam" not in stored
    with pytest.raises(JobClientError) as err:
        await service.upload_input(buf.getvalue(), owner="chat/1", name="x.png")
    assert err.value.field == "owner"


async def test_retention_sweep_removes_old_inputs_results_and_records(tmp_path, runner: FakeRunner) -> None:
    settings = Settings(storage_dir=tmp_path / "s", models_dir=tmp_path / "m", retention_hours=1.0)
    storage = LocalStorage(tmp_path / "s", retention_hours=1.0)
    svc = JobService(storage, settings, runner=runner, workers=1)
    await svc.start()
    try:
        spec = await nst_spec(svc)
        await svc.submit(spec)
        runner.gate(spec.job_id).set()
        await wait_until(lambda: _done(svc, spec.job_id))
        assert await svc.housekeep() == 0  # everything is fresh: nothing goes

        # Two hours later (file times and the record's finish time moved back), all of it goes.
        two_hours_ago = (await svc.status(spec.job_id)).finished_at - 7200
        for path in (tmp_path / "s").rglob("*"):
            if path.is_file():
                os.utime(path, (two_hours_ago, two_hours_ago))
        store = JobStore(storage)
        record = await store.load(spec.job_id)
        assert record is not None
        record.status = record.status.model_copy(update={"finished_at": two_hours_ago})
        await store.save(record)
        assert await svc.housekeep() >= 3  # content, style, result, plus the job record
        assert await store.load(spec.job_id) is None
        assert not await storage.exists(spec.content_key)
    finally:
        await svc.stop()


async def test_housekeeping_runs_periodically_and_survives_storage_errors(
    tmp_path, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stylebot.storage import StorageError

    storage = LocalStorage(tmp_path / "s", retention_hours=1.0)
    svc = JobService(storage, Settings(storage_dir=tmp_path / "s", models_dir=tmp_path / "m"), runner=runner)
    old = await storage.put(b"old", scope="chat:1", name="a.jpg")
    for path in (tmp_path / "s").rglob("*"):
        os.utime(path, (0, 0))
    calls: list[int] = []
    real_expire = storage.expire

    async def flaky_expire() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise StorageError("storage briefly unreachable")
        return await real_expire()

    monkeypatch.setattr(storage, "expire", flaky_expire)
    svc.start_housekeeping(every_s=0.01)
    try:
        await wait_until(lambda: _called_at_least(calls, 3))
    finally:
        await svc.stop_housekeeping()
    assert not await storage.exists(old)


async def _called_at_least(calls: list[int], n: int) -> bool:
    return len(calls) >= n
