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


class ResultButton(CallbackData, prefix="rs"):
    """Under a result; valid while it is the user's latest result."""

    job: str
    action: ResultAction


class JobButton(CallbackData, prefix="jb"):
    """The "Cancel" button under the progress message."""

    job_id: str


class SettingsKey(StrEnum):
    strength = "str"
    colors = "col"
    size = "size"
    language = "lang"
    close = "close"


class SettingsButton(CallbackData, prefix="st"):
    key: SettingsKey
    value: str = ""
