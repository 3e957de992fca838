"""Inline keyboards; every button carries typed callback data (see ``callbacks.py``)."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from stylebot.bot.callbacks import (
    ChoiceAction,
    JobAction,
    JobButton,
    MultiAction,
    MultiStyle,
    ResultAction,
    ResultButton,
    SettingsButton,
    SettingsKey,
    SheetPage,
    SheetPick,
    StyleChoice,
)
from stylebot.bot.prefs import SIZES, STRENGTHS, UserPrefs
from stylebot.bot.styles import StyleAvailability, style_title
from stylebot.jobs.spec import MAX_SIZE, SHEET_CYCLEGAN_NUMBERS


def style_choice_keyboard(flow: str, styles: list[StyleAvailability]) -> InlineKeyboardMarkup:
    """Without a sheet: "My style images" and the installed pretrained styles by name."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text="🖼 " + _("My style images"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.mine)
    )
    installed = [s for s in styles if s.installed]
    for style in installed:
        kb.button(
            text=style_title(style.name),
            callback_data=StyleChoice(flow=flow, action=ChoiceAction.pretrained, model=style.name),
        )
    kb.button(text="✖ " + _("Cancel"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.cancel))
    kb.adjust(1, *([2] * ((len(installed) + 1) // 2)), 1)
    return kb.as_markup()


SHEET_PAGE = 20  # tile buttons per page (4 rows of 5)
SHEET_ROW = 5


def sheet_pages(numbers: list[int]) -> int:
    return max(1, -(-len(numbers) // SHEET_PAGE))


def sheet_keyboard(flow: str, numbers: list[int], page: int = 0) -> InlineKeyboardMarkup:
    """Under the style sheet: its tile numbers (paged), "My style images", "Cancel"."""
    pages = sheet_pages(numbers)
    page = max(0, min(page, pages - 1))
    shown = numbers[page * SHEET_PAGE : (page + 1) * SHEET_PAGE]
    kb = InlineKeyboardBuilder()
    for number in shown:
        model = next((m for m, n in SHEET_CYCLEGAN_NUMBERS.items() if n == number), None)
        text = f"{number} {style_title(model)}" if model else str(number)
        kb.button(text=text, callback_data=SheetPick(flow=flow, number=number))
    rows = [SHEET_ROW] * (len(shown) // SHEET_ROW) + (
        [len(shown) % SHEET_ROW] if len(shown) % SHEET_ROW else []
    )
    if pages > 1:
        if page > 0:
            kb.button(text="◀ " + _("Back"), callback_data=SheetPage(flow=flow, page=page - 1))
        if page < pages - 1:
            kb.button(text=_("More") + " ▶", callback_data=SheetPage(flow=flow, page=page + 1))
        rows.append((page > 0) + (page < pages - 1))
    kb.button(
        text="🖼 " + _("My style images"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.mine)
    )
    kb.button(text="✖ " + _("Cancel"), callback_data=StyleChoice(flow=flow, action=ChoiceAction.cancel))
    kb.adjust(*rows, 2)
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


def result_keyboard(
    job_id: str, *, tunable: bool = False, preserve_colors: bool = False
) -> InlineKeyboardMarkup:
    """Under a result: another style, stronger/weaker and keep colours (not for a CycleGAN, which
    takes neither), a new photo."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text="🔁 " + _("Another style for this photo"),
        callback_data=ResultButton(job=job_id, action=ResultAction.another),
    )
    rows = [1]
    if tunable:
        kb.button(
            text="➕ " + _("Stronger"), callback_data=ResultButton(job=job_id, action=ResultAction.stronger)
        )
        kb.button(
            text="➖ " + _("Weaker"), callback_data=ResultButton(job=job_id, action=ResultAction.weaker)
        )
        colours = _("Keep photo colours: on") if preserve_colors else _("Keep photo colours: off")
        kb.button(text="🎨 " + colours, callback_data=ResultButton(job=job_id, action=ResultAction.colors))
        rows += [2, 1]
    kb.button(
        text="📷 " + _("New photo"), callback_data=ResultButton(job=job_id, action=ResultAction.new_photo)
    )
    kb.adjust(*rows, 1)
    return kb.as_markup()


def progress_keyboard(job_id: str, *, finishable: bool = False) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    if finishable:
        kb.button(
            text="✅ " + _("Good, send it"), callback_data=JobButton(job_id=job_id, action=JobAction.finish)
        )
    kb.button(text="✖ " + _("Cancel"), callback_data=JobButton(job_id=job_id, action=JobAction.cancel))
    kb.adjust(2)
    return kb.as_markup()


def _mark(selected: bool, text: str) -> str:
    return f"• {text} •" if selected else text


def settings_keyboard(
    prefs: UserPrefs, current_locale: str, *, refine_default: bool = True
) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    strength_names = {"low": _("Subtle"), "normal": _("Normal"), "high": _("Strong")}
    for name in STRENGTHS:
        kb.button(
            text=_mark(prefs.strength == name, strength_names[name]),
            callback_data=SettingsButton(key=SettingsKey.strength, value=name),
        )
    colors = _("Keep photo colours: on") if prefs.preserve_colors else _("Keep photo colours: off")
    kb.button(text=colors, callback_data=SettingsButton(key=SettingsKey.colors, value="toggle"))
    kb.button(
        text=_mark(prefs.size is None, _("Original (up to {max})").format(max=MAX_SIZE)),
        callback_data=SettingsButton(key=SettingsKey.size, value="orig"),
    )
    for size in SIZES:
        kb.button(
            text=_mark(prefs.size == size, f"{size}px"),
            callback_data=SettingsButton(key=SettingsKey.size, value=str(size)),
        )
    refine = prefs.refine if prefs.refine is not None else refine_default
    kb.button(
        text=_("Refine after the instant result: on")
        if refine
        else _("Refine after the instant result: off"),
        callback_data=SettingsButton(key=SettingsKey.refine, value="toggle"),
    )
    for code, language_name in (("en", "English"), ("ru", "Русский")):
        kb.button(
            text=_mark(current_locale == code, language_name),
            callback_data=SettingsButton(key=SettingsKey.language, value=code),
        )
    kb.button(text=_("Done"), callback_data=SettingsButton(key=SettingsKey.close))
    kb.adjust(len(STRENGTHS), 1, 1 + len(SIZES), 1, 2, 1)
    return kb.as_markup()
