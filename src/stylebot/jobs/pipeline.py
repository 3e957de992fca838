"""The pipeline that runs one job: inputs from storage → engine → result into storage.

``run_job`` is what the job service calls. The heavy part, :func:`compute`, is plain
synchronous code shared by both executors: the direct one runs it in a thread of this
process, the papermill one runs it inside a notebook kernel (``stylebot.jobs.executor``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from stylebot.imaging import ImageError, encode_image, load_image, resize_long_side
from stylebot.jobs.spec import SHEET_CYCLEGAN_NUMBERS, SHEET_TILE, JobKind, JobSpec, Preset
from stylebot.storage.base import InvalidKeyError, KeyNotFoundError, StorageError

if TYPE_CHECKING:
    from stylebot.config import Settings
    from stylebot.ml.runtime import CancelToken, Progress
    from stylebot.storage.base import Storage

log = logging.getLogger(__name__)

RESULT_NAME = "result.jpg"
PREVIEW_QUALITY = 85
PREVIEWS_PER_RUN = 8
FAST_DEV_SIZE = 64  # fast_dev_run: feed-forward and CycleGAN results capped at this size


@dataclass
class JobProgress:
    fraction: float
    eta_s: float | None
    stage: str | None
    losses: dict[str, float] | None
    preview: bytes | None  # JPEG bytes


@dataclass
class JobOutcome:
    result_key: str
    losses: dict[str, float] | None
    seconds: float


INTERNAL_MESSAGE = "Something went wrong while styling the image."
"""The one message for failures the user cannot act on (``internal``)."""


class JobFailed(Exception):
    """A failure to tell the user about: ``code`` is stable, ``message`` is safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str, str]]:
        # Crosses process boundaries (Ray replicas); the default would call __init__ with one arg.
        return (type(self), (self.code, self.message))


@dataclass(frozen=True)
class ComputeConfig:
    """Everything :func:`compute` needs beyond the images; plain values, no secrets.

    It travels into notebooks as a parameter, so it must never grow a token or a credential.
    """

    models_dir: str
    device: str = "auto"
    backbone: str = "auto"
    fast_dev_run: bool = False
    max_input_pixels: int = 50_000_000
    max_input_bytes: int | None = None

    @classmethod
    def for_job(cls, spec: JobSpec, settings: Settings) -> ComputeConfig:
        return cls(
            models_dir=str(settings.models_dir),
            device=settings.device,
            backbone=settings.backbone,
            fast_dev_run=spec.params.fast_dev_run or settings.default_fast_dev_run,
            max_input_pixels=settings.max_input_pixels,
            max_input_bytes=settings.max_upload_bytes,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ComputeResult:
    image: Image.Image
    losses: dict[str, float] | None
    history: list[dict[str, float]]
    seconds: float


# --- inputs ---------------------------------------------------------------------------------------
async def fetch_inputs(spec: JobSpec, storage: Storage) -> tuple[bytes, list[bytes]]:
    """The content and style bytes; a missing or foreign key is the user's ``input_missing``."""

    async def one(key: str) -> bytes:
        try:
            return await storage.get(key)
        except (KeyNotFoundError, InvalidKeyError):
            raise JobFailed(
                "input_missing", "An image for this job is no longer available; please send it again."
            ) from None

    try:
        content = await one(spec.content_key)
        styles = [await one(key) for key in spec.style_keys]
    except StorageError as exc:
        log.warning("job %s: storage unavailable while fetching inputs: %s", spec.job_id, exc)
        raise JobFailed(
            "storage_unavailable", "The image store cannot be reached right now; please try again later."
        ) from exc
    return content, styles


def decode_inputs(
    content: bytes, styles: Sequence[bytes], config: ComputeConfig
) -> tuple[Image.Image, list[Image.Image]]:
    """Bytes to RGB images, through ``imaging.load_image`` only; bad bytes fail with its code."""

    def decode(data: bytes) -> Image.Image:
        return load_image(data, max_pixels=config.max_input_pixels, max_bytes=config.max_input_bytes)

    try:
        return decode(content), [decode(s) for s in styles]
    except ImageError as exc:
        raise JobFailed(exc.code, str(exc)) from exc


# --- compute (sync; runs in a worker thread or a notebook kernel) --------------------------------
def _to_job_progress(progress: Progress) -> JobProgress:
    preview = None
    if progress.preview is not None:
        preview = encode_image(progress.preview, quality=PREVIEW_QUALITY)
    return JobProgress(
        fraction=progress.fraction,
        eta_s=progress.eta_s,
        stage=progress.stage,
        losses=dict(progress.losses) or None,
        preview=preview,
    )


def compute(
    spec: JobSpec,
    content: Image.Image,
    styles: Sequence[Image.Image],
    config: ComputeConfig,
    *,
    emit: Callable[[JobProgress], None] | None = None,
    cancel: CancelToken | None = None,
) -> ComputeResult:
    """Run the engine for one job. Raises ``Cancelled`` or :class:`JobFailed`."""
    from stylebot.ml.runtime import Cancelled
    from stylebot.ml.weights import WeightsError

    started = time.monotonic()

    def on_progress(progress: Progress) -> None:
        if emit is not None:
            emit(_to_job_progress(progress))

    try:
        if spec.kind is JobKind.nst and spec.params.preset is Preset.instant:
            result = _compute_instant(spec, content, styles, config, on_progress, cancel)
        elif spec.kind is JobKind.nst:
            result = _compute_nst(spec, content, styles, config, on_progress, cancel)
        elif spec.kind is JobKind.gallery:
            result = _compute_gallery(spec, content, config, on_progress, cancel)
        elif spec.kind is JobKind.sheet:
            result = _compute_sheet(content, config, cancel)
        else:
            result = _compute_cyclegan(spec, content, config, on_progress, cancel)
    except (Cancelled, JobFailed):
        raise
    except WeightsError as exc:
        log.error("job %s: model weights unavailable: %s", spec.job_id, exc)
        raise JobFailed(
            "model_not_installed", "This style is not installed on the server yet; please try another one."
        ) from exc
    except (MemoryError, _cuda_oom()) as exc:
        raise JobFailed(
            "out_of_memory", "The image is too large for the server's memory; try a smaller size."
        ) from exc
    except ValueError as exc:
        raise JobFailed("bad_params", str(exc)) from exc
    result.seconds = time.monotonic() - started
    return result


def _cuda_oom() -> type[BaseException]:
    import torch

    return getattr(torch.cuda, "OutOfMemoryError", MemoryError)


def _compute_nst(
    spec: JobSpec,
    content: Image.Image,
    styles: Sequence[Image.Image],
    config: ComputeConfig,
    on_progress: Callable[[Progress], None],
    cancel: CancelToken | None,
) -> ComputeResult:
    params = spec.params
    # Nothing finer than the result is ever used: shrink big uploads before the pyramid.
    content = resize_long_side(content, params.size)
    styles = [resize_long_side(s, params.size) for s in styles]
    return refine_image(
        content,
        styles,
        models_dir=Path(config.models_dir),
        device=config.device,
        backbone=config.backbone,
        size=params.size,
        preset=params.preset.value,
        strength=params.strength,
        style_weights=spec.weights,
        preserve_colors=params.preserve_colors,
        seed=params.seed,
        fast_dev_run=config.fast_dev_run,
        on_progress=on_progress,
        cancel=cancel,
    )


def refine_image(
    content: Image.Image,
    styles: Sequence[Image.Image],
    *,
    models_dir: Path,
    device: str = "auto",
    backbone: str = "auto",
    size: int,
    preset: str,
    strength: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_colors: bool = False,
    seed: int = 0,
    fast_dev_run: bool = False,
    previews: int = PREVIEWS_PER_RUN,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> ComputeResult:
    """A refinement preset: the instant result first (its preview is the first progress event),
    then Gatys optimisation started from it. Without the feed-forward networks installed the
    optimisation starts from the photo, as before."""
    from stylebot.ml.nst import NSTOptions, plan_levels, stylize
    from stylebot.ml.weights import WeightsError, load_backbone

    options = NSTOptions(
        size=size,
        preset=preset,
        strength=strength,
        style_weights=style_weights,
        preserve_colors=preserve_colors,
        seed=seed,
        fast_dev_run=fast_dev_run,
    )
    net = load_backbone(backbone, models_dir=models_dir, device=device)
    start = None
    try:
        start = instant_image(
            content,
            styles,
            models_dir=models_dir,
            device=device,
            size=min(size, FAST_DEV_SIZE) if fast_dev_run else size,
            strength=strength,
            style_weights=style_weights,
            preserve_colors=preserve_colors,
            cancel=cancel,
        )
    except WeightsError as exc:
        log.info("refinement starts from the photo: the feed-forward networks are not installed (%s)", exc)
    total = sum(n for _, n in plan_levels(options, content.size, warm=start is not None))
    options.preview_every = max(1, total // previews)
    result = stylize(
        content, styles, options, backbone=net, start=start, on_progress=on_progress, cancel=cancel
    )
    return ComputeResult(result.image, dict(result.losses) or None, list(result.history), result.seconds)


def instant_image(
    content: Image.Image,
    styles: Sequence[Image.Image],
    *,
    models_dir: Path,
    device: str = "auto",
    size: int | None = None,
    strength: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_colors: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image:
    """The instant (feed-forward) result at ``size`` px on the long side (None: the photo's)."""
    from stylebot.ml.feedforward import InstantOptions, instant
    from stylebot.ml.names import ARBITRARY_PREDICT, ARBITRARY_TRANSFORM
    from stylebot.ml.weights import load_feedforward

    predictor = load_feedforward(ARBITRARY_PREDICT, models_dir=models_dir, device=device)
    transformer = load_feedforward(ARBITRARY_TRANSFORM, models_dir=models_dir, device=device)
    options = InstantOptions(
        size=size, strength=strength, style_weights=style_weights, preserve_colors=preserve_colors
    )
    return instant(predictor, transformer, content, styles, options, on_progress=on_progress, cancel=cancel)


def gallery_image(
    content: Image.Image,
    styles: dict[int, float],
    *,
    models_dir: Path,
    device: str = "auto",
    size: int | None = None,
    strength: float = 1.0,
    preserve_colors: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image:
    """The photo in a gallery style or blend (``{index: weight}``), at ``size`` px on the long side."""
    from stylebot.ml.feedforward import gallery
    from stylebot.ml.names import GALLERY_MODEL
    from stylebot.ml.weights import load_feedforward

    net = load_feedforward(GALLERY_MODEL, models_dir=models_dir, device=device)
    return gallery(
        net,
        content,
        styles,
        size=size,
        strength=strength,
        preserve_colors=preserve_colors,
        on_progress=on_progress,
        cancel=cancel,
    )


def _compute_cyclegan(
    spec: JobSpec,
    content: Image.Image,
    config: ComputeConfig,
    on_progress: Callable[[Progress], None],
    cancel: CancelToken | None,
) -> ComputeResult:
    from stylebot.ml.cyclegan import translate
    from stylebot.ml.weights import load_generator

    assert spec.model is not None  # JobSpec guarantees it for cyclegan jobs
    generator = load_generator(spec.model, models_dir=Path(config.models_dir), device=config.device)
    content = resize_long_side(content, _job_size(spec, config))
    image = translate(generator, content, on_progress=on_progress, cancel=cancel)
    return ComputeResult(image, None, [], 0.0)


def _job_size(spec: JobSpec, config: ComputeConfig) -> int:
    return min(spec.params.size, FAST_DEV_SIZE) if config.fast_dev_run else spec.params.size


def _compute_instant(
    spec: JobSpec,
    content: Image.Image,
    styles: Sequence[Image.Image],
    config: ComputeConfig,
    on_progress: Callable[[Progress], None],
    cancel: CancelToken | None,
) -> ComputeResult:
    params = spec.params
    image = instant_image(
        resize_long_side(content, _job_size(spec, config)),
        styles,
        models_dir=Path(config.models_dir),
        device=config.device,
        strength=params.strength,
        style_weights=spec.weights,
        preserve_colors=params.preserve_colors,
        on_progress=on_progress,
        cancel=cancel,
    )
    return ComputeResult(image, None, [], 0.0)


def _compute_gallery(
    spec: JobSpec,
    content: Image.Image,
    config: ComputeConfig,
    on_progress: Callable[[Progress], None],
    cancel: CancelToken | None,
) -> ComputeResult:
    assert spec.gallery is not None  # JobSpec guarantees it for gallery jobs
    params = spec.params
    image = gallery_image(
        resize_long_side(content, _job_size(spec, config)),
        spec.gallery,
        models_dir=Path(config.models_dir),
        device=config.device,
        strength=params.strength,
        preserve_colors=params.preserve_colors,
        on_progress=on_progress,
        cancel=cancel,
    )
    return ComputeResult(image, None, [], 0.0)


def render_sheet(
    content: Image.Image, models_dir: Path, device: str = "auto", cancel: CancelToken | None = None
) -> Image.Image:
    """The photo in every available pretrained style: the 26 gallery styles and each installed
    CycleGAN, as tiles numbered as in ``spec.SHEET_CYCLEGAN_NUMBERS`` (what the bot shows)."""
    from stylebot.ml import feedforward
    from stylebot.ml.cyclegan import translate
    from stylebot.ml.names import GALLERY_MODEL
    from stylebot.ml.weights import is_installed, load_feedforward, load_generator

    net = load_feedforward(GALLERY_MODEL, models_dir=models_dir, device=device)
    extra = []
    for name, number in SHEET_CYCLEGAN_NUMBERS.items():
        if is_installed(name, models_dir):
            generator = load_generator(name, models_dir=models_dir, device=device)
            label = name.removeprefix("style_").replace("_yosemite", "")
            extra.append((number, label, lambda img, g=generator: translate(g, img)))
    tiles = feedforward.sheet_tiles(net, content, tile=SHEET_TILE, extra=extra, cancel=cancel)
    return feedforward.render_sheet(tiles, tile=SHEET_TILE)


def _compute_sheet(content: Image.Image, config: ComputeConfig, cancel: CancelToken | None) -> ComputeResult:
    image = render_sheet(content, Path(config.models_dir), config.device, cancel)
    return ComputeResult(image, None, [], 0.0)


# --- the job --------------------------------------------------------------------------------------
async def store_result(spec: JobSpec, storage: Storage, image: Image.Image) -> str:
    data = await asyncio.to_thread(encode_image, image, "JPEG", quality=95)
    return await store_result_bytes(spec, storage, data)


async def store_result_bytes(spec: JobSpec, storage: Storage, data: bytes) -> str:
    """Store an encoded JPEG result; a storage failure becomes a user-safe ``storage_unavailable``."""
    try:
        return await storage.put(data, scope=spec.owner, name=RESULT_NAME, content_type="image/jpeg")
    except StorageError as exc:
        log.warning("job %s: could not store the result: %s", spec.job_id, exc)
        raise JobFailed(
            "storage_unavailable", "The result could not be saved right now; please try again later."
        ) from exc


async def run_direct(
    spec: JobSpec,
    storage: Storage,
    settings: Settings,
    *,
    on_progress: Callable[[JobProgress], None],
    cancel: CancelToken,
) -> JobOutcome:
    started = time.monotonic()
    config = ComputeConfig.for_job(spec, settings)
    content_bytes, style_bytes = await fetch_inputs(spec, storage)
    content, styles = await asyncio.to_thread(decode_inputs, content_bytes, style_bytes, config)
    loop = asyncio.get_running_loop()

    def emit(progress: JobProgress) -> None:
        loop.call_soon_threadsafe(on_progress, progress)

    result = await asyncio.to_thread(compute, spec, content, styles, config, emit=emit, cancel=cancel)
    key = await store_result(spec, storage, result.image)
    return JobOutcome(result_key=key, losses=result.losses, seconds=time.monotonic() - started)


async def run_job(
    spec: JobSpec,
    storage: Storage,
    settings: Settings,
    *,
    on_progress: Callable[[JobProgress], None],
    cancel: CancelToken,
) -> JobOutcome:
    """Run one job with the configured executor (``settings.executor``: direct | papermill).

    Raises ``stylebot.ml.runtime.Cancelled`` when ``cancel`` fires (within one NST iteration or one
    CycleGAN tile) and :class:`JobFailed` for anything the user should be told. ``on_progress``
    is always called on the event loop's thread.
    """
    if settings.executor == "papermill":
        from stylebot.jobs.executor import run_papermill

        return await run_papermill(spec, storage, settings, on_progress=on_progress, cancel=cancel)
    return await run_direct(spec, storage, settings, on_progress=on_progress, cancel=cancel)


async def run_cyclegan_batch(
    specs: Sequence[JobSpec], storage: Storage, settings: Settings
) -> list[JobOutcome | JobFailed]:
    """Several CycleGAN jobs with as few forward passes as possible (Ray Serve's ``@serve.batch``).

    Each job succeeds or fails on its own; the list matches ``specs`` in order. With the papermill
    executor every job still runs through its own notebook.
    """
    from stylebot.ml.runtime import CancelToken

    if settings.executor == "papermill":
        outcomes: list[JobOutcome | JobFailed] = []
        for spec in specs:
            try:
                outcomes.append(
                    await run_job(spec, storage, settings, on_progress=lambda _p: None, cancel=CancelToken())
                )
            except JobFailed as exc:
                outcomes.append(exc)
        return outcomes

    started = time.monotonic()
    slots: list[JobOutcome | JobFailed | None] = [None] * len(specs)
    ready: list[tuple[int, JobSpec, Image.Image]] = []
    for i, spec in enumerate(specs):
        if spec.kind is not JobKind.cyclegan:
            slots[i] = JobFailed("bad_params", "Only CycleGAN jobs can run in a batch.")
            continue
        try:
            config = ComputeConfig.for_job(spec, settings)
            content_bytes, _ = await fetch_inputs(spec, storage)
            photo, _ = await asyncio.to_thread(decode_inputs, content_bytes, [], config)
            ready.append((i, spec, resize_long_side(photo, _job_size(spec, config))))
        except JobFailed as exc:
            slots[i] = exc

    by_model: dict[str, list[tuple[int, JobSpec, Image.Image]]] = {}
    for item in ready:
        by_model.setdefault(str(item[1].model), []).append(item)
    for model, items in by_model.items():
        try:
            images = await asyncio.to_thread(_translate_group, model, [img for _, _, img in items], settings)
        except JobFailed as exc:
            for i, _, _ in items:
                slots[i] = exc
            continue
        for (i, spec, _), image in zip(items, images, strict=True):
            try:
                key = await store_result(spec, storage, image)
                slots[i] = JobOutcome(result_key=key, losses=None, seconds=time.monotonic() - started)
            except JobFailed as exc:
                slots[i] = exc
    return [s if s is not None else JobFailed("internal", "The job was not run.") for s in slots]


def _translate_group(model: str, images: list[Image.Image], settings: Settings) -> list[Image.Image]:
    from stylebot.ml.cyclegan import translate, translate_batch
    from stylebot.ml.weights import WeightsError, load_generator

    try:
        generator = load_generator(model, models_dir=settings.models_dir, device=settings.device)
    except WeightsError as exc:
        log.error("CycleGAN batch: model %s unavailable: %s", model, exc)
        raise JobFailed(
            "model_not_installed", "This style is not installed on the server yet; please try another one."
        ) from exc
    # One forward pass per size group for images that fit a tile; larger ones are tiled alone.
    tile = 512
    small = [i for i, img in enumerate(images) if max(img.size) <= tile]
    results: list[Image.Image | None] = [None] * len(images)
    for i, out in zip(small, translate_batch(generator, [images[i] for i in small]), strict=True):
        results[i] = out
    for i, img in enumerate(images):
        if results[i] is None:
            results[i] = translate(generator, img, tile=tile)
    return [r for r in results if r is not None]
