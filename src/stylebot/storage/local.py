"""LocalStorage: the default backend, a folder on disk.

Writes are atomic (a hidden temp file in the same folder, fsync, then ``os.replace``), so a
reader sees either the old bytes or the new ones, never half a file. Every key is validated by
:class:`~stylebot.storage.keys.KeyLayout` first; then the resolved folder must still lie inside
the root (a symlinked folder cannot lead out) and files are opened with ``O_NOFOLLOW`` (a
symlinked file cannot either).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
import time
from pathlib import Path

from stylebot.storage.base import InvalidKeyError, KeyNotFoundError, StorageError
from stylebot.storage.keys import KeyKind, KeyLayout

# A temp file older than this is debris from a crash mid-write.
_STALE_TEMP_S = 3600.0
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LocalStorage:
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        prefix: str = "stylebot",
        retention_hours: float = 24.0,
        failed_notebook_retention_hours: float = 24.0 * 14,
    ) -> None:
        self.root = Path(root)
        self.layout = KeyLayout(prefix)
        self.retention_s = retention_hours * 3600.0
        self.failed_notebook_retention_s = failed_notebook_retention_hours * 3600.0

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r}, prefix={self.layout.prefix!r})"

    # --- keys -----------------------------------------------------------------------------------
    def new_key(self, *, scope: str, name: str) -> str:
        return self.layout.new_key(scope=scope, name=name)

    def is_data_key_of(self, key: str, scope: str) -> bool:
        return self.layout.is_data_key_of(key, scope)

    def record_key(self, namespace: str, name: str) -> str:
        return self.layout.record_key(namespace, name)

    def record_prefix(self, namespace: str) -> str:
        return self.layout.record_prefix(namespace)

    def _real_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root.resolve(strict=True)

    def _path(self, key: str, *, create_parent: bool = False) -> Path:
        self.layout.classify(key)
        root = self._real_root()
        path = root.joinpath(*key.split("/"))
        # Checked before mkdir too, so a symlinked folder never gets folders created beyond it.
        parent = path.parent.resolve()
        if not parent.is_relative_to(root):
            raise InvalidKeyError("key resolves outside the storage folder")
        if create_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
            parent = path.parent.resolve()
            if not parent.is_relative_to(root):
                raise InvalidKeyError("key resolves outside the storage folder")
        return parent / path.name

    # --- blocking helpers (run in a thread) ------------------------------------------------------
    def _read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            raise KeyNotFoundError(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidKeyError("key is a link; links are never followed") from None
            raise StorageError(f"cannot read {key}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key, create_parent=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _exists(self, key: str) -> bool:
        path = self._path(key)
        return path.is_file() and not path.is_symlink()

    def _delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, folder: Path) -> None:
        root = self._real_root()
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _walk(self, start: Path) -> list[tuple[str, Path]]:
        """Every regular file under ``start`` as (key, path); temp files and links are skipped."""
        root = self._real_root()
        found: list[tuple[str, Path]] = []
        if not start.is_dir() or start.is_symlink():
            return found
        for dirpath, dirnames, filenames in os.walk(start):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
            for filename in filenames:
                path = here / filename
                if path.is_symlink() or not path.is_file():
                    continue
                found.append((path.relative_to(root).as_posix(), path))
        return found

    def _list(self, prefix: str) -> list[str]:
        prefix = self.layout.check_list_prefix(prefix)
        root = self._real_root()
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = root.joinpath(*folder.split("/")) if folder else root
        if not start.resolve().is_relative_to(root):
            raise InvalidKeyError("prefix resolves outside the storage folder")
        keys = []
        for key, _path in self._walk(start):
            if key.startswith(prefix) and self._is_valid_key(key):
                keys.append(key)
        return sorted(keys)

    def _is_valid_key(self, key: str) -> bool:
        try:
            self.layout.classify(key)
        except InvalidKeyError:
            return False
        return True

    def _expire(self, now: float) -> int:
        root = self._real_root()
        base = root.joinpath(*self.layout.prefix.split("/")) if self.layout.prefix else root
        removed = 0
        for key, path in self._walk(base):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            try:
                kind = self.layout.classify(key)
            except InvalidKeyError:
                if path.name.startswith(".") and path.name.endswith(".tmp") and age > _STALE_TEMP_S:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                continue
            if kind is KeyKind.record:
                continue
            limit = self.failed_notebook_retention_s if kind is KeyKind.notebook_failed else self.retention_s
            if age > limit:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
                self._prune_empty_dirs(path.parent)
        return removed

    # --- the Storage protocol ------------------------------------------------------------------
    async def put(self, data: bytes, *, scope: str, name: str, content_type: str | None = None) -> str:
        key = self.new_key(scope=scope, name=name)
        await asyncio.to_thread(self._write, key, bytes(data))
        return key

    async def put_notebook(self, data: bytes, *, scope: str, name: str, failed: bool) -> str:
        key = self.layout.notebook_key(scope=scope, name=name, failed=failed)
        await asyncio.to_thread(self._write, key, bytes(data))
        return key

    async def put_at(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        await asyncio.to_thread(self._write, key, bytes(data))

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def list(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    async def expire(self, *, now: float | None = None) -> int:
        return await asyncio.to_thread(self._expire, time.time() if now is None else now)

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A folder has no URLs; callers fall back to ``get``."""
        self.layout.classify(key)
        return None

    async def check(self) -> None:
        def probe() -> None:
            root = self._real_root()
            if not os.access(root, os.W_OK):
                raise StorageError(f"storage folder {root} is not writable")

        await asyncio.to_thread(probe)
