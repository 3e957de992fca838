"""S3Storage: objects in an S3 bucket (AWS or any S3-compatible endpoint) through aioboto3.

Same key layout and checks as LocalStorage (``stylebot.storage.keys``). Transient failures
(connection refused or reset mid-upload, timeouts, 5xx, throttling) are retried by botocore's
"standard" retry mode with exponential backoff and jitter; what still fails becomes a
:class:`StorageError` subclass whose message names the endpoint and bucket, never a credential.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from stylebot.logs import redact
from stylebot.storage.base import (
    BucketNotFoundError,
    KeyNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from stylebot.storage.keys import KeyKind, KeyLayout

_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidClientTokenId",
    "ExpiredToken",
    "InvalidToken",
    "403",
    "Forbidden",
}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_DELETE_BATCH = 1000
_UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


class S3Storage:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "stylebot",
        endpoint_url: str | None = None,
        region_name: str = "us-east-1",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        retention_hours: float = 24.0,
        failed_notebook_retention_hours: float = 24.0 * 14,
        max_attempts: int = 5,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.layout = KeyLayout(prefix)
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.retention_s = retention_hours * 3600.0
        self.failed_notebook_retention_s = failed_notebook_retention_hours * 3600.0
        self.max_attempts = max_attempts
        # Kept only to scrub them from any message that might echo them back.
        self._secrets = (aws_access_key_id, aws_secret_access_key)
        self._session = aioboto3.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            region_name=region_name,
        )
        self._config = AioConfig(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # Path-style works with every S3-compatible endpoint, including 127.0.0.1.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.layout.prefix!r}, endpoint={self._where()})"

    def _where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region_name})"

    # --- keys -----------------------------------------------------------------------------------
    def new_key(self, *, scope: str, name: str) -> str:
        return self.layout.new_key(scope=scope, name=name)

    def is_data_key_of(self, key: str, scope: str) -> bool:
        return self.layout.is_data_key_of(key, scope)

    def record_key(self, namespace: str, name: str) -> str:
        return self.layout.record_key(namespace, name)

    def record_prefix(self, namespace: str) -> str:
        return self.layout.record_prefix(namespace)

    # --- client and errors --------------------------------------------------------------------
    @asynccontextmanager
    async def _client(self, operation: str, key: str | None = None) -> AsyncIterator[Any]:
        """A short-lived client per operation: safe across event loops and threads."""
        try:
            async with self._session.client(
                "s3", endpoint_url=self.endpoint_url, config=self._config
            ) as client:
                yield client
        except StorageError:
            raise
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, operation, key) from exc

    def _translate(self, exc: Exception, operation: str, key: str | None) -> StorageError:
        where = f"bucket {self.bucket!r} at {self._where()}"
        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
            code = str(exc.response.get("Error", {}).get("Code", "")) or str(status)
            if code == "NoSuchBucket":
                return BucketNotFoundError(
                    self._clean(f"S3 bucket {self.bucket!r} does not exist at {self._where()}")
                )
            if code in _MISSING_KEY_CODES and key is not None:
                return KeyNotFoundError(key)
            if code in _AUTH_CODES:
                return StorageAuthError(
                    self._clean(
                        f"S3 rejected the credentials for {where} ({code}); check AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY"
                    )
                )
            return StorageError(self._clean(f"S3 {operation} failed for {where}: {code or 'error'}"))
        if isinstance(exc, NoCredentialsError):
            return StorageAuthError(f"no S3 credentials configured for {where}")
        if isinstance(exc, _UNREACHABLE):
            return StorageUnavailableError(
                self._clean(
                    f"S3 endpoint {self._where()} is unreachable ({type(exc).__name__}) after "
                    f"{self.max_attempts} attempts; {operation} of bucket {self.bucket!r} did not complete"
                )
            )
        return StorageError(self._clean(f"S3 {operation} failed for {where}: {type(exc).__name__}"))

    def _clean(self, message: str) -> str:
        return redact(message, *self._secrets)

    # --- the Storage protocol ------------------------------------------------------------------
    async def _put_object(self, key: str, data: bytes, content_type: str | None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        async with self._client("upload", key) as s3:
            await s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), **extra)

    async def put(self, data: bytes, *, scope: str, name: str, content_type: str | None = None) -> str:
        key = self.new_key(scope=scope, name=name)
        await self._put_object(key, data, content_type)
        return key

    async def put_notebook(self, data: bytes, *, scope: str, name: str, failed: bool) -> str:
        key = self.layout.notebook_key(scope=scope, name=name, failed=failed)
        await self._put_object(key, data, "application/x-ipynb+json")
        return key

    async def put_at(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self.layout.classify(key)
        await self._put_object(key, data, content_type)

    async def get(self, key: str) -> bytes:
        self.layout.classify(key)
        async with self._client("download", key) as s3:
            response = await s3.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                return await body.read()

    async def exists(self, key: str) -> bool:
        self.layout.classify(key)
        try:
            async with self._client("lookup", key) as s3:
                await s3.head_object(Bucket=self.bucket, Key=key)
        except KeyNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        self.layout.classify(key)
        async with self._client("delete", key) as s3:
            await s3.delete_object(Bucket=self.bucket, Key=key)

    async def _objects(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async with self._client("listing") as s3:
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(page.get("Contents", []))
        return found

    def _is_valid_key(self, key: str) -> bool:
        try:
            self.layout.classify(key)
        except StorageError:
            return False
        return True

    async def list(self, prefix: str) -> list[str]:
        prefix = self.layout.check_list_prefix(prefix)
        return sorted(o["Key"] for o in await self._objects(prefix) if self._is_valid_key(o["Key"]))

    async def expire(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        doomed: list[str] = []
        for obj in await self._objects(self.layout.check_list_prefix("")):
            key = obj["Key"]
            try:
                kind = self.layout.classify(key)
            except StorageError:
                continue  # not ours: never touch objects outside our layout
            if kind is KeyKind.record:
                continue
            limit = self.failed_notebook_retention_s if kind is KeyKind.notebook_failed else self.retention_s
            if now - obj["LastModified"].timestamp() > limit:
                doomed.append(key)
        async with self._client("expiry") as s3:
            for start in range(0, len(doomed), _DELETE_BATCH):
                batch = doomed[start : start + _DELETE_BATCH]
                await s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
        return len(doomed)

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A GET URL valid for ``expires_s`` seconds (it carries the access key id, never the secret)."""
        self.layout.classify(key)
        async with self._client("presign", key) as s3:
            return await s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_s)
            )

    async def check(self) -> None:
        """Fail now, clearly, when the bucket is missing, the credentials wrong or S3 unreachable."""
        async with self._client("bucket check") as s3:
            try:
                await s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchBucket", "NotFound"):
                    raise BucketNotFoundError(
                        f"S3 bucket {self.bucket!r} does not exist at {self._where()}"
                    ) from exc
                raise
