"""The pipeline that runs one job, with the direct executor (tiny fast-dev-run jobs)."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylebot.assets import sample_path
from stylebot.config import Settings
from stylebot.imaging import encode_image, load_image, resize_long_side
from stylebot.jobs.pipeline import JobFailed, JobOutcome, JobProgress, run_cyclegan_batch, run_job
from stylebot.jobs.spec import JobParams, JobSpec
from stylebot.ml.nst import Cancelled, CancelToken
from stylebot.storage.local import LocalStorage


def tiny_jpeg(sample: str, side: int = 80) -> bytes:
    return encode_image(resize_long_side(load_image(sample_path(sample).read_bytes()), side))


@pytest.fixture
def settings(tmp_path: Path, synthetic_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    return Settings(storage_dir=tmp_path / "storage", models_dir=synthetic_models_dir, device="cpu")


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.storage_dir)


async def nst_spec(storage: LocalStorage, *, styles: int = 2, fast: bool = True, **params: object) -> JobSpec:
    content = await storage.put(tiny_jpeg("chelsea.jpg"), scope="chat:7", name="content.jpg")
    samples = ["texture_brick.jpg", "texture_grass.jpg", "texture_gravel.jpg"]
    style_keys = [
        await storage.put(tiny_jpeg(samples[i % 3], 64), scope="chat:7", name="style.jpg")
        for i in range(styles)
    ]
    return JobSpec(
        job_id=uuid.uuid4().hex,
        owner="chat:7",
        kind="nst",
        content_key=content,
        style_keys=style_keys,
        style_weights=[2.0] + [1.0] * (styles - 1),
        params=JobParams(fast_dev_run=fast, **params),
    )


async def cyclegan_spec(
    storage: LocalStorage, *, model: str = "style_monet", side: int = 80, fast: bool = True, size: int = 512
) -> JobSpec:
    content = await storage.put(tiny_jpeg("coffee.jpg", side), scope="chat:8", name="content.jpg")
    return JobSpec(
        job_id=uuid.uuid4().hex,
        owner="chat:8",
        kind="cyclegan",
        content_key=content,
        model=model,
        params=JobParams(fast_dev_run=fast, size=size),
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[JobProgress] = []
        self.threads: set[int] = set()

    def __call__(self, progress: JobProgress) -> None:
        self.events.append(progress)
        self.threads.add(threading.get_ident())


async def test_nst_job_stores_a_jpeg_result_and_reports_progress_on_the_loop(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await nst_spec(storage)
    progress = Recorder()
    outcome = await run_job(spec, storage, settings, on_progress=progress, cancel=CancelToken())
    assert isinstance(outcome, JobOutcome)
    assert outcome.result_key.startswith("stylebot/chat_7.") and outcome.result_key.endswith("/result.jpg")
    data = await storage.get(outcome.result_key)
    result = Image.open(io.BytesIO(data))
    assert result.format == "JPEG"
    assert max(result.size) == 64  # fast-dev-run caps the size
    assert outcome.losses and {"total", "style", "content"} <= set(outcome.losses)
    assert progress.events and progress.threads == {threading.get_ident()}
    fractions = [e.fraction for e in progress.events]
    assert fractions[-1] == pytest.approx(1.0)
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert any(e.preview is not None for e in progress.events)
    preview = next(e.preview for e in progress.events if e.preview is not None)
    assert Image.open(io.BytesIO(preview)).format == "JPEG"


async def test_operator_fast_dev_run_applies_without_the_param(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await cyclegan_spec(storage, fast=False, side=96)
    fast_settings = settings.model_copy(update={"default_fast_dev_run": True})
    outcome = await run_job(spec, storage, fast_settings, on_progress=lambda p: None, cancel=CancelToken())
    result = Image.open(io.BytesIO(await storage.get(outcome.result_key)))
    assert max(result.size) == 64


async def test_cyclegan_job_keeps_the_aspect_ratio(storage: LocalStorage, settings: Settings) -> None:
    spec = await cyclegan_spec(storage, fast=False, side=96, size=72)
    content = Image.open(io.BytesIO(await storage.get(spec.content_key)))
    progress = Recorder()
    outcome = await run_job(spec, storage, settings, on_progress=progress, cancel=CancelToken())
    result = Image.open(io.BytesIO(await storage.get(outcome.result_key)))
    assert max(result.size) == 72
    assert result.width / result.height == pytest.approx(content.width / content.height, rel=0.05)
    assert progress.events and progress.events[-1].fraction == 1.0


async def test_missing_input_is_reported_to_the_user(storage: LocalStorage, settings: Settings) -> None:
    spec = await nst_spec(storage, styles=1)
    await storage.delete(spec.style_keys[0])
    with pytest.raises(JobFailed) as info:
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == "input_missing"
    assert "send it again" in info.value.message


async def test_key_of_another_storage_layout_is_input_missing(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await nst_spec(storage, styles=1)
    foreign = spec.model_copy(update={"content_key": "elsewhere/chat-" + "0" * 32 + "/x.jpg"})
    with pytest.raises(JobFailed) as info:
        await run_job(foreign, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == "input_missing"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"this is a text file, not a photo", "not_an_image"),
        (tiny_jpeg("chelsea.jpg")[:300], "truncated_image"),
        (encode_image(Image.new("RGB", (8, 8))), "image_too_small"),
    ],
)
async def test_bad_input_bytes_fail_with_the_imaging_code(
    storage: LocalStorage, settings: Settings, payload: bytes, code: str
) -> None:
    spec = await cyclegan_spec(storage)
    await storage.put_at(spec.content_key, payload)
    with pytest.raises(JobFailed) as info:
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == code
    assert await storage.list("stylebot/") == [spec.content_key]  # no result was stored


async def test_model_not_installed_names_no_server_paths(
    storage: LocalStorage, settings: Settings, synthetic_models_dir: Path
) -> None:
    spec = await cyclegan_spec(storage, model="style_cezanne")
    with pytest.raises(JobFailed) as info:
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == "model_not_installed"
    assert str(synthetic_models_dir) not in info.value.message and "/" not in info.value.message


async def test_cancel_stops_within_an_iteration_and_stores_nothing(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await nst_spec(storage, styles=1)
    token = CancelToken()
    seen: list[JobProgress] = []

    def cancel_after_first(progress: JobProgress) -> None:
        seen.append(progress)
        token.cancel()

    with pytest.raises(Cancelled):
        await run_job(spec, storage, settings, on_progress=cancel_after_first, cancel=token)
    # Progress is marshalled to the loop, so the compute thread may run an iteration or two more.
    assert 1 <= len(seen) <= 3
    assert not [k for k in await storage.list("stylebot/") if k.endswith("/result.jpg")]


async def test_cancelled_before_start(storage: LocalStorage, settings: Settings) -> None:
    spec = await cyclegan_spec(storage)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=token)


async def test_cyclegan_batch_each_job_succeeds_or_fails_alone(
    storage: LocalStorage, settings: Settings
) -> None:
    good_a = await cyclegan_spec(storage, fast=False, side=64, size=64)
    good_b = await cyclegan_spec(storage, fast=False, side=80, size=80)
    winter = await cyclegan_spec(storage, fast=False, model="summer2winter_yosemite", side=64, size=64)
    missing = await cyclegan_spec(storage)
    await storage.delete(missing.content_key)
    not_installed = await cyclegan_spec(storage, model="style_vangogh")
    outcomes = await run_cyclegan_batch([good_a, missing, good_b, not_installed, winter], storage, settings)
    assert [type(o).__name__ for o in outcomes] == [
        "JobOutcome",
        "JobFailed",
        "JobOutcome",
        "JobFailed",
        "JobOutcome",
    ]
    assert outcomes[1].code == "input_missing"  # type: ignore[union-attr]
    assert outcomes[3].code == "model_not_installed"  # type: ignore[union-attr]
    sizes = [
        Image.open(io.BytesIO(await storage.get(o.result_key))).size
        for o in outcomes
        if isinstance(o, JobOutcome)
    ]
    assert [max(s) for s in sizes] == [64, 80, 64]


async def test_batch_result_matches_a_single_run(storage: LocalStorage, settings: Settings) -> None:
    spec = await cyclegan_spec(storage, fast=False, side=64, size=64)
    [batched] = await run_cyclegan_batch([spec], storage, settings)
    single = await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert isinstance(batched, JobOutcome)
    a = np.asarray(Image.open(io.BytesIO(await storage.get(batched.result_key))), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(await storage.get(single.result_key))), dtype=np.int16)
    diff = int(np.abs(a - b).max())
    assert diff <= 8  # the same generator output, up to JPEG rounding


def test_job_failed_survives_pickling() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(JobFailed("input_missing", "Please send it again.")))
    assert (copy.code, copy.message) == ("input_missing", "Please send it again.")


# --- feed-forward kinds: instant, gallery, sheet (real networks from PyPI) --------------------------
@pytest.fixture
def ff_settings(tmp_path: Path, full_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    return Settings(storage_dir=tmp_path / "storage", models_dir=full_models_dir, device="cpu")


async def ff_spec(storage: LocalStorage, kind: str, *, styles: int = 0, **fields: object) -> JobSpec:
    content = await storage.put(tiny_jpeg("chelsea.jpg", 96), scope="chat:9", name="content.jpg")
    style_keys = [
        await storage.put(tiny_jpeg("texture_brick.jpg", 64), scope="chat:9", name="style.jpg")
        for _ in range(styles)
    ]
    params = fields.pop("params", {})
    return JobSpec(
        job_id=uuid.uuid4().hex,
        owner="chat:9",
        kind=kind,
        content_key=content,
        style_keys=style_keys,
        params=JobParams(**params),
        **fields,
    )  # type: ignore[arg-type]


async def _result(storage: LocalStorage, outcome: JobOutcome) -> Image.Image:
    return Image.open(io.BytesIO(await storage.get(outcome.result_key)))


async def test_instant_job_runs_the_feed_forward_network_only(
    storage: LocalStorage, ff_settings: Settings
) -> None:
    spec = await ff_spec(storage, "nst", styles=1, params={"preset": "instant", "size": 80})
    progress = Recorder()
    outcome = await run_job(spec, storage, ff_settings, on_progress=progress, cancel=CancelToken())
    result = await _result(storage, outcome)
    assert max(result.size) == 80 and outcome.losses is None
    assert len(progress.events) == 1 and progress.events[0].preview is not None
    assert progress.events[0].fraction == 1.0


async def test_gallery_job_and_its_blend_differ(storage: LocalStorage, ff_settings: Settings) -> None:
    one = await ff_spec(storage, "gallery", gallery={3: 1.0}, params={"size": 64})
    blend = await ff_spec(storage, "gallery", gallery={3: 0.5, 12: 0.5}, params={"size": 64})
    a = await _result(
        storage, await run_job(one, storage, ff_settings, on_progress=lambda p: None, cancel=CancelToken())
    )
    b = await _result(
        storage, await run_job(blend, storage, ff_settings, on_progress=lambda p: None, cancel=CancelToken())
    )
    assert a.size == b.size and max(a.size) == 64
    assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean() > 2


async def test_sheet_job_shows_the_gallery_and_the_installed_cyclegans(
    storage: LocalStorage, ff_settings: Settings
) -> None:
    spec = await ff_spec(storage, "sheet")
    outcome = await run_job(spec, storage, ff_settings, on_progress=lambda p: None, cancel=CancelToken())
    sheet = await _result(storage, outcome)
    # 26 gallery tiles + the two installed CycleGANs = 28 tiles: 6 columns, 5 rows of the photo at
    # 128 px (128 x 85), each cell with a 4-px gap and an 18-px strip for the CycleGANs' names.
    assert sheet.width == 4 + 6 * (128 + 4) and sheet.height == 4 + 5 * (85 + 18 + 4)


async def test_feed_forward_job_without_the_networks_is_model_not_installed(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await ff_spec(storage, "gallery", gallery={1: 1.0})
    with pytest.raises(JobFailed) as info:
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == "model_not_installed"
