"""/settings: strength, preserve colours, result size and language, kept per user."""

from __future__ import annotations

import contextlib

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from stylebot.bot.callbacks import SettingsButton, SettingsKey
from stylebot.bot.handlers.common import Services
from stylebot.bot.i18n import locale_from_language_code
from stylebot.bot.keyboards import settings_keyboard
from stylebot.bot.prefs import LANGUAGES, SIZES, UserPrefs, is_strength, load_prefs, save_prefs

router = Router(name="settings")


def settings_text(prefs: UserPrefs) -> str:
    return _(
        "Settings\n"
        "• Style strength: how strongly your style images are applied.\n"
        "• Keep photo colours: restyle the texture but keep your photo's colours.\n"
        "• Result size: the longer side of the result, in pixels; “original” keeps your photo's size "
        "(up to 2048 px) for instant and pretrained results.\n"
        "• Refine: after the instant result, keep improving it with live previews until you press "
        "“Good, send it”.\n"
        "• Language."
    )


@router.message(Command("settings"))
async def settings_command(message: Message, state: FSMContext, i18n: I18n, services: Services) -> None:
    prefs = await load_prefs(state.storage, state.key)
    markup = settings_keyboard(prefs, i18n.current_locale, refine_default=services.settings.refine)
    await message.answer(settings_text(prefs), reply_markup=markup)


@router.callback_query(SettingsButton.filter())
async def settings_pressed(
    query: CallbackQuery,
    callback_data: SettingsButton,
    state: FSMContext,
    i18n: I18n,
    bot: Bot,
    callback_answer: CallbackAnswer,
    services: Services,
) -> None:
    prefs = await load_prefs(state.storage, state.key)
    value = callback_data.value
    if callback_data.key is SettingsKey.close:
        if query.message is not None:
            with contextlib.suppress(TelegramBadRequest):
                await bot.edit_message_reply_markup(
                    chat_id=query.message.chat.id, message_id=query.message.message_id, reply_markup=None
                )
        callback_answer.text = _("Saved.")
        return
    if callback_data.key is SettingsKey.strength and is_strength(value):
        prefs.strength = value
    elif callback_data.key is SettingsKey.colors:
        prefs.preserve_colors = not prefs.preserve_colors
    elif callback_data.key is SettingsKey.size and value == "orig":
        prefs.size = None
    elif callback_data.key is SettingsKey.size and value.isdigit() and int(value) in SIZES:
        prefs.size = int(value)
    elif callback_data.key is SettingsKey.refine:
        refine = prefs.refine if prefs.refine is not None else services.settings.refine
        prefs.refine = not refine
    elif callback_data.key is SettingsKey.language and value in LANGUAGES:
        prefs.language = value
    else:
        callback_answer.text = _("This option is not available.")
        return
    await save_prefs(state.storage, state.key, prefs)
    locale = prefs.language or locale_from_language_code(query.from_user.language_code)
    with i18n.use_locale(locale):
        callback_answer.text = _("Saved.")
        if query.message is not None:
            with contextlib.suppress(TelegramBadRequest):
                await bot.edit_message_text(
                    chat_id=query.message.chat.id,
                    message_id=query.message.message_id,
                    text=settings_text(prefs),
                    reply_markup=settings_keyboard(prefs, locale, refine_default=services.settings.refine),
                )
