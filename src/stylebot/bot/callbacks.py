"""Typed callback data for every inline button.

Each conversation keyboard carries the ``flow`` token of the conversation it belongs to; a
button whose token is not the user's current one is stale (old message, or another user's).
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class ChoiceAction(StrEnum):
    mine = "mine"
    pretrained = "pre"
    cancel = "cancel"


class StyleChoice(CallbackData, prefix="ch"):
    flow: str
    action: ChoiceAction
    model: str = ""


class MultiAction(StrEnum):
    stylize = "go"
    weights = "w"
    cancel = "cancel"


class MultiStyle(CallbackData, prefix="ms"):
    flow: str
    action: MultiAction


class ResultAction(StrEnum):
    another = "again"
    new_photo = "new"
    stronger = "up"
    weaker = "down"
    colors = "col"


class ResultButton(CallbackData, prefix="rs"):
    """Under a result; valid while it is the user's latest result."""

    job: str
    action: ResultAction


class SheetPick(CallbackData, prefix="sp"):
    """A numbered tile of the style sheet (gallery 0-25, CycleGAN 26+)."""

    flow: str
    number: int


class SheetPage(CallbackData, prefix="pg"):
    flow: str
    page: int


class JobAction(StrEnum):
    cancel = "x"
    finish = "ok"


class JobButton(CallbackData, prefix="jb"):
    """The buttons under the progress message: "✖ Cancel" and "✅ Good, send it"."""

    job_id: str
    action: JobAction = JobAction.cancel


class SettingsKey(StrEnum):
    strength = "str"
    colors = "col"
    size = "size"
    refine = "ref"
    language = "lang"
    close = "close"


class SettingsButton(CallbackData, prefix="st"):
    key: SettingsKey
    value: str = ""
