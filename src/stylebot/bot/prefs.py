"""Per-user preferences from /settings, kept in the FSM storage under their own destiny.

A separate destiny means ``state.clear()`` (on /cancel, after a job) never wipes them.
"""

from __future__ import annotations

from typing import Literal

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from pydantic import BaseModel, Field, ValidationError

PREFS_DESTINY = "prefs"
STRENGTHS: dict[str, float] = {"low": 0.5, "normal": 1.0, "high": 3.0}
SIZES: tuple[int, ...] = (384, 512, 768, 1024)
LANGUAGES: tuple[str, ...] = ("en", "ru")


class UserPrefs(BaseModel):
    strength: Literal["low", "normal", "high"] = "normal"
    preserve_colors: bool = False
    size: int = Field(512, ge=64, le=2048)
    language: str | None = None  # None: follow the Telegram client's language

    @property
    def strength_value(self) -> float:
        return STRENGTHS[self.strength]


def prefs_key(key: StorageKey) -> StorageKey:
    return StorageKey(bot_id=key.bot_id, chat_id=key.user_id, user_id=key.user_id, destiny=PREFS_DESTINY)


async def load_prefs(storage: BaseStorage, key: StorageKey) -> UserPrefs:
    raw = await storage.get_data(prefs_key(key))
    try:
        return UserPrefs.model_validate(raw)
    except ValidationError:
        return UserPrefs()


async def save_prefs(storage: BaseStorage, key: StorageKey, prefs: UserPrefs) -> None:
    await storage.set_data(prefs_key(key), prefs.model_dump())
