"""The conversation with one user, typed: what the handlers read and write instead of raw FSM data.

One object per chat+user, kept in the FSM storage (memory or Redis) under the default destiny:

* ``flow``: a random token for the current conversation; buttons carry it, so a button from an
  older conversation (or another user's) is recognised as stale.
* ``content``: the user's photo (a storage key on the ML side), ``styles``/``weights``: the style
  images collected so far, ``panel``: the message whose buttons are current.
* ``job``: the job this conversation last submitted. It is a hint only: what runs for a chat is
  what the pending-delivery store says (see :mod:`stylebot.bot.delivery`), which survives restarts.
* ``last_result``: the latest delivered result, for its buttons (another style, stronger, ...).
"""

from __future__ import annotations

import logging
import secrets

from aiogram.fsm.context import FSMContext
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)


def new_flow() -> str:
    return secrets.token_hex(4)


class Content(BaseModel):
    """The user's photo as the ML side stores it."""

    key: str
    as_document: bool = False
    thumb: str | None = Field(None, description="Telegram file id of a small version, for progress")
    long_side: int | None = Field(None, description="the photo's longer side, px")


class LastResult(BaseModel):
    job: str
    content: Content
    model: str | None = None
    gallery: int | None = None
    styles: list[str] = Field(default_factory=list)
    weights: list[float] | None = None
    strength: float = 1.0
    preserve_colors: bool = False

    @property
    def tunable(self) -> bool:
        """Style images and gallery styles take strength and colours; a CycleGAN does not."""
        return self.model is None


class Conversation(BaseModel):
    flow: str = ""
    content: Content | None = None
    styles: list[str] = Field(default_factory=list)
    weights: list[float] | None = None
    job: str | None = None
    last_result: LastResult | None = None
    panel: int | None = None
    sheet: list[int] = Field(default_factory=list, description="tile numbers the sheet offers")

    @classmethod
    async def load(cls, state: FSMContext) -> Conversation:
        raw = await state.get_data()
        try:
            return cls.model_validate(raw or {})
        except ValidationError as exc:
            # Data written by an older version, or damaged: start clean rather than fail every update.
            log.warning("conversation data of %s unreadable, starting over: %s", state.key.user_id, exc)
            return cls()

    async def save(self, state: FSMContext) -> None:
        await state.set_data(self.model_dump(mode="json", exclude_defaults=True))

    def reset(self, *, keep_result: bool = True) -> Conversation:
        """Forget the current conversation (photo, styles, panel); keep the job hint and last result."""
        self.flow = ""
        self.content = None
        self.styles = []
        self.weights = None
        self.panel = None
        self.sheet = []
        if not keep_result:
            self.last_result = None
        return self

    def start(self, content: Content, styles: list[str] | None = None) -> str:
        """A new conversation about ``content``; returns its flow token."""
        self.reset()
        self.flow = new_flow()
        self.content = content
        self.styles = list(styles or [])
        return self.flow
