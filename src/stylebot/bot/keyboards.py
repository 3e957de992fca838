"""Inline keyboards; every button carries typed callback data (see ``callbacks.py``)."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from stylebot.bot.callbacks import (
    ChoiceAction,
    JobButton,
    MultiAction,
    MultiStyle,
    ResultAction,
    ResultButton,
    SettingsButton,
    SettingsKey,
    StyleChoice,
)
from stylebot.bot.prefs import SIZES, STRENGTHS, UserPrefs
from stylebot.bot.styles import StyleAvailability, style_title


def style_choice_keyboard(flow: str, styles: list[StyleAvailability]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text="🖼 " + _("My style images"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.mine)
    )
    for style in styles:
        text = style_title(style.name) if style.installed else "🚫 " + style_title(style.name)
        kb.button(
            text=text,
            callback_data=StyleChoice(flow=flow, action=ChoiceAction.pretrained, model=style.name),
        )
    kb.button(text="✖ " + _("Cancel"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.cancel))
    kb.adjust(1, 2, 2, 2, 1)
    return kb.as_markup()


def multi_style_keyboard(flow: str, count: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    if count:
        kb.button(text="🎨 " + _("Stylize"), callback_data=MultiStyle(flow=flow, action=MultiAction.stylize))
    if count > 1:
        kb.button(text="⚖ " + _("Weights"), callback_data=MultiStyle(flow=flow, action=MultiAction.weights))
    kb.button(text="✖ " + _("Cancel"), callback_data=MultiStyle(flow=flow, action=MultiAction.cancel))
    kb.adjust(3)
    return kb.as_markup()


def result_keyboard(job_id: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text="🔁 " + _("Another style for this photo"),
        callback_data=ResultButton(job=job_id, action=ResultAction.another),
    )
    kb.button(
        text="📷 " + _("New photo"), callback_data=ResultButton(job=job_id, action=ResultAction.new_photo)
    )
    kb.adjust(1)
    return kb.as_markup()


def progress_keyboard(job_id: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="✖ " + _("Cancel"), callback_data=JobButton(job_id=job_id))
    return kb.as_markup()


def _mark(selected: bool, text: str) -> str:
    return f"• {text} •" if selected else text


def settings_keyboard(prefs: UserPrefs, current_locale: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    strength_names = {"low": _("Subtle"), "normal": _("Normal"), "high": _("Strong")}
    for name in STRENGTHS:
        kb.button(
            text=_mark(prefs.strength == name, strength_names[name]),
            callback_data=SettingsButton(key=SettingsKey.strength, value=name),
        )
    colors = _("Keep photo colours: on") if prefs.preserve_colors else _("Keep photo colours: off")
    kb.button(text=colors, callback_data=SettingsButton(key=SettingsKey.colors, value="toggle"))
    for size in SIZES:
        kb.button(
            text=_mark(prefs.size == size, f"{size}px"),
            callback_data=SettingsButton(key=SettingsKey.size, value=str(size)),
        )
    for code, name in (("en", "English"), ("ru", "Русский")):
        kb.button(
            text=_mark(current_locale == code, name),
            callback_data=SettingsButton(key=SettingsKey.language, value=code),
        )
    kb.button(text=_("Done"), callback_data=SettingsButton(key=SettingsKey.close))
    kb.adjust(len(STRENGTHS), 1, len(SIZES), 2, 1)
    return kb.as_markup()
