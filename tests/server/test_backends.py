"""One contract, two backends: a real `stylebot server --backend local` and `--backend ray`.

Each backend runs as a subprocess (module-scoped: Ray takes ~15 s to start) and is driven over
HTTP as the bot and an operator would. Synthetic weights; tiny images except where size is the
point (a 4000×3000 phone photo).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from backend_server import ServerProcess, finished, phone_jpeg, server_env, small_jpeg, wait_status

from stylebot.imaging import load_image
from stylebot.jobs.store import JobStore
from stylebot.storage.local import LocalStorage

pytestmark = pytest.mark.slow
MAX_UPLOAD = 2 * 2**20  # the phone photo fits; re-encoded at quality 95 it would not


@pytest.fixture(scope="module", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, synthetic_models_dir: Path
) -> Iterator[ServerProcess]:
    backend = request.param
    root = tmp_path_factory.mktemp(backend)
    env = server_env(backend, root / "storage", synthetic_models_dir,
                     tmp_path_factory.mktemp("ray") if backend == "ray" else None)
    env["STYLEBOT_MAX_UPLOAD_BYTES"] = str(MAX_UPLOAD)
    proc = ServerProcess(backend, env, root / "server.log")
    proc.storage_dir = root / "storage"  # type: ignore[attr-defined]
    try:
        proc.start()
        yield proc
    except BaseException:
        print(proc.log_tail())
        raise
    finally:
        proc.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


def owner() -> str:
    return f"chat:{uuid.uuid4().int % 10**9}"


def upload(http: httpx.Client, who: str, data: bytes, name: str = "photo.jpg") -> str:
    response = http.post("/v1/inputs", data={"owner": who}, files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()["key"]


def cyclegan_body(who: str, content_key: str) -> dict:
    return {"job_id": uuid.uuid4().hex, "owner": who, "kind": "cyclegan", "model": "style_monet",
            "content_key": content_key, "params": {"fast_dev_run": True}}


def nst_body(who: str, content_key: str, style_keys: list[str], **params: object) -> dict:
    return {"job_id": uuid.uuid4().hex, "owner": who, "kind": "nst", "content_key": content_key,
            "style_keys": style_keys, "params": params}


def submit(http: httpx.Client, body: dict) -> dict:
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def run_to_end(http: httpx.Client, body: dict) -> dict:
    submit(http, body)
    return wait_status(http, body["job_id"], finished)


def test_a_phone_photo_of_several_megabytes_is_accepted_and_styled(http: httpx.Client) -> None:
    photo = phone_jpeg()
    who = owner()
    key = upload(http, who, photo)  # with a Content-Length
    final = run_to_end(http, cyclegan_body(who, key) | {"params": {"fast_dev_run": True, "size": 256}})
    assert final["state"] == "done", final
    result = load_image(http.get(f"/v1/jobs/{final['job_id']}/result").content)
    assert max(result.size) <= 256 and result.size[0] > result.size[1]  # landscape kept

    # The same photo sent chunked (no Content-Length) is read and accepted too...
    request = http.build_request("POST", "/v1/inputs", data={"owner": who}, files={"file": ("p.jpg", photo)})
    body = request.read()

    def chunks(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i:i + 256 * 1024]

    headers = {"Content-Type": request.headers["Content-Type"]}
    response = http.post("/v1/inputs", content=chunks(body), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    # ... but a chunked body over the limit is refused once the limit is passed.
    response = http.post("/v1/inputs", content=chunks(body + b"x" * (MAX_UPLOAD + 2**20)), headers=headers)
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"
    declared = http.post("/v1/inputs", content=body + b"x" * (MAX_UPLOAD + 2**20), headers=headers)
    assert declared.status_code == 413


def test_a_job_may_name_only_its_owners_inputs(http: httpx.Client, server: ServerProcess) -> None:
    alice, mallory = owner(), owner()
    alice_photo = upload(http, alice, small_jpeg("coffee.jpg"))
    alice_style = upload(http, alice, small_jpeg("texture_brick.jpg"))
    mine = upload(http, mallory, small_jpeg("chelsea.jpg"))
    done = run_to_end(http, cyclegan_body(alice, alice_photo))
    assert done["state"] == "done", done
    record_key = JobStore(LocalStorage(server.storage_dir)).key(done["job_id"])  # type: ignore[attr-defined]
    forms = [
        ("content_key", nst_body(mallory, alice_photo, [mine])),
        ("style_keys.0", nst_body(mallory, mine, [alice_style])),
        ("style_keys.1", nst_body(mallory, mine, [mine, alice_style])),
        ("content_key", cyclegan_body(mallory, done["result_key"])),  # another owner's result
        ("content_key", cyclegan_body(mallory, record_key)),  # a job record is no input
        ("content_key", cyclegan_body(alice, record_key)),  # not even for the job's owner
    ]
    for field, body in forms:
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 403, (field, response.text)
        detail = response.json()["detail"]
        assert detail["code"] == "foreign_key" and detail["field"] == field, detail
        assert http.get(f"/v1/jobs/{body['job_id']}").status_code == 404  # nothing was recorded
    assert run_to_end(http, cyclegan_body(mallory, mine))["state"] == "done"


def test_previews_change_as_the_job_goes_and_only_the_latest_is_kept(
    http: httpx.Client, server: ServerProcess
) -> None:
    who = owner()
    body = nst_body(who, upload(http, who, small_jpeg("coffee.jpg")),
                    [upload(http, who, small_jpeg("texture_brick.jpg"))], size=64, preset="fast")
    submit(http, body)
    seen: dict[str, bytes] = {}
    deadline = time.monotonic() + 180
    status: dict = {}
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{body['job_id']}").json()
        key = status["preview_key"]
        if key is not None and key not in seen:
            preview = http.get(f"/v1/jobs/{body['job_id']}/preview")
            if preview.status_code == 200:
                seen[key] = preview.content
        if finished(status):
            break
        time.sleep(0.02)
    assert status["state"] == "done", status
    assert len(seen) >= 2, seen.keys()
    assert len(set(seen.values())) == len(seen)  # each key shows a different image
    stored = [p for p in Path(server.storage_dir).rglob("preview.jpg")  # type: ignore[attr-defined]
              if p.parent.name.startswith(who.replace(":", "_") + "-")]
    assert len(stored) == 1, stored  # storage keeps only the latest preview per job


def test_sigterm_stops_the_server_cleanly_and_a_restart_resumes_the_job(
    http: httpx.Client, server: ServerProcess
) -> None:
    who = owner()
    body = nst_body(who, upload(http, who, small_jpeg("coffee.jpg", 96)),
                    [upload(http, who, small_jpeg("texture_brick.jpg", 96))], size=512, preset="balanced")
    submit(http, body)
    wait_status(http, body["job_id"], lambda s: s["state"] == "running" and s["progress"] > 0)
    children = server.descendants()
    # uvicorn re-raises the signal after its graceful shutdown (so the local server reports -15);
    # the Ray server catches it, shuts Serve and Ray down and exits 0.
    assert server.stop(signal.SIGTERM) == (0 if server.backend == "ray" else -signal.SIGTERM)
    time.sleep(1.0)
    alive = [pid for pid in children if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, [psutil.Process(p).cmdline() for p in alive]
    store = JobStore(LocalStorage(server.storage_dir))  # type: ignore[attr-defined]
    import asyncio

    record = asyncio.run(store.load(body["job_id"]))
    assert record is not None and record.status.state.value == "running"  # recorded as it was

    server.start()
    with server.http() as again:
        wait_status(again, body["job_id"], lambda s: s["state"] == "running" and s["progress"] > 0)
        record = asyncio.run(store.load(body["job_id"]))
        assert record is not None and record.attempts == 2
        assert again.delete(f"/v1/jobs/{body['job_id']}").json()["state"] == "cancelled"
