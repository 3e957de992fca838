"""Messages that are not commands: images, albums, weights, and every kind of wrong input."""

from __future__ import annotations

import re

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from stylebot.bot.conversation import Conversation
from stylebot.bot.handlers.common import (
    Services,
    accept_content,
    add_style_images,
    send_panel,
    styles_panel_text,
)
from stylebot.bot.keyboards import multi_style_keyboard
from stylebot.bot.media import InputKind, input_kind, is_image, wrong_input_reply
from stylebot.bot.states import Flow

router = Router(name="content")
MAX_WEIGHT = 100.0


def album_problem(album: list[Message] | None) -> str | None:
    if not album:
        return None
    for item in album:
        if not is_image(item):
            return (
                wrong_input_reply(input_kind(item))
                + "\n"
                + _("Albums must contain only images; I ignored this one.")
            )
    return None


@router.message(Flow.collecting_styles, F.photo | F.document)
async def style_image(
    message: Message, state: FSMContext, services: Services, album: list[Message] | None = None
) -> None:
    if (problem := album_problem(album)) is not None:
        await message.answer(problem)
        return
    if not is_image(message):
        await message.answer(wrong_input_reply(input_kind(message)))
        return
    await add_style_images(message, state, services, album)


@router.message(Flow.entering_weights, F.text & ~F.text.startswith("/"))
async def weights_entered(message: Message, state: FSMContext) -> None:
    conv = await Conversation.load(state)
    count = len(conv.styles)
    weights = parse_weights(message.text or "")
    if weights is None or len(weights) != count:
        await message.answer(
            _(
                "Please send {n} numbers between 0 and 100 separated by spaces, one per style image, "
                "for example: {example}"
            ).format(n=count, example=" ".join(["1"] * (count - 1) + ["2"]))
        )
        return
    conv.weights = weights
    await conv.save(state)
    await state.set_state(Flow.collecting_styles)
    assert message.bot is not None
    await send_panel(
        message.bot,
        message.chat.id,
        state,
        styles_panel_text(count, weights),
        multi_style_keyboard(conv.flow, count),
    )


def parse_weights(text: str) -> list[float] | None:
    parts = [p for p in re.split(r"[\s,;:]+", text.strip()) if p]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        return None
    if not weights or any(not (0 < w <= MAX_WEIGHT) for w in weights):
        return None
    return weights


@router.message(Flow.entering_weights)
async def weights_wrong(message: Message, state: FSMContext) -> None:
    count = len((await Conversation.load(state)).styles)
    kind = input_kind(message)
    prefix = "" if kind is InputKind.text else wrong_input_reply(kind) + "\n"
    if is_image(message):
        prefix = _("I am waiting for the weights, not for an image.") + "\n"
    await message.answer(
        prefix + _("Send {n} numbers, one weight per style image (e.g. “2 1”), or /cancel.").format(n=count)
    )


@router.message(F.photo | F.document)
async def content_image(
    message: Message, state: FSMContext, services: Services, album: list[Message] | None = None
) -> None:
    """In any other state a photo (or an album) is the new content."""
    if (problem := album_problem(album)) is not None:
        await message.answer(problem)
        return
    if not is_image(message):
        await message.answer(wrong_input_reply(input_kind(message)))
        return
    await accept_content(message, state, services, album)


@router.message()
async def anything_else(message: Message, state: FSMContext) -> None:
    kind = input_kind(message)
    current = await state.get_state()
    if kind is InputKind.text and (message.text or "").startswith("/"):
        reply = _("I do not know that command. /help lists what I can do.")
    elif kind is InputKind.text:
        reply = ""
    else:
        reply = wrong_input_reply(kind)
    if current == Flow.choosing_style.state:
        hint = _("Choose a style with the buttons above, or send another photo.")
    elif current == Flow.collecting_styles.state:
        hint = _("Send style images (photos or files), or press Stylize.")
    else:
        hint = _("Send me a photo to begin.")
    await message.answer(f"{reply}\n{hint}" if reply else hint)
