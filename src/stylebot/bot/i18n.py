"""aiogram I18n: English and Russian, from the user's choice in /settings or their client language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from stylebot.bot.prefs import LANGUAGES, load_prefs

LOCALES_DIR = Path(__file__).with_name("locales")
DEFAULT_LOCALE = "en"


def make_i18n() -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=DEFAULT_LOCALE, domain="messages")


def locale_from_language_code(code: str | None) -> str:
    """Telegram sends IETF tags like ``ru``, ``ru-RU`` or ``en-us``; anything unknown → English."""
    if not code:
        return DEFAULT_LOCALE
    language = code.replace("_", "-").split("-", 1)[0].lower()
    return language if language in LANGUAGES else DEFAULT_LOCALE


class UserLocaleMiddleware(I18nMiddleware):
    """The language picked in /settings wins; otherwise the client's ``language_code``."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return DEFAULT_LOCALE
        storage: BaseStorage | None = data.get("fsm_storage")
        bot = data.get("bot")
        if storage is not None and bot is not None:
            prefs = await load_prefs(storage, StorageKey(bot_id=bot.id, chat_id=user.id, user_id=user.id))
            if prefs.language in LANGUAGES:
                return prefs.language
        return locale_from_language_code(user.language_code)
