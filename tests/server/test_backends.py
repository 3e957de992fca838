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
from stylebot.storage.keys import scope_segment
from stylebot.storage.local import LocalStorage

pytestmark = pytest.mark.slow
MAX_UPLOAD = 2 * 2**20  # the phone photo fits; re-encoded at quality 95 it would not


@pytest.fixture(scope="module", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, full_models_dir: Path
) -> Iterator[ServerProcess]:
    backend = request.param
    root = tmp_path_factory.mktemp(backend)
    env = server_env(
        backend,
        root / "storage",
        full_models_dir,
        tmp_path_factory.mktemp("ray") if backend == "ray" else None,
    )
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
    return {
        "job_id": uuid.uuid4().hex,
        "owner": who,
        "kind": "cyclegan",
        "model": "style_monet",
        "content_key": content_key,
        "params": {"fast_dev_run": True},
    }


def nst_body(who: str, content_key: str, style_keys: list[str], **params: object) -> dict:
    return {
        "job_id": uuid.uuid4().hex,
        "owner": who,
        "kind": "nst",
        "content_key": content_key,
        "style_keys": style_keys,
        "params": params,
    }


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
            yield data[i : i + 256 * 1024]

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
    body = nst_body(
        who,
        upload(http, who, small_jpeg("coffee.jpg")),
        [upload(http, who, small_jpeg("texture_brick.jpg"))],
        size=64,
        preset="fast",
    )
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
    stored = [
        p
        for p in Path(server.storage_dir).rglob("preview.jpg")  # type: ignore[attr-defined]
        if p.parent.name.startswith(scope_segment(who) + "-")
    ]
    assert len(stored) == 1, stored  # storage keeps only the latest preview per job


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_api_refuses_bad_tokens_and_names_bad_fields(http: httpx.Client, server: ServerProcess) -> None:
    assert http.get("/v1/styles", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get("/metrics", headers={"Authorization": ""}).status_code == 401
    who = owner()
    key = upload(http, who, small_jpeg("coffee.jpg"))
    bad = http.post("/v1/jobs", json=nst_body(who, key, [key], size=99999))
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "params.size"
    styles = {s["name"]: s for s in http.get("/v1/styles").json()["styles"]}
    assert styles["style_monet"]["installed"] is True and styles["style_vangogh"]["installed"] is False
    # The feed-forward networks are listed too (the operator's startup line names them), not the
    # NST backbones.
    for network in ("multistyle26", "arbitrary_predict", "arbitrary_transform"):
        assert styles[network]["kind"] == "feedforward" and styles[network]["installed"] is True
    assert "vgg19" not in styles and "vgg16" not in styles


def test_a_short_job_never_waits_behind_a_refinement(http: httpx.Client) -> None:
    alice, bob = owner(), owner()
    photo = upload(http, alice, small_jpeg("coffee.jpg", 96))
    style = upload(http, alice, small_jpeg("texture_brick.jpg"))
    long_job = nst_body(alice, photo, [style], size=512, preset="balanced")
    submit(http, long_job)
    wait_status(http, long_job["job_id"], lambda s: s["state"] == "running")
    # One job per owner at a time in each lane, with one message on both backends.
    refused = http.post("/v1/jobs", json=nst_body(alice, photo, [style], size=96, preset="balanced"))
    assert refused.status_code == 409
    assert refused.json()["detail"] == {
        "code": "owner_limit",
        "message": "You already have 1 job(s) in progress; wait for it to finish or cancel it.",
    }
    # ...while a short job of the same owner (the style sheet for a new photo) is welcome.
    assert run_to_end(http, cyclegan_body(alice, photo))["state"] == "done"
    bob_photo = upload(http, bob, small_jpeg("coffee.jpg", 512))
    instant = nst_body(
        bob, bob_photo, [upload(http, bob, small_jpeg("texture_grass.jpg"))], size=512, preset="instant"
    )
    done = run_to_end(http, instant)
    assert done["state"] == "done", done
    assert max(load_image(http.get(f"/v1/jobs/{instant['job_id']}/result").content).size) == 512
    gallery = {
        "job_id": uuid.uuid4().hex,
        "owner": bob,
        "kind": "gallery",
        "gallery": {"3": 1.0},
        "content_key": bob_photo,
        "params": {"size": 96},
    }
    done = run_to_end(http, gallery)
    assert done["state"] == "done", done
    # The refinement was running the whole time: the short job did not wait for it.
    assert http.get(f"/v1/jobs/{long_job['job_id']}").json()["state"] == "running"
    cancelled = http.delete(f"/v1/jobs/{long_job['job_id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["result_key"] is None
    assert http.get(f"/v1/jobs/{long_job['job_id']}/result").json()["detail"]["code"] == "not_ready"


def test_finish_now_ends_a_refinement_with_its_latest_image_at_full_size(http: httpx.Client) -> None:
    who = owner()
    photo = upload(http, who, small_jpeg("coffee.jpg", 200))
    style = upload(http, who, small_jpeg("texture_brick.jpg"))
    body = nst_body(who, photo, [style], size=160, preset="balanced")
    blocker_owner = owner()
    blocker = nst_body(
        blocker_owner,
        upload(http, blocker_owner, small_jpeg("chelsea.jpg", 96)),
        [upload(http, blocker_owner, small_jpeg("texture_brick.jpg"))],
        size=512,
    )
    submit(http, blocker)  # holds the long lane, so the job below waits without an image
    wait_status(http, blocker["job_id"], lambda s: s["state"] == "running")
    submit(http, body)
    assert http.get(f"/v1/jobs/{body['job_id']}").json()["state"] == "queued"
    early = http.post(f"/v1/jobs/{body['job_id']}/finish")  # no image yet
    assert early.status_code == 409 and early.json()["detail"]["code"] == "not_ready", early.text
    http.delete(f"/v1/jobs/{blocker['job_id']}")
    before = http.get("/metrics").text
    wait_status(http, body["job_id"], lambda s: s["preview_key"] is not None or finished(s))
    during = http.get(f"/v1/jobs/{body['job_id']}").json()
    assert during["state"] == "running", during
    response = http.post(f"/v1/jobs/{body['job_id']}/finish")
    assert response.status_code == 200, response.text
    final = response.json()
    assert final["state"] == "done" and final["result_key"] is not None and final["progress"] == 1.0
    result = load_image(http.get(f"/v1/jobs/{body['job_id']}/result").content)
    assert max(result.size) == 160 and result.size[0] > result.size[1]  # full size, not the preview's
    again = http.post(f"/v1/jobs/{body['job_id']}/finish").json()
    assert again["state"] == "done" and again["result_key"] == final["result_key"]  # idempotent
    time.sleep(2.0)  # the worker stops at its next check; the job stays done with that image
    assert http.get(f"/v1/jobs/{body['job_id']}").json()["result_key"] == final["result_key"]
    after = http.get("/metrics").text
    assert metric(after, "stylebot_finish_now_total") == metric(before, "stylebot_finish_now_total") + 1
    assert metric(after, "stylebot_previews_total") > metric(before, "stylebot_previews_total")
    key = 'stylebot_job_duration_seconds_count{kind="nst",preset="balanced"}'
    assert metric(after, key) == metric(before, key) + 1


def test_metrics_move_while_a_job_waits_and_runs(http: httpx.Client) -> None:
    alice, bob = owner(), owner()
    long_job = nst_body(
        alice,
        upload(http, alice, small_jpeg("coffee.jpg", 96)),
        [upload(http, alice, small_jpeg("texture_brick.jpg"))],
        size=512,
    )
    waiting = nst_body(
        bob,
        upload(http, bob, small_jpeg("chelsea.jpg")),
        [upload(http, bob, small_jpeg("texture_brick.jpg"))],
        fast_dev_run=True,
    )
    start = http.get("/metrics").text
    submit(http, long_job)
    wait_status(http, long_job["job_id"], lambda s: s["state"] == "running")
    submit(http, waiting)

    def scrape_until(check: object) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = http.get("/metrics").text
            if check(text):  # type: ignore[operator]
                return text
            time.sleep(0.1)
        raise AssertionError(text)

    during = scrape_until(lambda t: metric(t, 'stylebot_queue_length{lane="long"}') == 1)
    assert metric(during, 'stylebot_jobs{state="running"}') >= 1
    http.delete(f"/v1/jobs/{long_job['job_id']}")
    wait_status(http, waiting["job_id"], finished)
    after = scrape_until(lambda t: metric(t, 'stylebot_queue_length{lane="long"}') == 0)
    for state in ("cancelled", "done"):
        key = f'stylebot_jobs{{state="{state}"}}'
        assert metric(after, key) == metric(start, key) + 1
    key = 'stylebot_job_wait_seconds_count{lane="long"}'
    assert metric(after, key) == metric(start, key) + 2


def test_sigterm_stops_the_server_cleanly_and_a_restart_resumes_the_job(
    http: httpx.Client, server: ServerProcess
) -> None:
    who = owner()
    body = nst_body(
        who,
        upload(http, who, small_jpeg("coffee.jpg", 96)),
        [upload(http, who, small_jpeg("texture_brick.jpg", 96))],
        size=512,
        preset="balanced",
    )
    submit(http, body)
    wait_status(http, body["job_id"], lambda s: s["state"] == "running" and s["progress"] > 0)
    children = server.descendants()
    assert server.stop(signal.SIGTERM) == 0
    time.sleep(1.0)
    alive = [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
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
    children = server.descendants()  # SIGINT (Ctrl-C) stops it as cleanly as SIGTERM
    assert server.stop(signal.SIGINT) == 0
    time.sleep(1.0)
    assert not [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
