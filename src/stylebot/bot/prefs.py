"""Per-user preferences from /settings, kept in the FSM storage under their own destiny.

A separate destiny means ``state.clear()`` (on /cancel, after a job) never wipes them.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from pydantic import BaseModel, Field, ValidationError

from stylebot.jobs.spec import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE

PREFS_DESTINY = "prefs"
Strength = Literal["low", "normal", "high"]
STRENGTHS: dict[Strength, float] = {"low": 0.5, "normal": 1.0, "high": 3.0}
SIZES: tuple[int, ...] = (512, 768, 1024)  # and None: the photo's own size, up to MAX_SIZE
LANGUAGES: tuple[str, ...] = ("en", "ru")


def is_strength(value: str) -> TypeGuard[Strength]:
    """Whether a button's value names one of the strengths."""
    return value in STRENGTHS


class UserPrefs(BaseModel):
    strength: Strength = "normal"
    preserve_colors: bool = False
    size: int | None = Field(None, ge=MIN_SIZE, le=MAX_SIZE, description="None: original, up to MAX_SIZE")
    refine: bool | None = None  # None: the operator's default (STYLEBOT_REFINE)
    language: str | None = None  # None: follow the Telegram client's language

    @property
    def strength_value(self) -> float:
        return STRENGTHS[self.strength]

    def result_size(self, photo_long_side: int | None, *, refining: bool) -> int:
        """The long side of a result. "Original" is the photo's own size, up to MAX_SIZE for single
        passes and up to DEFAULT_SIZE for a refinement (minutes per step on a CPU at 2048 px)."""
        if self.size is not None:
            return self.size
        ceiling = DEFAULT_SIZE if refining else MAX_SIZE
        if not photo_long_side:
            return DEFAULT_SIZE
        return max(MIN_SIZE, min(ceiling, photo_long_side))


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
