"""The papermill executor: every job through its notebook, progress, saved notebooks, no secrets."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image
from test_pipeline import Recorder, cyclegan_spec, nst_spec

from stylebot.config import Settings
from stylebot.jobs.executor import execute_notebook, kernel_env
from stylebot.jobs.pipeline import JobFailed, run_job
from stylebot.ml.nst import Cancelled, CancelToken
from stylebot.storage.local import LocalStorage
from stylebot.telegram import make_token

FAKE_BOT_TOKEN = make_token(123456789)
FAKE_AWS_SECRET = "fakeAwsSecretKey/ForTests+0123456789abcdefXYZ"
FAKE_AWS_KEY_ID = "AKIAFAKEKEYFORTESTS01"
FAKE_ML_TOKEN = "ml-server-token-for-tests-0123456789"
FAKE_WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
SECRETS = (FAKE_BOT_TOKEN, FAKE_AWS_SECRET, FAKE_AWS_KEY_ID, FAKE_ML_TOKEN, FAKE_WEBHOOK_SECRET)


@pytest.fixture
def settings(tmp_path: Path, synthetic_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Papermill executor, with secrets both in the settings and in the process environment."""
    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    monkeypatch.setenv("API_TOKEN", FAKE_BOT_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS_KEY_ID)
    monkeypatch.setenv("SOME_TOOL_CONFIG", f"https://user:{FAKE_ML_TOKEN}@example.invalid")
    return Settings(
        storage_dir=tmp_path / "storage",
        models_dir=synthetic_models_dir,
        device="cpu",
        executor="papermill",
        api_token=FAKE_BOT_TOKEN,
        aws_secret_access_key=FAKE_AWS_SECRET,
        aws_access_key_id=FAKE_AWS_KEY_ID,
        ml_server_token=FAKE_ML_TOKEN,
        webhook_secret=FAKE_WEBHOOK_SECRET,
    )


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.storage_dir)


def outputs(notebook: dict) -> list[dict]:
    return [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]


def assert_no_secret_anywhere(root: Path) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret[:6]}... leaked into {path}"
            assert json.dumps(secret)[1:-1].encode() not in data, f"{secret[:6]}... (escaped) in {path}"


async def test_nst_and_failing_job_through_notebooks_without_leaking_secrets(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await nst_spec(storage, styles=2)
    progress = Recorder()
    outcome = await run_job(spec, storage, settings, on_progress=progress, cancel=CancelToken())
    result = Image.open(io.BytesIO(await storage.get(outcome.result_key)))
    assert result.format == "JPEG" and max(result.size) == 64
    assert outcome.losses and "total" in outcome.losses
    assert progress.events and progress.threads == {threading.get_ident()}
    assert progress.events[-1].fraction == pytest.approx(1.0)
    assert any(e.preview for e in progress.events)

    [ok_key] = await storage.list("stylebot/notebooks/ok/")
    assert ok_key.endswith(f"/nst-{spec.job_id}.ipynb")
    notebook = json.loads(await storage.get(ok_key))
    pictures = [o for o in outputs(notebook) if "image/png" in o.get("data", {})]
    assert len(pictures) == 2  # input/styles/result, and the loss curve
    assert not [o for o in outputs(notebook) if o.get("output_type") == "error"]

    failing = await cyclegan_spec(storage, model="style_ukiyoe")  # not installed
    with pytest.raises(JobFailed) as info:
        await run_job(failing, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code == "model_not_installed"
    [failed_key] = await storage.list("stylebot/notebooks/failed/")
    assert failed_key.endswith(f"/cyclegan-{failing.job_id}.ipynb")
    failed_nb = json.loads(await storage.get(failed_key))
    assert [o["ename"] for o in outputs(failed_nb) if o.get("output_type") == "error"] == ["JobFailed"]

    assert_no_secret_anywhere(settings.storage_dir)


async def test_cyclegan_through_its_notebook(storage: LocalStorage, settings: Settings) -> None:
    spec = await cyclegan_spec(storage, fast=False, side=72, size=72)
    outcome = await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert max(Image.open(io.BytesIO(await storage.get(outcome.result_key))).size) == 72
    [ok_key] = await storage.list("stylebot/notebooks/ok/")
    notebook = json.loads(await storage.get(ok_key))
    assert len([o for o in outputs(notebook) if "image/png" in o.get("data", {})]) == 1


async def test_bad_image_fails_in_the_notebook_with_its_code(
    storage: LocalStorage, settings: Settings
) -> None:
    spec = await cyclegan_spec(storage)
    await storage.put_at(spec.content_key, b"GIF89a but not really")
    with pytest.raises(JobFailed) as info:
        await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
    assert info.value.code in ("not_an_image", "truncated_image")
    assert len(await storage.list("stylebot/notebooks/failed/")) == 1


async def test_cancel_reaches_the_kernel(storage: LocalStorage, settings: Settings) -> None:
    spec = await nst_spec(storage, styles=1, fast=False, size=96, preset="quality")
    token = CancelToken()

    def cancel_on_first(progress: object) -> None:
        token.cancel()

    with pytest.raises(Cancelled):
        await run_job(spec, storage, settings, on_progress=cancel_on_first, cancel=token)
    assert not [k for k in await storage.list("stylebot/") if k.endswith("/result.jpg")]
    assert await storage.list("stylebot/notebooks/failed/") == []


def test_kernel_env_drops_secrets(settings: Settings) -> None:
    env = kernel_env(
        settings,
        {
            "PATH": "/usr/bin",
            "API_TOKEN": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "STYLEBOT_API_TOKEN": "z",
            "GITHUB_TOKEN": "t",
            "HOME": "/root",
            "INNOCENT_LOOKING": f"prefix {FAKE_AWS_SECRET} suffix",
            "LANG": "C.UTF-8",
        },
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "MPLBACKEND": "Agg"}


def test_the_kernel_really_runs_with_the_scrubbed_environment(tmp_path: Path, settings: Settings) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    probe = tmp_path / "probe.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell("out = ''", metadata={"tags": ["parameters"]}),
                new_code_cell(
                    "import os, pathlib\npathlib.Path(out).write_text('\\n'.join(f'{k}={v}' for k, v in "
                    "os.environ.items()))"
                ),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        probe,
    )
    dump = tmp_path / "env.txt"
    execute_notebook(
        probe, tmp_path / "out.ipynb", {"out": str(dump)}, cwd=tmp_path, env=kernel_env(settings)
    )
    seen = dump.read_text()
    assert "PATH=" in seen
    for secret in SECRETS:
        assert secret not in seen
    assert "API_TOKEN" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen


async def test_instant_gallery_and_sheet_jobs_run_through_their_notebooks(
    tmp_path: Path, full_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_pipeline import ff_spec

    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(full_models_dir))
    settings = Settings(
        storage_dir=tmp_path / "storage", models_dir=full_models_dir, device="cpu", executor="papermill"
    )
    storage = LocalStorage(settings.storage_dir)
    specs = [
        await ff_spec(storage, "nst", styles=1, params={"preset": "instant", "size": 64}),
        await ff_spec(storage, "gallery", gallery={7: 1.0}, params={"size": 64}),
        await ff_spec(storage, "sheet"),
    ]
    sizes = []
    for spec in specs:
        outcome = await run_job(spec, storage, settings, on_progress=lambda p: None, cancel=CancelToken())
        sizes.append(Image.open(io.BytesIO(await storage.get(outcome.result_key))).size)
    assert max(sizes[0]) == 64 and max(sizes[1]) == 64
    assert sizes[2] == (4 + 6 * 132, 4 + 5 * (85 + 18 + 4))  # the sheet: 28 tiles, 6 columns
    saved = await storage.list("stylebot/notebooks/ok/")
    assert sorted(k.rsplit("/", 1)[1].split("-", 1)[0] for k in saved) == ["gallery", "nst", "sheet"]
