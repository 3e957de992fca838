"""What the bot keeps across restarts.

* Pending deliveries: jobs submitted and not yet delivered, resumed at start. A JSON file next
  to the bot's state by default, a Redis hash when ``REDIS_URL`` is set.
* With memory FSM storage: which users were mid-conversation (so a returning user can be told
  once that the bot restarted) and their /settings, in a small JSON file.

Nothing here holds the bot token: records are keyed by bot id (the public number), chat and user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from pydantic import BaseModel, Field, ValidationError, field_validator

from stylebot.bot.conversation import Content
from stylebot.bot.prefs import PREFS_DESTINY


def _atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, sort_keys=True))
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


class PendingDelivery(BaseModel):
    """One submitted job whose result has not reached its chat yet: the truth about what runs.

    ``phase`` is ``running`` until the result is about to be sent, then ``sending``; the record
    is dropped as soon as Telegram has accepted the result. A record found at start still in
    ``sending`` may or may not have reached the chat: it is sent again with a note saying so.
    """

    job_id: str
    chat_id: int
    user_id: int
    locale: str = "en"
    style: str | None = Field(None, description="pretrained model name, None for the user's images")
    gallery: int | None = Field(None, description="gallery style number")
    refine: bool = Field(False, description="a refinement: previews change, and it can be finished now")
    strength: float = 1.0
    preserve_colors: bool = False
    style_count: int = 0
    styles: list[str] = Field(default_factory=list)
    weights: list[float] | None = None
    as_document: bool = False
    progress_message_id: int | None = None
    progress_is_photo: bool = False
    shown_preview: str | None = None
    flow: str = ""
    content: Content | None = None
    phase: Literal["running", "sending"] = "running"
    submitted_at: float = Field(default_factory=time.time)

    @field_validator("content", mode="before")
    @classmethod
    def _old_content(cls, v: Any) -> Any:
        # Records written before the typed conversation kept the content as a dict, maybe empty.
        return v or None


class PendingStore(Protocol):
    async def put(self, record: PendingDelivery) -> None: ...

    async def update(self, record: PendingDelivery) -> bool:
        """Write only if the record still exists (never resurrect a cancelled job)."""
        ...

    async def remove(self, job_id: str) -> bool:
        """Remove; True only for the caller that actually removed it (delivers exactly once)."""
        ...

    async def get(self, job_id: str) -> PendingDelivery | None: ...

    async def all(self) -> list[PendingDelivery]: ...

    async def for_chat(self, chat_id: int, user_id: int | None = None) -> list[PendingDelivery]: ...

    async def claim(self, job_id: str, ttl: float) -> bool:
        """Become the one process that watches and delivers this job, for ``ttl`` seconds."""
        ...

    async def renew(self, job_id: str, ttl: float) -> bool:
        """Extend a claim this process holds; False when it was lost (another process took over)."""
        ...

    async def release(self, job_id: str) -> None: ...

    async def aclose(self) -> None: ...


def _of_chat(records: list[PendingDelivery], chat_id: int, user_id: int | None) -> list[PendingDelivery]:
    found = [r for r in records if r.chat_id == chat_id and (user_id is None or r.user_id == user_id)]
    return sorted(found, key=lambda r: r.submitted_at)


class JsonPendingStore:
    """One process: a JSON file, written atomically on every change; claims always succeed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        raw = _read_json(path) or {}
        self._records: dict[str, PendingDelivery] = {}
        for key, value in raw.items():
            try:
                self._records[key] = PendingDelivery.model_validate(value)
            except ValidationError:
                continue

    def _flush(self) -> None:
        _atomic_write_json(self.path, {k: v.model_dump(mode="json") for k, v in self._records.items()})

    async def put(self, record: PendingDelivery) -> None:
        async with self._lock:
            self._records[record.job_id] = record.model_copy(deep=True)
            self._flush()

    async def update(self, record: PendingDelivery) -> bool:
        async with self._lock:
            if record.job_id not in self._records:
                return False
            self._records[record.job_id] = record.model_copy(deep=True)
            self._flush()
            return True

    async def remove(self, job_id: str) -> bool:
        async with self._lock:
            if self._records.pop(job_id, None) is None:
                return False
            self._flush()
            return True

    async def get(self, job_id: str) -> PendingDelivery | None:
        record = self._records.get(job_id)
        return record.model_copy(deep=True) if record else None

    async def all(self) -> list[PendingDelivery]:
        return [r.model_copy(deep=True) for r in self._records.values()]

    async def for_chat(self, chat_id: int, user_id: int | None = None) -> list[PendingDelivery]:
        return _of_chat(await self.all(), chat_id, user_id)

    async def claim(self, job_id: str, ttl: float) -> bool:
        return True

    async def renew(self, job_id: str, ttl: float) -> bool:
        return True

    async def release(self, job_id: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


_UPDATE_IF_EXISTS = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class RedisPendingStore:
    """Shared by every bot process of one bot: a Redis hash of records, and per-job claims.

    A claim is a Redis lock (``redis-py``'s ``Lock``: ``SET NX PX`` with a random token, renewed
    while the process watches the job). A process that dies stops renewing; when its claims
    expire, another process's sweep claims the records and delivers them.
    """

    def __init__(self, redis: Any, bot_id: int) -> None:
        self.redis = redis
        self.key = f"stylebot:pending:{bot_id}"
        self._claims: dict[str, Any] = {}
        self._update = redis.register_script(_UPDATE_IF_EXISTS)

    async def put(self, record: PendingDelivery) -> None:
        await self.redis.hset(self.key, record.job_id, record.model_dump_json())

    async def update(self, record: PendingDelivery) -> bool:
        return bool(await self._update(keys=[self.key], args=[record.job_id, record.model_dump_json()]))

    async def remove(self, job_id: str) -> bool:
        return bool(await self.redis.hdel(self.key, job_id))

    async def get(self, job_id: str) -> PendingDelivery | None:
        raw = await self.redis.hget(self.key, job_id)
        return PendingDelivery.model_validate_json(raw) if raw else None

    async def all(self) -> list[PendingDelivery]:
        raw = await self.redis.hgetall(self.key)
        records = []
        for value in raw.values():
            with contextlib.suppress(ValidationError):
                records.append(PendingDelivery.model_validate_json(value))
        return records

    async def for_chat(self, chat_id: int, user_id: int | None = None) -> list[PendingDelivery]:
        return _of_chat(await self.all(), chat_id, user_id)

    async def claim(self, job_id: str, ttl: float) -> bool:
        lock = self.redis.lock(f"{self.key}:owner:{job_id}", timeout=ttl, blocking=False)
        if not await lock.acquire():
            return False
        self._claims[job_id] = lock
        return True

    async def renew(self, job_id: str, ttl: float) -> bool:
        from redis.exceptions import LockError

        lock = self._claims.get(job_id)
        if lock is None:
            return False
        try:
            await lock.extend(ttl, replace_ttl=True)
        except LockError:
            self._claims.pop(job_id, None)
            return False
        return True

    async def release(self, job_id: str) -> None:
        from redis.exceptions import LockError

        lock = self._claims.pop(job_id, None)
        if lock is not None:
            with contextlib.suppress(LockError):
                await lock.release()

    async def aclose(self) -> None:
        return None


class TrackingMemoryStorage(MemoryStorage):
    """MemoryStorage that also remembers, in a JSON file, who was mid-conversation and their prefs.

    The conversation itself is still lost on restart (that is what memory storage means); the
    file only lets the bot say so once to each returning user, and keeps /settings.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        saved = _read_json(path) or {}
        self._active: dict[str, str] = {}
        self._lost: set[str] = set(saved.get("active", {}))
        for raw_key, prefs in (saved.get("prefs") or {}).items():
            with contextlib.suppress(ValueError, TypeError):
                self.storage[self._parse(raw_key, PREFS_DESTINY)].data = dict(prefs)

    @staticmethod
    def _id(key: StorageKey) -> str:
        return f"{key.bot_id}:{key.chat_id}:{key.user_id}"

    @staticmethod
    def _parse(raw: str, destiny: str) -> StorageKey:
        bot_id, chat_id, user_id = (int(x) for x in raw.split(":"))
        return StorageKey(bot_id=bot_id, chat_id=chat_id, user_id=user_id, destiny=destiny)

    def _flush(self) -> None:
        prefs = {
            self._id(k): v.data for k, v in self.storage.items() if k.destiny == PREFS_DESTINY and v.data
        }
        _atomic_write_json(self.path, {"active": self._active, "prefs": prefs})

    def pop_lost(self, key: StorageKey) -> bool:
        """True once for a user who had a conversation going when the bot last stopped."""
        ident = self._id(key)
        if ident not in self._lost:
            return False
        self._lost.discard(ident)
        return True

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await super().set_state(key, state)
        if key.destiny != "default":
            return
        ident = self._id(key)
        name = state.state if isinstance(state, State) else state
        changed = (self._active.get(ident) != name) if name else ident in self._active
        if name:
            self._active[ident] = name
        else:
            self._active.pop(ident, None)
        self._lost.discard(ident)
        if changed:
            self._flush()

    async def set_data(self, key: StorageKey, data: Any) -> None:
        await super().set_data(key, data)
        if key.destiny == PREFS_DESTINY:
            self._flush()

    async def close(self) -> None:
        self._flush()
        await super().close()
