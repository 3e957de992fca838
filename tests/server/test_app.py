"""The HTTP API around a JobService (fake runner): auth, validation, limits, metrics, exposure."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from server_helpers import FakeRunner, job_id, jpeg, wait_until

from stylebot.cli.server import handle as server_main
from stylebot.config import Settings
from stylebot.server.app import create_app
from stylebot.server.main import check_exposure
from stylebot.server.service import JobService
from stylebot.storage.keys import scope_segment
from stylebot.storage.local import LocalStorage

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture
async def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
async def api(
    storage: LocalStorage, settings: Settings, runner: FakeRunner
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"ml_server_token": SecretStr(TOKEN)})
    app = create_app(JobService(storage, settings, runner=runner, workers=1, queue_size=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client


async def upload(api: httpx.AsyncClient, owner: str = "chat:1") -> str:
    response = await api.post("/v1/inputs", data={"owner": owner}, files={"file": ("a.jpg", jpeg())})
    assert response.status_code == 200, response.text
    return response.json()["key"]


async def nst_body(api: httpx.AsyncClient, owner: str = "chat:1", **params: object) -> dict:
    return {
        "job_id": job_id(),
        "owner": owner,
        "kind": "nst",
        "content_key": await upload(api, owner),
        "style_keys": [await upload(api, owner)],
        "style_weights": [1.0],
        "params": params,
    }


async def test_healthz_is_open_everything_else_needs_the_token(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz", headers={"Authorization": ""})).status_code == 200
    for method, path in [
        ("GET", "/metrics"),
        ("GET", "/v1/styles"),
        ("GET", f"/v1/jobs/{job_id()}"),
        ("POST", "/v1/jobs"),
        ("DELETE", f"/v1/jobs/{job_id()}"),
    ]:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = await api.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["detail"]["code"] == "unauthorized"


async def test_submit_poll_result_over_http(api: httpx.AsyncClient, runner: FakeRunner) -> None:
    body = await nst_body(api)
    response = await api.post("/v1/jobs", json=body)
    assert response.status_code == 202
    status = response.json()
    assert set(status) >= {
        "job_id",
        "state",
        "position",
        "progress",
        "eta_s",
        "preview_key",
        "result_key",
        "error",
    }
    runner.gate(body["job_id"]).set()

    async def done() -> bool:
        return (await api.get(f"/v1/jobs/{body['job_id']}")).json()["state"] == "done"

    await wait_until(done)
    result = await api.get(f"/v1/jobs/{body['job_id']}/result")
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert result.content.startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"params": {"size": 4096}}, "params.size"),
        ({"params": {"size": 8}}, "params.size"),
        ({"params": {"strength": -1}}, "params.strength"),
        ({"params": {"preset": "insane"}}, "params.preset"),
        ({"params": {"iterations": 10**9}}, "params.iterations"),
        ({"style_weights": [0.0]}, "style_weights.0"),
        ({"job_id": "not-hex"}, "job_id"),
        ({"owner": "chat 1; drop"}, "owner"),
        ({"content_key": "../../etc/passwd"}, "content_key"),
        ({"content_key": "/etc/passwd"}, "content_key"),
        ({"content_key": "http://169.254.169.254/latest/meta-data"}, "content_key"),
        ({"style_keys": ["file:///etc/passwd"]}, "style_keys.0"),
        ({"content_url": "http://example.com/a.jpg"}, "content_url"),
        ({"kind": "dreamify"}, "kind"),
    ],
)
async def test_out_of_range_or_hostile_specs_are_422_naming_the_field(
    api: httpx.AsyncClient, change: dict, field: str
) -> None:
    body = await nst_body(api) | change
    response = await api.post("/v1/jobs", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "invalid" and detail["field"] == field and field in detail["message"]


async def test_too_many_styles_and_unknown_inputs_are_422(api: httpx.AsyncClient) -> None:
    body = await nst_body(api)
    response = await api.post(
        "/v1/jobs", json=body | {"style_keys": body["style_keys"] * 6, "style_weights": None}
    )
    assert response.status_code == 422 and response.json()["detail"]["field"] == "style_keys"
    missing = f"stylebot/{scope_segment('chat:1')}-{'0' * 32}/none.jpg"
    response = await api.post("/v1/jobs", json=body | {"content_key": missing})
    assert response.status_code == 422 and response.json()["detail"]["field"] == "content_key"
    response = await api.post("/v1/jobs", json=body | {"owner": "chat:2", "job_id": job_id()})
    assert response.status_code == 403 and response.json()["detail"]["code"] == "foreign_key"


async def test_owner_limit_is_409_and_full_queue_is_503_with_retry_after(
    api: httpx.AsyncClient, runner: FakeRunner
) -> None:
    assert (await api.post("/v1/jobs", json=await nst_body(api, "chat:1"))).status_code == 202
    await wait_until(lambda: runner.started)
    response = await api.post("/v1/jobs", json=await nst_body(api, "chat:1"))
    assert response.status_code == 409 and response.json()["detail"]["code"] == "owner_limit"
    assert (await api.post("/v1/jobs", json=await nst_body(api, "chat:2"))).status_code == 202
    response = await api.post("/v1/jobs", json=await nst_body(api, "chat:3"))
    assert response.status_code == 503 and response.json()["detail"]["code"] == "busy"
    assert int(response.headers["retry-after"]) > 0


async def test_delete_cancels_and_preview_is_204_until_one_exists(
    api: httpx.AsyncClient, runner: FakeRunner
) -> None:
    body = await nst_body(api)
    await api.post("/v1/jobs", json=body)
    await wait_until(lambda: runner.started)
    assert (await api.get(f"/v1/jobs/{body['job_id']}/preview")).status_code == 204
    response = await api.delete(f"/v1/jobs/{body['job_id']}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    response = await api.get(f"/v1/jobs/{body['job_id']}/result")
    assert response.status_code == 409 and response.json()["detail"]["code"] == "not_ready"
    assert (await api.get(f"/v1/jobs/{job_id()}")).status_code == 404


async def test_uploads_reject_non_images_and_oversized_bodies(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/inputs", data={"owner": "chat:1"}, files={"file": ("cat.jpg", b"#!/bin/sh\nrm -rf /\n")}
    )
    assert response.status_code == 422 and response.json()["detail"]["code"] == "not_an_image"
    response = await api.post("/v1/inputs", files={"file": ("cat.jpg", jpeg())})
    assert response.status_code == 422 and response.json()["detail"]["field"] == "owner"
    huge = b"x" * (70 * 1024)
    response = await api.post("/v1/jobs", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_finish_now_answers_for_every_state(api: httpx.AsyncClient, runner: FakeRunner) -> None:
    assert (await api.post(f"/v1/jobs/{job_id()}/finish")).status_code == 404
    assert (await api.post("/v1/jobs/..%2F..%2Fetc/finish")).status_code == 404
    running, queued = await nst_body(api, "chat:1"), await nst_body(api, "chat:2")
    await api.post("/v1/jobs", json=running)
    await wait_until(lambda: running["job_id"] in runner.started)
    await api.post("/v1/jobs", json=queued)
    response = await api.post(f"/v1/jobs/{queued['job_id']}/finish")  # no image yet
    assert response.status_code == 409 and response.json()["detail"]["code"] == "not_ready"
    response = await api.post(f"/v1/jobs/{running['job_id']}/finish")  # running, but no preview yet
    assert response.status_code == 409 and response.json()["detail"]["code"] == "not_ready"
    await api.delete(f"/v1/jobs/{queued['job_id']}")
    response = await api.post(f"/v1/jobs/{queued['job_id']}/finish")  # ended: its state, unchanged
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert response.json()["result_key"] is None


def metric(text: str, name: str) -> float:
    """The value of one sample line, e.g. ``stylebot_queue_length{lane="long"}``; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_move_during_and_after_jobs(api: httpx.AsyncClient, runner: FakeRunner) -> None:
    runner.preview = jpeg((40, 30), (9, 9, 9))
    first, second = await nst_body(api, "chat:1"), await nst_body(api, "chat:2", preset="fast")
    await api.post("/v1/jobs", json=first)
    await wait_until(lambda: first["job_id"] in runner.started)
    await api.post("/v1/jobs", json=second)  # waits behind the first in the long lane

    async def scrape() -> str:
        return (await api.get("/metrics")).text

    async def has_preview() -> bool:
        return (await api.get(f"/v1/jobs/{first['job_id']}")).json()["preview_key"] is not None

    await wait_until(has_preview)
    during = await scrape()
    assert metric(during, 'stylebot_queue_length{lane="long"}') == 1
    assert metric(during, 'stylebot_queue_length{lane="fast"}') == 0
    assert metric(during, 'stylebot_jobs{state="running"}') == 1
    assert metric(during, "stylebot_previews_total") == 1
    assert metric(during, "stylebot_finish_now_total") == 0

    finished = await api.post(f"/v1/jobs/{first['job_id']}/finish")
    assert finished.status_code == 200 and finished.json()["state"] == "done"
    runner.gate(second["job_id"]).set()

    async def second_done() -> bool:
        return (await api.get(f"/v1/jobs/{second['job_id']}")).json()["state"] == "done"

    await wait_until(second_done)
    after = await scrape()
    assert metric(after, 'stylebot_queue_length{lane="long"}') == 0
    assert metric(after, 'stylebot_jobs{state="done"}') == 2
    assert metric(after, "stylebot_previews_total") == 2
    assert metric(after, "stylebot_finish_now_total") == 1
    assert metric(after, 'stylebot_job_duration_seconds_count{kind="nst",preset="balanced"}') == 1
    assert metric(after, 'stylebot_job_duration_seconds_count{kind="nst",preset="fast"}') == 1
    assert metric(after, 'stylebot_job_wait_seconds_count{lane="long"}') == 2


async def test_a_chunked_upload_is_read_only_up_to_the_limit(
    settings: Settings, storage: LocalStorage
) -> None:
    from stylebot.server.app import UPLOAD_OVERHEAD

    settings = settings.model_copy(update={"max_upload_bytes": 100_000})
    app = create_app(JobService(storage, settings, runner=FakeRunner()))
    chunk, pulled, sent = b"x" * 10_000, 0, []
    head = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )

    async def endless_body() -> dict:  # a client that would never stop sending its file
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": head if pulled == 1 else chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/inputs",
        "raw_path": b"/v1/inputs",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "headers": [(b"content-type", b"multipart/form-data; boundary=x")],
    }
    async with app.router.lifespan_context(app):
        await app(scope, endless_body, send)
    assert sent[0]["status"] == 413
    assert b'"too_large"' in b"".join(m.get("body", b"") for m in sent)
    assert (pulled - 1) * len(chunk) <= 100_000 + UPLOAD_OVERHEAD + len(chunk)  # stopped at the limit


def test_refuses_to_listen_beyond_loopback_without_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    bare = Settings()
    assert check_exposure("127.0.0.1", bare) is None
    assert check_exposure("::1", bare) is None
    assert check_exposure("0.0.0.0", bare) is not None
    assert check_exposure("example.org", bare) is not None
    assert check_exposure("0.0.0.0", Settings(ml_server_token=SecretStr(TOKEN))) is None
    assert check_exposure("0.0.0.0", Settings(ml_server_token=SecretStr("short"))) is not None
    args = argparse.Namespace(backend="local", host="0.0.0.0", port=1)
    assert server_main(args) == 2
    assert "ML_SERVER_TOKEN" in capsys.readouterr().err
