"""The one progress message per job: how it reads, and how often it may be edited."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from stylebot.jobs.spec import JobState, JobStatus

BAR_CELLS = 10


def progress_bar(fraction: float) -> str:
    filled = max(0, min(BAR_CELLS, round(fraction * BAR_CELLS)))
    return "▓" * filled + "░" * (BAR_CELLS - filled)


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return _("{n} s").format(n=seconds)
    return _("{m} min {s} s").format(m=seconds // 60, s=seconds % 60)


def progress_text(status: JobStatus | None, style: str) -> str:
    head = _("🎨 Style: {style}").format(style=style)
    if status is None:
        return head + "\n" + _("Sending your job…")
    if status.state is JobState.queued:
        if status.position:
            ahead = ngettext(
                "⏳ In the queue: {n} job ahead of yours.",
                "⏳ In the queue: {n} jobs ahead of yours.",
                status.position,
            )
            return head + "\n" + ahead.format(n=status.position)
        return head + "\n" + _("⏳ Queued, starting soon…")
    if status.state is JobState.running:
        line = f"{progress_bar(status.progress)} {round(status.progress * 100)}%"
        if status.eta_s is not None:
            line += " · " + _("about {eta} left").format(eta=format_seconds(status.eta_s))
        return head + "\n" + _("⚙ Working…") + "\n" + line
    if status.state is JobState.cancelled:
        return head + "\n" + _("✖ Cancelled.")
    if status.state is JobState.failed:
        return head + "\n" + _("⚠ Failed.")
    return head + "\n" + _("✅ Done.")


@dataclass
class EditThrottle:
    """Telegram allows about one edit per second per chat; edits in between are merged.

    ``ready`` says whether an edit may go now; the latest text always wins, so nothing shown
    is ever older than ``interval`` seconds when the job moves on.
    """

    interval: float
    preview_interval: float
    _last_edit: float = field(default=float("-inf"))
    _last_preview: float = field(default=float("-inf"))
    last_text: str | None = None

    def text_due(self, text: str, *, force: bool = False) -> bool:
        if text == self.last_text:
            return False
        return force or time.monotonic() - self._last_edit >= self.interval

    def preview_due(self) -> bool:
        return time.monotonic() - self._last_preview >= self.preview_interval

    def sent(self, text: str, *, preview: bool = False) -> None:
        now = time.monotonic()
        self._last_edit = now
        if preview:
            self._last_preview = now
        self.last_text = text
