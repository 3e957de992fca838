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
from typing import Any, Protocol

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from pydantic import BaseModel, Field

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
    """One submitted job whose result has not reached its chat yet."""

    job_id: str
    chat_id: int
    user_id: int
    locale: str = "en"
    style: str | None = Field(None, description="pretrained model name, None for the user's images")
    style_count: int = 0
    as_document: bool = False
    progress_message_id: int | None = None
    flow: str = ""
    content: dict[str, Any] = Field(default_factory=dict)
    submitted_at: float = Field(default_factory=time.time)


class PendingStore(Protocol):
    async def put(self, record: PendingDelivery) -> None: ...

    async def remove(self, job_id: str) -> bool:
        """Remove; True only for the caller that actually removed it (delivers exactly once)."""
        ...

    async def get(self, job_id: str) -> PendingDelivery | None: ...

    async def all(self) -> list[PendingDelivery]: ...

    async def aclose(self) -> None: ...


class JsonPendingStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        raw = _read_json(path) or {}
        self._records = {k: PendingDelivery.model_validate(v) for k, v in raw.items()}

    def _flush(self) -> None:
        _atomic_write_json(self.path, {k: v.model_dump() for k, v in self._records.items()})

    async def put(self, record: PendingDelivery) -> None:
        async with self._lock:
            self._records[record.job_id] = record
            self._flush()

    async def remove(self, job_id: str) -> bool:
        async with self._lock:
            if self._records.pop(job_id, None) is None:
                return False
            self._flush()
            return True

    async def get(self, job_id: str) -> PendingDelivery | None:
        return self._records.get(job_id)

    async def all(self) -> list[PendingDelivery]:
        return list(self._records.values())

    async def aclose(self) -> None:
        return None


class RedisPendingStore:
    def __init__(self, redis: Any, bot_id: int) -> None:
        self.redis = redis
        self.key = f"stylebot:pending:{bot_id}"

    async def put(self, record: PendingDelivery) -> None:
        await self.redis.hset(self.key, record.job_id, record.model_dump_json())

    async def remove(self, job_id: str) -> bool:
        return bool(await self.redis.hdel(self.key, job_id))

    async def get(self, job_id: str) -> PendingDelivery | None:
        raw = await self.redis.hget(self.key, job_id)
        return PendingDelivery.model_validate_json(raw) if raw else None

    async def all(self) -> list[PendingDelivery]:
        raw = await self.redis.hgetall(self.key)
        return [PendingDelivery.model_validate_json(v) for v in raw.values()]

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
