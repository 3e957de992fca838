"""Conversation states (aiogram FSM).

Idle (no state) accepts a photo as new content at any time; the states below only say what the
bot expects next.
"""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class Flow(StatesGroup):
    choosing_style = State()  # content received; inline choice "My style images" / pretrained
    collecting_styles = State()  # 1-5 style images being collected
    entering_weights = State()  # waiting for one number per style image
