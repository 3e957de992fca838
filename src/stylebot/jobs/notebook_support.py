"""What the job notebooks (``jobs/notebooks/*.ipynb``) call: the kernel side of the papermill executor.

The executor puts the job's input bytes as files into a work folder and passes the job spec and
a :class:`~stylebot.jobs.pipeline.ComputeConfig` as notebook parameters (no secrets, no storage
access). Here the same :func:`~stylebot.jobs.pipeline.compute` as the direct executor runs;
progress goes out as JSON lines (``progress.jsonl``, previews as JPEG files beside it), a
``cancel`` file appearing in the folder cancels the run, and the outcome is left as
``result.jpg`` + ``result.json`` or ``error.json`` for the executor to collect.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from stylebot.imaging import encode_image
from stylebot.jobs.pipeline import (
    ComputeConfig,
    ComputeResult,
    JobFailed,
    JobProgress,
    compute,
    decode_inputs,
)
from stylebot.jobs.spec import JobKind, JobSpec
from stylebot.ml.runtime import Cancelled, CancelToken

CONTENT_FILE = "content.input"
STYLE_FILE = "style_{}.input"
PROGRESS_FILE = "progress.jsonl"
CANCEL_FILE = "cancel"
RESULT_FILE = "result.jpg"
RESULT_JSON = "result.json"
ERROR_JSON = "error.json"


class FileCancelToken(CancelToken):
    """Cancelled when the executor creates the ``cancel`` file (checked once per iteration)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    @property
    def cancelled(self) -> bool:
        if not super().cancelled and self.path.exists():
            self.cancel()
        return super().cancelled


class ProgressWriter:
    """Appends one JSON line per progress event; previews go to numbered JPEG files."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.count = 0

    def __call__(self, progress: JobProgress) -> None:
        self.count += 1
        preview_name = None
        if progress.preview is not None:
            preview_name = f"preview-{self.count:05d}.jpg"
            _write_atomic(self.work_dir / preview_name, progress.preview)
        line = json.dumps(
            {
                "fraction": progress.fraction,
                "eta_s": progress.eta_s,
                "stage": progress.stage,
                "losses": progress.losses,
                "preview": preview_name,
            }
        )
        with open(self.work_dir / PROGRESS_FILE, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class NotebookRun:
    spec: JobSpec
    content: Image.Image
    styles: list[Image.Image]
    result: ComputeResult


def run_notebook_job(job_json: str, work_dir: str, config: dict[str, Any]) -> NotebookRun:
    """Run the job described by the notebook's parameters and leave its outcome in ``work_dir``."""
    spec = JobSpec.model_validate_json(job_json)
    work = Path(work_dir)
    compute_config = ComputeConfig(**config)
    try:
        content_bytes = (work / CONTENT_FILE).read_bytes()
        style_bytes = [(work / STYLE_FILE.format(i)).read_bytes() for i in range(len(spec.style_keys))]
        content, styles = decode_inputs(content_bytes, style_bytes, compute_config)
        result = compute(
            spec,
            content,
            styles,
            compute_config,
            emit=ProgressWriter(work),
            cancel=FileCancelToken(work / CANCEL_FILE),
        )
    except JobFailed as exc:
        _write_atomic(work / ERROR_JSON, json.dumps({"code": exc.code, "message": exc.message}).encode())
        raise
    except Cancelled:
        _write_atomic(work / ERROR_JSON, json.dumps({"code": "cancelled", "message": "cancelled"}).encode())
        raise
    _write_atomic(work / RESULT_FILE, encode_image(result.image, "JPEG", quality=95))
    summary = {"losses": result.losses, "seconds": result.seconds}
    _write_atomic(work / RESULT_JSON, json.dumps(summary).encode())
    return NotebookRun(spec, content, styles, result)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _as_png(fig: Any) -> Any:
    """The figure as an IPython PNG image, so it is embedded in the saved notebook under Agg."""
    import io

    from IPython.display import Image as PNG

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    _pyplot().close(fig)
    return PNG(data=buf.getvalue(), format="png")


def show_images(run: NotebookRun) -> Any:
    """One picture: the content, each style (with its weight) and the result."""
    plt = _pyplot()

    panels: list[tuple[str, Image.Image]] = [("content", run.content)]
    if run.spec.kind is JobKind.nst:
        panels += [
            (f"style {i + 1} (weight {w:.2f})", s)
            for i, (s, w) in enumerate(zip(run.styles, run.spec.weights, strict=True))
        ]
        panels.append(("result", run.result.image))
    elif run.spec.kind is JobKind.gallery:
        blend = ", ".join(f"{i}:{w:g}" for i, w in (run.spec.gallery or {}).items())
        panels.append((f"result (gallery {blend})", run.result.image))
    elif run.spec.kind is JobKind.sheet:
        panels.append(("gallery sheet", run.result.image))
    else:
        panels.append((f"result ({run.spec.model})", run.result.image))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, img) in zip(axes[0], panels, strict=True):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return _as_png(fig)


def plot_losses(run: NotebookRun) -> Any:
    """The NST loss curve per iteration (log scale), one line per loss term."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.4))
    history = run.result.history
    names = sorted({k for h in history for k in h if k != "level"})
    for name in names:
        ax.plot([h.get(name, float("nan")) for h in history], label=name)
    ax.set_xlabel("iteration (all pyramid levels)")
    ax.set_ylabel("loss")
    if history and all(h.get(n, 1.0) > 0 for h in history for n in names):
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"{len(history)} iterations, {run.result.seconds:.1f} s")
    fig.tight_layout()
    return _as_png(fig)
