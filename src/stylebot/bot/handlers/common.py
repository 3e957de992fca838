"""Conversation helpers shared by the routers: panels, content, style images and submitting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.context import FSMContext
from aiogram.types import InlineKeyboardMarkup, Message
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from stylebot.bot.conversation import Content, Conversation
from stylebot.bot.delivery import JobRunner
from stylebot.bot.keyboards import multi_style_keyboard, style_choice_keyboard
from stylebot.bot.media import BadImage, ImageRef, download_image, first_frame_text, image_ref
from stylebot.bot.middlewares import UserLocks
from stylebot.bot.persistence import PendingDelivery
from stylebot.bot.prefs import UserPrefs
from stylebot.bot.states import Flow
from stylebot.bot.styles import StyleCatalog, style_title
from stylebot.client import JobClient, JobClientError
from stylebot.config import Settings
from stylebot.jobs.spec import MAX_STYLES, JobKind, JobParams, JobSpec

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything handlers need besides the event; injected as ``services``."""

    settings: Settings
    client: JobClient
    runner: JobRunner
    catalog: StyleCatalog
    locks: UserLocks
    i18n: I18n


def owner_of(chat_id: int) -> str:
    return f"chat:{chat_id}"


def client_error_text(exc: JobClientError) -> str:
    if exc.code == "unavailable":
        return _("The style service is unavailable right now. Please try again in a minute.")
    if exc.code == "busy":
        return _(
            "Too many people are stylizing right now; the queue is full. Please try again in a few minutes."
        )
    if exc.code == "owner_limit":
        return _(
            "You already have a stylization running, and I do one per person at a time. "
            "Wait for it to finish, or send /cancel to stop it."
        )
    if exc.code == "bad_image":
        return _("The server could not read this image: {reason}").format(reason=exc.message)
    if exc.code == "not_found":
        return _("Your photo is no longer stored on the server. Please send it again.")
    return _("The style service refused this request. Please send the photo again.")


async def drop_panel(bot: Bot, chat_id: int, conv: Conversation) -> None:
    """Remove the keyboard of the previous panel so only the current buttons remain."""
    panel, conv.panel = conv.panel, None
    if panel:
        with contextlib.suppress(TelegramAPIError):
            await bot.edit_message_reply_markup(chat_id=chat_id, message_id=panel, reply_markup=None)


async def send_panel(
    bot: Bot, chat_id: int, state: FSMContext, text: str, markup: InlineKeyboardMarkup
) -> None:
    conv = await Conversation.load(state)
    await drop_panel(bot, chat_id, conv)
    sent = await bot.send_message(chat_id, text, reply_markup=markup)
    conv.panel = sent.message_id
    await conv.save(state)


async def reset_conversation(bot: Bot, chat_id: int, state: FSMContext) -> Conversation:
    """Back to idle: the panel loses its buttons; the last result (for its buttons) stays."""
    conv = await Conversation.load(state)
    await drop_panel(bot, chat_id, conv)
    conv.reset()
    await state.set_state(None)
    await conv.save(state)
    return conv


async def choice_text_and_markup(services: Services, flow: str) -> tuple[str, InlineKeyboardMarkup]:
    styles = await services.catalog.list()
    lines = [_("Got your photo. How should I restyle it?")]
    lines.append(_("• “My style images”: send 1–5 pictures whose style I should copy."))
    lines.append(_("• Or pick a painter or a season below."))
    unavailable = [s for s in styles if not s.installed]
    if unavailable:
        lines.append("")
        for style in unavailable:
            reason = style.reason or _("weights not installed")
            lines.append(
                _("🚫 {style} is unavailable: {reason}").format(style=style_title(style.name), reason=reason)
            )
    return "\n".join(lines), style_choice_keyboard(flow, styles)


def styles_panel_text(count: int, weights: list[float] | None) -> str:
    if count == 0:
        return _("Send 1–{max} style images (photos, files or an album), then press Stylize.").format(
            max=MAX_STYLES
        )
    text = _("Style images: {count} of {max}. Send more, or press Stylize.").format(
        count=count, max=MAX_STYLES
    )
    if weights:
        text += "\n" + _("Weights: {weights}").format(weights=" : ".join(f"{w:g}" for w in weights))
    return text


async def upload_images(
    bot: Bot, services: Services, chat_id: int, refs: list[ImageRef], names: list[str]
) -> tuple[list[str], int]:
    """Download, check and upload images; returns the keys and how many were first frames of
    animations or videos. Raises BadImage or JobClientError."""
    limits = services.settings
    async with ChatActionSender.upload_photo(chat_id=chat_id, bot=bot):
        blobs = await asyncio.gather(
            *(
                download_image(
                    bot, ref, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_input_pixels
                )
                for ref in refs
            )
        )
        keys = []
        for blob, name in zip(blobs, names, strict=True):
            keys.append(await services.client.upload_input(blob.data, owner=owner_of(chat_id), name=name))
    return keys, sum(blob.first_frame for blob in blobs)


async def accept_content(
    message: Message, state: FSMContext, services: Services, album: list[Message] | None = None
) -> None:
    """A new photo (or an album: photo + style images) starts a new conversation."""
    bot = message.bot
    assert bot is not None
    items = album or [message]
    refs = [image_ref(m) for m in items]
    content_ref = refs[0]
    assert content_ref is not None
    style_refs = [r for r in refs[1:] if r is not None]
    too_many = len(style_refs) > MAX_STYLES
    if too_many:
        style_refs = []
    try:
        keys, first_frames = await upload_images(
            bot,
            services,
            message.chat.id,
            [content_ref, *style_refs],
            ["content.jpg"] + [f"style{i}.jpg" for i in range(len(style_refs))],
        )
    except BadImage as exc:
        await message.answer(str(exc))
        return
    except JobClientError as exc:
        await message.answer(client_error_text(exc))
        return
    content = Content(key=keys[0], as_document=content_ref.as_document, thumb=content_ref.thumb_file_id)
    async with services.locks(state):
        conv = await Conversation.load(state)
        await drop_panel(bot, message.chat.id, conv)
        flow = conv.start(content, keys[1:])
        await conv.save(state)
    if first_frames:
        await message.answer(first_frame_text(first_frames))
    if too_many:
        await message.answer(
            _(
                "That album has more than {max} style images. I took the first image as your photo; "
                "choose “My style images” and send at most {max}."
            ).format(max=MAX_STYLES)
        )
    if len(keys) > 1:
        await state.set_state(Flow.collecting_styles)
        await message.answer(
            ngettext(
                "I took the first image of the album as your photo and the other one as a style image.",
                "I took the first image of the album as your photo and the other {n} as style images.",
                len(keys) - 1,
            ).format(n=len(keys) - 1)
        )
        await send_panel(
            bot,
            message.chat.id,
            state,
            styles_panel_text(len(keys) - 1, None),
            multi_style_keyboard(flow, len(keys) - 1),
        )
        return
    await state.set_state(Flow.choosing_style)
    text, markup = await choice_text_and_markup(services, flow)
    await send_panel(bot, message.chat.id, state, text, markup)


async def add_style_images(
    message: Message, state: FSMContext, services: Services, album: list[Message] | None = None
) -> None:
    bot = message.bot
    assert bot is not None
    items = album or [message]
    refs = [r for r in (image_ref(m) for m in items) if r is not None]
    have = len((await Conversation.load(state)).styles)
    if have + len(refs) > MAX_STYLES:
        await message.answer(
            _(
                "That would make {total} style images; the limit is {max}. You have {have}, so send at most "
                "{left} more, or press Stylize."
            ).format(total=have + len(refs), max=MAX_STYLES, have=have, left=MAX_STYLES - have)
        )
        return
    try:
        keys, first_frames = await upload_images(
            bot, services, message.chat.id, refs, [f"style{have + i}.jpg" for i in range(len(refs))]
        )
    except BadImage as exc:
        await message.answer(str(exc))
        return
    except JobClientError as exc:
        await message.answer(client_error_text(exc))
        return
    async with services.locks(state):
        conv = await Conversation.load(state)
        styles = [*conv.styles, *keys]
        if len(styles) > MAX_STYLES:
            await message.answer(_("The limit is {max} style images.").format(max=MAX_STYLES))
            return
        conv.styles, conv.weights = styles, None
        await conv.save(state)
    if first_frames:
        await message.answer(first_frame_text(first_frames))
    await send_panel(
        bot,
        message.chat.id,
        state,
        styles_panel_text(len(styles), None),
        multi_style_keyboard(conv.flow, len(styles)),
    )


async def submit_job(
    bot: Bot,
    state: FSMContext,
    services: Services,
    *,
    chat_id: int,
    user_id: int,
    prefs: UserPrefs,
    locale: str,
    model: str | None,
) -> str | None:
    """Submit the current conversation's job; returns a user-facing error text or None."""
    conv = await Conversation.load(state)
    content = conv.content
    if content is None:
        return _("I no longer have your photo. Please send it again.")
    if (running := await services.runner.running_for(chat_id, user_id)) is not None:
        log.info("chat %s asked for a second job while %s runs", chat_id, running.job_id)
        return client_error_text(JobClientError("owner_limit", "one job at a time"))
    styles = [] if model else conv.styles
    weights = conv.weights if conv.weights and len(conv.weights) == len(styles) else None
    params = JobParams(
        size=prefs.size,
        strength=prefs.strength_value,
        preserve_colors=prefs.preserve_colors,
        fast_dev_run=services.settings.default_fast_dev_run,
    )
    job_id = uuid.uuid4().hex
    if model:
        spec = JobSpec(
            job_id=job_id,
            owner=owner_of(chat_id),
            kind=JobKind.cyclegan,
            content_key=content.key,
            model=model,
            params=params,
        )
    else:
        spec = JobSpec(
            job_id=job_id,
            owner=owner_of(chat_id),
            kind=JobKind.nst,
            content_key=content.key,
            style_keys=styles,
            style_weights=weights,
            params=params,
        )
    rec = PendingDelivery(
        job_id=job_id,
        chat_id=chat_id,
        user_id=user_id,
        locale=locale,
        style=model,
        style_count=len(styles),
        styles=styles,
        weights=weights,
        as_document=content.as_document,
        flow=conv.flow,
        content=content,
    )
    # The job may finish before submit() returns (fast jobs): record it first, restore on refusal.
    previous_state = await state.get_state()
    before = conv.model_copy(deep=True)
    await state.set_state(None)
    conv.job = job_id
    await conv.save(state)
    try:
        await services.runner.submit(spec, rec, content.thumb)
    except JobClientError as exc:
        await state.set_state(previous_state)
        await before.save(state)
        return client_error_text(exc)
    conv = await Conversation.load(state)
    await drop_panel(bot, chat_id, before)
    if conv.panel == before.panel:
        conv.panel = None
    conv.reset()
    await conv.save(state)
    return None
