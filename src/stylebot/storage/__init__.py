"""Where images, job records and executed notebooks live: a local folder or an S3 bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stylebot.storage.base import (
    BucketNotFoundError,
    InvalidKeyError,
    KeyNotFoundError,
    Storage,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from stylebot.config import Settings

__all__ = [
    "BucketNotFoundError",
    "InvalidKeyError",
    "KeyNotFoundError",
    "Storage",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailableError",
    "make_storage",
]


def make_storage(settings: Settings) -> Storage:
    """S3Storage when ``settings.s3_bucket`` is set, else LocalStorage at ``settings.storage_dir``."""
    retention_hours = settings.retention_hours
    failed_notebook_retention_hours = settings.failed_notebook_retention_hours
    if settings.s3_bucket:
        from stylebot.storage.s3 import S3Storage  # aioboto3 is an optional extra

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return S3Storage(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.region_name,
            aws_access_key_id=secret(settings.aws_access_key_id),
            aws_secret_access_key=secret(settings.aws_secret_access_key),
            retention_hours=retention_hours,
            failed_notebook_retention_hours=failed_notebook_retention_hours,
        )
    from stylebot.storage.local import LocalStorage

    return LocalStorage(
        settings.storage_dir,
        prefix=settings.s3_prefix,
        retention_hours=retention_hours,
        failed_notebook_retention_hours=failed_notebook_retention_hours,
    )
