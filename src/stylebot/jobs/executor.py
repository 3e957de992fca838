"""The papermill executor: one job = one executed notebook (``STYLEBOT_EXECUTOR=papermill``).

The direct executor is :func:`stylebot.jobs.pipeline.run_direct`. Here the same pipeline runs
inside a notebook kernel, which gets its inputs as files in a temporary work folder and plain
parameters: the job spec and a ``ComputeConfig`` (no storage credentials, no bot token). The
kernel's environment is scrubbed of secrets as well, so nothing secret can reach a saved notebook.
Progress comes back by tailing ``progress.jsonl``; cancelling creates a ``cancel`` file that the
kernel checks once per iteration. The executed notebook is stored under ``notebooks/ok/`` or
``notebooks/failed/`` (kept longer, for debugging).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylebot.jobs import notebook_support as nb
from stylebot.jobs.pipeline import (
    INTERNAL_MESSAGE,
    ComputeConfig,
    JobFailed,
    JobOutcome,
    JobProgress,
    fetch_inputs,
    store_result_bytes,
)
from stylebot.jobs.spec import JobSpec
from stylebot.storage.base import StorageError

if TYPE_CHECKING:
    from stylebot.config import Settings
    from stylebot.ml.runtime import CancelToken
    from stylebot.storage.base import Storage

log = logging.getLogger(__name__)

POLL_S = 0.2
KERNEL_START_TIMEOUT_S = 120
# Environment variables a kernel never needs and must never see: credentials and tokens of any
# kind, and the service's own settings (the kernel gets what it needs as parameters).
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|PRIVATE|AUTH|SESSION", re.I)
_DROPPED_ENV = {
    "API_TOKEN",
    "REDIS_URL",
    "ML_SERVER_HOST_ADDR",
    "WEBHOOK_HOST_ADDR",
    "S3_BUCKET_WITH_RESULTS_NAME",
    "S3_RESULTS_PREFIX",
}


def notebook_path(kind: str) -> Path:
    return Path(str(files("stylebot.jobs") / "notebooks" / f"{kind}.ipynb"))


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, in clear, to keep them out of kernels and notebooks."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            secret = value.get_secret_value()
            if secret:
                values.append(secret)
    return values


def kernel_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus anything secret, for the notebook kernel."""
    secrets = secret_values(settings)
    env = {}
    for name, value in (os.environ if base is None else base).items():
        if _SECRET_ENV.search(name) or name in _DROPPED_ENV or name.startswith("STYLEBOT_"):
            continue
        if any(s in value for s in secrets):
            continue
        env[name] = value
    env["MPLBACKEND"] = "Agg"
    return env


def _kernel_manager_class(env: dict[str, str], socket_dir: Path) -> type:
    from jupyter_client.manager import AsyncKernelManager

    class ScrubbedEnvKernelManager(AsyncKernelManager):
        """Starts the kernel with exactly ``env`` instead of inheriting this process's environment,
        talking over Unix sockets in the job's private folder rather than TCP ports."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.transport = "ipc"
            self.ip = str(socket_dir / "kernel")

        async def _async_start_kernel(self, **kw: Any) -> None:
            kw["env"] = dict(env)
            await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

    return ScrubbedEnvKernelManager


def execute_notebook(
    input_path: Path, output_path: Path, parameters: dict[str, Any], *, cwd: Path, env: dict[str, str]
) -> None:
    """Run a notebook with papermill in a scrubbed kernel; raises papermill's errors."""
    import papermill as pm

    pm.execute_notebook(
        str(input_path),
        str(output_path),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        start_timeout=KERNEL_START_TIMEOUT_S,
        cwd=str(cwd),
        shutdown_kernel="immediate",
        kernel_manager_class=_kernel_manager_class(env, cwd),
    )


class _ProgressTail:
    """Reads new JSON lines from the kernel's progress file and hands them to ``on_progress``."""

    def __init__(self, work: Path, on_progress: Callable[[JobProgress], None]) -> None:
        self.path = work / nb.PROGRESS_FILE
        self.work = work
        self.on_progress = on_progress
        self.offset = 0
        self.partial = b""

    def drain(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            preview = None
            if event.get("preview"):
                with contextlib.suppress(OSError):
                    preview = (self.work / Path(event["preview"]).name).read_bytes()
            try:
                self.on_progress(
                    JobProgress(
                        fraction=float(event.get("fraction", 0.0)),
                        eta_s=event.get("eta_s"),
                        stage=event.get("stage"),
                        losses=event.get("losses"),
                        preview=preview,
                    )
                )
            except Exception:
                log.exception("progress callback failed")


async def _watch(work: Path, tail: _ProgressTail, cancel: CancelToken) -> None:
    while True:
        tail.drain()
        if cancel.cancelled and not (work / nb.CANCEL_FILE).exists():
            (work / nb.CANCEL_FILE).touch()
        await asyncio.sleep(POLL_S)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


async def run_papermill(
    spec: JobSpec,
    storage: Storage,
    settings: Settings,
    *,
    on_progress: Callable[[JobProgress], None],
    cancel: CancelToken,
) -> JobOutcome:
    from stylebot.ml.runtime import Cancelled

    started = time.monotonic()
    config = ComputeConfig.for_job(spec, settings)
    content, styles = await fetch_inputs(spec, storage)
    with tempfile.TemporaryDirectory(prefix="stylebot-nb-") as tmp:
        work = Path(tmp)
        (work / nb.CONTENT_FILE).write_bytes(content)
        for i, data in enumerate(styles):
            (work / nb.STYLE_FILE.format(i)).write_bytes(data)
        parameters = {"job_json": spec.model_dump_json(), "work_dir": str(work), "config": config.to_dict()}
        executed = work / "executed.ipynb"
        tail = _ProgressTail(work, on_progress)
        watcher = asyncio.create_task(_watch(work, tail, cancel))
        run_error: BaseException | None = None
        try:
            await asyncio.to_thread(
                execute_notebook,
                notebook_path(spec.kind.value),
                executed,
                parameters,
                cwd=work,
                env=kernel_env(settings),
            )
        except Exception as exc:  # PapermillExecutionError, a kernel that died or never started
            run_error = exc
        except BaseException:  # this task was cancelled (shutdown): stop the kernel's work too
            (work / nb.CANCEL_FILE).touch()
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            tail.drain()

        error = _read_json(work / nb.ERROR_JSON)
        cancelled = error is not None and error.get("code") == "cancelled"
        succeeded = run_error is None and (work / nb.RESULT_FILE).is_file()
        await _save_notebook(spec, storage, executed, failed=not succeeded and not cancelled)
        if cancelled:
            raise Cancelled("cancelled")
        if error is not None:
            raise JobFailed(str(error.get("code", "internal")), str(error.get("message", "")))
        if not succeeded:
            log.error("job %s: notebook run failed: %s", spec.job_id, _short(run_error))
            raise JobFailed("internal", INTERNAL_MESSAGE)
        result = _read_json(work / nb.RESULT_JSON) or {}
        data = (work / nb.RESULT_FILE).read_bytes()
    key = await store_result_bytes(spec, storage, data)
    return JobOutcome(result_key=key, losses=result.get("losses"), seconds=time.monotonic() - started)


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no result was written"
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {str(evalue)[:300]}"


async def _save_notebook(spec: JobSpec, storage: Storage, executed: Path, *, failed: bool) -> None:
    """Keep the executed notebook; losing it must not fail (or un-fail) the job."""
    if not executed.is_file():
        return
    put_notebook = getattr(storage, "put_notebook", None)
    if put_notebook is None:
        return
    try:
        key = await put_notebook(
            executed.read_bytes(),
            scope=spec.owner,
            name=f"{spec.kind.value}-{spec.job_id}.ipynb",
            failed=failed,
        )
        log.info("job %s: executed notebook saved as %s", spec.job_id, key)
    except StorageError as exc:
        log.warning("job %s: could not save the executed notebook: %s", spec.job_id, exc)
