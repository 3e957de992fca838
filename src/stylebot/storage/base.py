"""The Storage protocol: where images, job records and notebooks live between the rooms.

Keys look like ``<prefix>/<random id>/<name>`` and are always generated here, never taken
from callers; every read or write checks that a key stays inside the storage's prefix.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Base for storage failures; ``str()`` is safe to log (no credentials, no bucket secrets)."""


class KeyNotFoundError(StorageError, KeyError):
    pass


class InvalidKeyError(StorageError, ValueError):
    """A key that is malformed or points outside the storage prefix."""


class BucketNotFoundError(StorageError):
    """The configured S3 bucket does not exist (the message names the bucket)."""


class StorageAuthError(StorageError):
    """The storage rejected the credentials, or none were found."""


class StorageUnavailableError(StorageError):
    """The storage could not be reached, even after retrying with backoff."""


@runtime_checkable
class Storage(Protocol):
    async def put(self, data: bytes, *, scope: str, name: str, content_type: str | None = None) -> str:
        """Store bytes under a fresh key ``<prefix>/<scope>-<random>/<name>`` and return the key."""
        ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def put_at(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Overwrite a key previously returned by ``put``/``new_key`` (previews, job records)."""
        ...

    def new_key(self, *, scope: str, name: str) -> str:
        """A fresh generated key, for writers that must know the key before the bytes exist."""
        ...

    def is_data_key_of(self, key: str, scope: str) -> bool:
        """Whether ``key`` is an input, preview or result key generated for ``scope`` (never a record
        or a notebook); only says what the key's form shows, not whether the object exists."""
        ...

    def record_key(self, namespace: str, name: str) -> str:
        """A fixed key for internal records, e.g. ``record_key("jobs", job_id + ".json")``.

        ``namespace`` and ``name`` must match ``[A-Za-z0-9_.-]+`` (no slashes, no ``..``).
        """
        ...

    async def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a key prefix as returned by ``record_key``/``put``)."""
        ...

    async def expire(self) -> int:
        """Delete what outlived its retention; returns how many objects were removed."""
        ...

    async def check(self) -> None:
        """Raise a clear StorageError now (missing bucket, bad credentials, unreachable endpoint)
        rather than on the first job."""
        ...


# Both backends (LocalStorage, S3Storage) also offer, beyond the protocol:
#
#   async put_notebook(data, *, scope, name, failed: bool) -> str
#       an executed notebook under ``<prefix>/notebooks/ok|failed/<scope>-<random>/<name>``;
#       ``expire()`` keeps failed ones for ``failed_notebook_retention_hours``.
#   record_prefix(namespace) -> str
#       the listing prefix of ``record_key(namespace, ...)`` keys, for ``list()``.
#   async presigned_url(key, expires_s=3600) -> str | None
#       a time-limited GET URL (S3), or None where the backend has no URLs (local folder).
#   async expire(*, now: float | None = None) -> int
#       ``now`` (epoch seconds) lets tests and operators evaluate retention at another time.
#
# Key layout and validation: ``stylebot.storage.keys``. Records (``record_key``) are never
# removed by ``expire()``: the job store manages them.
