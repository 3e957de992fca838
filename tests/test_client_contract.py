"""One contract, two JobClients: in-process and HTTP (FastAPI app) must behave the same.

Real pipeline, synthetic weights, tiny fast-dev-run jobs (allowed by the operator setting).
"""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from stylebot.assets import sample_path
from stylebot.client import HttpJobClient, InProcessJobClient, JobClient, JobClientError, make_job_client
from stylebot.config import Settings
from stylebot.imaging import encode_image, load_image_file, resize_long_side
from stylebot.jobs.spec import JobParams, JobSpec, JobState, JobStatus
from stylebot.server.app import create_app
from stylebot.server.service import JobService
from stylebot.storage import make_storage
from stylebot.storage.keys import scope_segment

TOKEN = "contract-token-0123456789abcdef"


def small_jpeg(name: str, side: int = 80) -> bytes:
    return encode_image(resize_long_side(load_image_file(sample_path(name)), side), "JPEG")


@pytest.fixture(params=["in_process", "http"])
async def client(
    request: pytest.FixtureRequest,
    synthetic_models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[JobClient]:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    settings = Settings(
        storage_dir=tmp_path / "storage",
        models_dir=synthetic_models_dir,
        device="cpu",
        allow_caller_fast_dev_run=True,
        ml_server_token=SecretStr(TOKEN),
        workers=1,
    )
    service = JobService(make_storage(settings), settings)
    if request.param == "in_process":
        job_client = InProcessJobClient(service)
        yield job_client
        await job_client.aclose()
        await service.stop()
        return
    app = create_app(service)
    async with app.router.lifespan_context(app):
        job_client = HttpJobClient("http://ml.test", TOKEN, transport=httpx.ASGITransport(app=app))
        yield job_client
        await job_client.aclose()


async def upload_pair(client: JobClient, owner: str) -> tuple[str, str]:
    content = await client.upload_input(small_jpeg("chelsea.jpg"), owner=owner, name="chelsea.jpg")
    style = await client.upload_input(small_jpeg("texture_brick.jpg"), owner=owner, name="brick.jpg")
    return content, style


def nst_spec(owner: str, content: str, style: str, **params: object) -> JobSpec:
    return JobSpec(
        job_id=uuid.uuid4().hex,
        owner=owner,
        kind="nst",
        content_key=content,
        style_keys=[style],
        params=JobParams(**({"fast_dev_run": True} | params)),
    )


async def finish(client: JobClient, job_id: str, timeout: float = 120.0) -> list[JobStatus]:
    async def collect() -> list[JobStatus]:
        return [status async for status in client.watch(job_id, interval=0.05)]

    return await asyncio.wait_for(collect(), timeout)


async def test_styles_list_every_model_and_whether_it_is_installed(client: JobClient) -> None:
    styles = {s.name: s for s in await client.styles()}
    assert set(styles) >= {"style_monet", "style_cezanne", "summer2winter_yosemite"}
    assert styles["style_monet"].installed and styles["summer2winter_yosemite"].installed
    assert not styles["style_cezanne"].installed and styles["style_cezanne"].reason


async def test_nst_job_end_to_end(client: JobClient) -> None:
    content, style = await upload_pair(client, "chat:1")
    spec = nst_spec("chat:1", content, style)
    first = await client.submit(spec)
    assert first.job_id == spec.job_id and first.state in (JobState.queued, JobState.running)
    statuses = await finish(client, spec.job_id)
    final = statuses[-1]
    assert final.state is JobState.done, final.error
    assert final.result_key and final.finished_at and final.started_at
    image = Image.open(io.BytesIO(await client.result(spec.job_id)))
    assert max(image.size) <= 64  # fast-dev-run: tiny
    assert (await client.submit(spec)).state is JobState.done  # idempotent, not run again


async def test_cyclegan_job_end_to_end_and_missing_model_fails_cleanly(client: JobClient) -> None:
    content, _ = await upload_pair(client, "chat:2")
    spec = JobSpec(
        job_id=uuid.uuid4().hex,
        owner="chat:2",
        kind="cyclegan",
        model="style_monet",
        content_key=content,
        params=JobParams(fast_dev_run=True),
    )
    await client.submit(spec)
    final = (await finish(client, spec.job_id))[-1]
    assert final.state is JobState.done, final.error
    Image.open(io.BytesIO(await client.result(spec.job_id))).verify()

    missing = spec.model_copy(update={"job_id": uuid.uuid4().hex, "model": "style_cezanne"})
    await client.submit(missing)
    final = (await finish(client, missing.job_id))[-1]
    assert final.state is JobState.failed and final.error is not None
    assert final.error.message and "Traceback" not in final.error.message


async def test_cancel_queued_and_running_jobs(client: JobClient) -> None:
    c1, s1 = await upload_pair(client, "chat:10")
    c2, s2 = await upload_pair(client, "chat:11")
    # A job big enough to still be running when cancelled (not fast-dev-run).
    long_job = nst_spec("chat:10", c1, s1, fast_dev_run=False, size=256, preset="quality")
    queued_job = nst_spec("chat:11", c2, s2)
    await client.submit(long_job)
    await client.submit(queued_job)
    queued = await client.status(queued_job.job_id)
    assert queued.state is JobState.queued and queued.position == 0
    assert (await client.cancel(queued_job.job_id)).state is JobState.cancelled

    async for status in client.watch(long_job.job_id, interval=0.05):
        if status.state is JobState.running:
            break
    await client.cancel(long_job.job_id)
    final = (await finish(client, long_job.job_id, timeout=60))[-1]
    assert final.state is JobState.cancelled and final.result_key is None
    with pytest.raises(JobClientError) as err:
        await client.result(long_job.job_id)
    assert err.value.code == "not_ready"


async def finish_early(client: JobClient, owner: str) -> tuple[JobStatus, JobStatus]:
    """A refinement finished with its latest preview; returns the first and second finish answers."""
    content = await client.upload_input(small_jpeg("chelsea.jpg", 160), owner=owner, name="c.jpg")
    style = await client.upload_input(small_jpeg("texture_brick.jpg"), owner=owner, name="s.jpg")
    spec = nst_spec(owner, content, style, fast_dev_run=False, size=128, preset="quality")
    await client.submit(spec)
    with pytest.raises(JobClientError) as err:
        await client.finish(spec.job_id)
    assert err.value.code == "not_ready"
    async for status in client.watch(spec.job_id, interval=0.05):
        if status.preview_key is not None or status.finished:
            break
    assert status.state is JobState.running, status
    first = await client.finish(spec.job_id)
    assert first.state is JobState.done and first.result_key is not None
    image = Image.open(io.BytesIO(await client.result(spec.job_id)))
    assert max(image.size) == 128  # the full result size, whatever the preview's level was
    return first, await client.finish(spec.job_id)


async def test_finish_now_ends_a_refinement_with_its_latest_image(client: JobClient) -> None:
    first, again = await finish_early(client, "chat:20")
    assert again.state is JobState.done and again.result_key == first.result_key


async def test_finish_now_through_the_notebook_executor(synthetic_models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        storage_dir=tmp_path / "storage",
        models_dir=synthetic_models_dir,
        device="cpu",
        executor="papermill",
        workers=1,
    )
    service = JobService(make_storage(settings), settings)
    client = InProcessJobClient(service)
    try:
        first, again = await finish_early(client, "chat:21")
        assert again.result_key == first.result_key
    finally:
        await client.aclose()
        await service.stop()


async def test_errors_have_stable_codes(client: JobClient) -> None:
    with pytest.raises(JobClientError) as err:
        await client.status(uuid.uuid4().hex)
    assert err.value.code == "not_found"
    with pytest.raises(JobClientError) as err:
        await client.upload_input(b"GIF89a-but-not-really", owner="chat:3", name="x.gif")
    assert err.value.code in ("not_an_image", "truncated_image") and str(err.value)
    content, style = await upload_pair(client, "chat:3")
    gone = f"stylebot/{scope_segment('chat:3')}-{'0' * 32}/gone.jpg"  # well-formed, the owner's, missing
    with pytest.raises(JobClientError) as err:
        await client.submit(nst_spec("chat:3", content, gone))
    assert err.value.code == "invalid" and err.value.field == "style_keys.0"
    with pytest.raises(JobClientError) as err:  # another chat's photo
        await client.submit(nst_spec("chat:4", content, style))
    assert err.value.code == "foreign_key" and err.value.field == "content_key"
    await client.submit(nst_spec("chat:3", content, style, fast_dev_run=False, size=256, preset="quality"))
    with pytest.raises(JobClientError) as err:
        await client.submit(nst_spec("chat:3", content, style))
    assert err.value.code == "owner_limit" and str(err.value)


# --- HTTP-only: transport failures and status-code fallbacks -----------------------------------
async def test_http_client_maps_connection_errors_to_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpJobClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2)
    with pytest.raises(JobClientError) as err:
        await client.status(uuid.uuid4().hex)
    await client.aclose()
    assert err.value.code == "unavailable"
    assert "127.0.0.1" not in str(err.value) and TOKEN not in str(err.value)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (409, "owner_limit"),
        (503, "busy"),
        (422, "invalid"),
        (404, "not_found"),
        (500, "unavailable"),
        (401, "unauthorized"),
    ],
)
async def test_http_client_maps_bare_status_codes(status: int, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(status, text="<html>proxy error</html>", headers={"Retry-After": "7"})

    client = HttpJobClient("http://ml.test", TOKEN, transport=httpx.MockTransport(handler))
    with pytest.raises(JobClientError) as err:
        await client.status(uuid.uuid4().hex)
    await client.aclose()
    assert err.value.code == code and "<html>" not in str(err.value)
    if code == "busy":
        assert err.value.retry_after == 7


def test_factory_picks_http_only_when_a_server_is_configured() -> None:
    assert isinstance(make_job_client(Settings()), InProcessJobClient)
    remote = make_job_client(Settings(ml_server_host_addr="http://127.0.0.1:9", ml_server_token=TOKEN))
    assert isinstance(remote, HttpJobClient)
    asyncio.run(remote.aclose())
