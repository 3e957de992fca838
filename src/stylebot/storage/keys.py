"""Key layout shared by every storage backend.

Keys are generated here and validated here; backends never build a path or an object name
from anything else. The layout under the configured prefix::

    <prefix>/<scope>-<32 hex>/<name>                      inputs, previews, results
                                                          (<scope>: see scope_segment)
    <prefix>/notebooks/ok/<scope>-<32 hex>/<name>         executed notebooks of finished jobs
    <prefix>/notebooks/failed/<scope>-<32 hex>/<name>     executed notebooks of failed jobs
    <prefix>/_records/<namespace>/<name>                  internal records (never expired here)

Only ``[A-Za-z0-9_.-]`` appear in a segment and no segment starts with a dot, so a key can
never be ``..``, absolute, URL-encoded, contain a backslash or NUL, or name a hidden temp file.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import Enum

from stylebot.storage.base import InvalidKeyError

MAX_KEY_LENGTH = 1024
SCOPE_HASH_LENGTH = 10
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_RECORD_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_GENERATED_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}-[0-9a-f]{32}")
_KEY_CHARS = re.compile(r"[A-Za-z0-9_./-]+")

RECORDS_DIR = "_records"
NOTEBOOKS_DIR = "notebooks"


class KeyKind(Enum):
    data = "data"
    notebook_ok = "notebook_ok"
    notebook_failed = "notebook_failed"
    record = "record"


def _sanitize(text: str, *, limit: int, fallback: str) -> str:
    clean = _UNSAFE.sub("_", text)
    clean = re.sub(r"\.{2,}", "_", clean)
    clean = re.sub(r"_{2,}", "_", clean).strip("._-")[:limit].rstrip("._-")
    return clean or fallback


def scope_segment(scope: str) -> str:
    """An owner such as ``chat:123`` becomes a safe key segment such as ``chat_123.5f1d2a9c0b``.

    The readable part alone is lossy (``chat:1`` and ``chat_1`` both read ``chat_1``); the short
    hash of the whole owner keeps two owners from ever sharing a scope."""
    digest = hashlib.sha256(scope.encode("utf-8", "surrogatepass")).hexdigest()[:SCOPE_HASH_LENGTH]
    readable = _sanitize(scope, limit=64 - SCOPE_HASH_LENGTH - 1, fallback="anon")
    return f"{readable}.{digest}"


def sanitize_name(name: str) -> str:
    """Keep only the last path component's safe characters: ``../../x y.jpg`` → ``x_y.jpg``."""
    last = re.split(r"[/\\]", name)[-1]
    stem, dot, ext = last.rpartition(".")
    if not dot:
        stem, ext = last, ""
    ext = re.sub(r"[^A-Za-z0-9]", "", ext)[:10]
    stem = _sanitize(stem, limit=100, fallback="file")
    return f"{stem}.{ext}" if ext else stem


def normalize_prefix(prefix: str) -> str:
    parts = [p for p in prefix.strip().split("/") if p]
    for part in parts:
        if not _SEGMENT.fullmatch(part) or part in (RECORDS_DIR, NOTEBOOKS_DIR):
            raise InvalidKeyError(f"storage prefix segment {part!r} is not allowed")
    return "/".join(parts)


class KeyLayout:
    """Generates and checks keys under one prefix (``""`` means the bucket or folder root)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = normalize_prefix(prefix)

    def _join(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts)) if self.prefix else "/".join(parts)

    def new_key(self, *, scope: str, name: str) -> str:
        return self._join(f"{scope_segment(scope)}-{secrets.token_hex(16)}", sanitize_name(name))

    def notebook_key(self, *, scope: str, name: str, failed: bool) -> str:
        outcome = "failed" if failed else "ok"
        return self._join(
            NOTEBOOKS_DIR, outcome, f"{scope_segment(scope)}-{secrets.token_hex(16)}", sanitize_name(name)
        )

    def record_key(self, namespace: str, name: str) -> str:
        for part in (namespace, name):
            if not _RECORD_PART.fullmatch(part) or part.startswith("."):
                raise InvalidKeyError(
                    "record namespace and name must be [A-Za-z0-9_.-]+ without a leading dot"
                )
        return self._join(RECORDS_DIR, namespace, name)

    def record_prefix(self, namespace: str) -> str:
        return self.record_key(namespace, "x")[:-1]

    def _relative_parts(self, key: str) -> list[str]:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidKeyError("not a storage key")
        if not _KEY_CHARS.fullmatch(key):
            raise InvalidKeyError("not a storage key (unexpected characters)")
        parts = key.split("/")
        if any(not p or p.startswith(".") for p in parts):
            raise InvalidKeyError("not a storage key (empty or dot segment)")
        if self.prefix:
            head = self.prefix.split("/")
            if parts[: len(head)] != head:
                raise InvalidKeyError("key is outside this storage's prefix")
            parts = parts[len(head) :]
        return parts

    def classify(self, key: str) -> KeyKind:
        """The kind of a well-formed key; :class:`InvalidKeyError` for anything else."""
        parts = self._relative_parts(key)
        if len(parts) == 2 and _GENERATED_DIR.fullmatch(parts[0]) and _SEGMENT.fullmatch(parts[1]):
            return KeyKind.data
        if (
            len(parts) == 4
            and parts[0] == NOTEBOOKS_DIR
            and parts[1] in ("ok", "failed")
            and _GENERATED_DIR.fullmatch(parts[2])
            and _SEGMENT.fullmatch(parts[3])
        ):
            return KeyKind.notebook_failed if parts[1] == "failed" else KeyKind.notebook_ok
        if len(parts) == 3 and parts[0] == RECORDS_DIR and all(_RECORD_PART.fullmatch(p) for p in parts[1:]):
            return KeyKind.record
        raise InvalidKeyError("not a storage key of this storage")

    def is_data_key_of(self, key: str, scope: str) -> bool:
        """Whether ``key`` is a data key (input, preview, result) generated for ``scope``; records,
        notebooks, other scopes and malformed keys are not."""
        try:
            if self.classify(key) is not KeyKind.data:
                return False
        except InvalidKeyError:
            return False
        folder = self._relative_parts(key)[0]
        return folder.rpartition("-")[0] == scope_segment(scope)

    def check_list_prefix(self, prefix: str) -> str:
        """A listing prefix must lie inside the storage prefix and use key characters only."""
        if prefix in ("", self.prefix, self.prefix + "/"):
            return self._join("") if self.prefix else ""
        if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH or not _KEY_CHARS.fullmatch(prefix):
            raise InvalidKeyError("not a key prefix")
        parts = prefix.split("/")
        if any(p.startswith(".") for p in parts) or any(not p for p in parts[:-1]):
            raise InvalidKeyError("not a key prefix (empty or dot segment)")
        if self.prefix and not prefix.startswith(self.prefix + "/"):
            raise InvalidKeyError("prefix is outside this storage's prefix")
        return prefix
