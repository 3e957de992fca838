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
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from stylebot.bot.conversation import Content, Conversation
from stylebot.bot.delivery import JobRunner
from stylebot.bot.keyboards import multi_style_keyboard, sheet_keyboard, style_choice_keyboard
from stylebot.bot.media import BadImage, ImageRef, download_image, first_frame_text, image_ref
from stylebot.bot.middlewares import UserLocks
from stylebot.bot.persistence import PendingDelivery
from stylebot.bot.prefs import UserPrefs
from stylebot.bot.states import Flow
from stylebot.bot.styles import StyleCatalog
from stylebot.client import JobClient, JobClientError
from stylebot.config import Settings
from stylebot.jobs.spec import (
    MAX_STYLES,
    SHEET_CYCLEGAN_NUMBERS,
    JobKind,
    JobParams,
    JobSpec,
    JobState,
    Preset,
)
from stylebot.ml.names import GALLERY_STYLES

log = logging.getLogger(__name__)
SHEET_TIMEOUT = 60.0  # seconds; the sheet takes ~1-3 s on a CPU


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
    """The choice without a sheet (the gallery network is not installed, or the sheet failed)."""
    styles = await services.catalog.list()
    lines = [_("Got your photo. How should I restyle it?")]
    lines.append(_("• “My style images”: send 1–5 pictures whose style I should copy."))
    if any(s.installed for s in styles):
        lines.append(_("• Or pick a painter or a season below."))
    return "\n".join(lines), style_choice_keyboard(flow, styles)


def sheet_caption() -> str:
    return _(
        "Got your photo. How should I restyle it?\n"
        "Pick a style by its number in the picture, or choose “My style images” and send 1–5 pictures "
        "whose style I should copy."
    )


async def sheet_numbers(services: Services) -> list[int]:
    """The tiles a sheet shows: the 26 gallery styles, then each installed CycleGAN."""
    installed = {s.name for s in await services.catalog.list() if s.installed}
    extra = [n for name, n in SHEET_CYCLEGAN_NUMBERS.items() if name in installed]
    return [*range(GALLERY_STYLES), *sorted(extra)]


async def render_sheet(bot: Bot, services: Services, chat_id: int, content: Content) -> bytes | None:
    """Run a sheet job and wait for it (a fast-lane pass: seconds); None when there is no sheet
    (gallery network not installed, a job already running for this chat, service down)."""
    spec = JobSpec(
        job_id=uuid.uuid4().hex,
        owner=owner_of(chat_id),
        kind=JobKind.sheet,
        content_key=content.key,
        params=JobParams(fast_dev_run=services.settings.default_fast_dev_run),
    )
    client = services.client
    try:
        async with ChatActionSender.upload_photo(chat_id=chat_id, bot=bot):
            await client.submit(spec)
            async with asyncio.timeout(SHEET_TIMEOUT):
                async for status in client.watch(spec.job_id, interval=0.2):
                    if status.finished:
                        break
            if status.state is not JobState.done:
                log.info(
                    "no sheet for chat %s: %s", chat_id, status.error.code if status.error else status.state
                )
                return None
            return await client.result(spec.job_id)
    except (JobClientError, TimeoutError) as exc:
        log.info("no sheet for chat %s: %s", chat_id, getattr(exc, "code", "timeout"))
        with contextlib.suppress(JobClientError):
            await client.cancel(spec.job_id)
        return None


async def offer_styles(bot: Bot, chat_id: int, state: FSMContext, services: Services) -> None:
    """After a photo: the sheet with its numbered keyboard, or else the plain choice panel."""
    conv = await Conversation.load(state)
    assert conv.content is not None
    flow = conv.flow
    sheet = await render_sheet(bot, services, chat_id, conv.content)
    if sheet is None:
        text, markup = await choice_text_and_markup(services, flow)
        await send_panel(bot, chat_id, state, text, markup)
        return
    numbers = await sheet_numbers(services)
    conv = await Conversation.load(state)
    if conv.flow != flow:
        return  # another photo came meanwhile: its own sheet follows
    await drop_panel(bot, chat_id, conv)
    sent = await bot.send_photo(
        chat_id,
        BufferedInputFile(sheet, "styles.jpg"),
        caption=sheet_caption(),
        reply_markup=sheet_keyboard(flow, numbers),
    )
    conv.panel, conv.sheet = sent.message_id, numbers
    await conv.save(state)


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
) -> tuple[list[str], int, list[int]]:
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
    return keys, sum(blob.first_frame for blob in blobs), [blob.long_side for blob in blobs]


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
        keys, first_frames, long_sides = await upload_images(
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
    content = Content(
        key=keys[0],
        as_document=content_ref.as_document,
        thumb=content_ref.thumb_file_id,
        long_side=long_sides[0],
    )
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
    await offer_styles(bot, message.chat.id, state, services)


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
        keys, first_frames, _sizes = await upload_images(
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


@dataclass(frozen=True)
class Pick:
    """What to run: the user's style images (``refine`` or instant), a CycleGAN, or a gallery style."""

    model: str | None = None
    gallery: int | None = None

    @property
    def pretrained(self) -> bool:
        return self.model is not None or self.gallery is not None


async def submit_job(
    bot: Bot,
    state: FSMContext,
    services: Services,
    *,
    chat_id: int,
    user_id: int,
    prefs: UserPrefs,
    locale: str,
    pick: Pick,
    strength: float | None = None,
    preserve_colors: bool | None = None,
) -> str | None:
    """Submit the current conversation's job; returns a user-facing error text or None.

    ``strength``/``preserve_colors`` override the user's settings (the result's own buttons)."""
    conv = await Conversation.load(state)
    content = conv.content
    if content is None:
        return _("I no longer have your photo. Please send it again.")
    if (running := await services.runner.running_for(chat_id, user_id)) is not None:
        log.info("chat %s asked for a second job while %s runs", chat_id, running.job_id)
        return client_error_text(JobClientError("owner_limit", "one job at a time"))
    styles = [] if pick.pretrained else conv.styles
    weights = conv.weights if conv.weights and len(conv.weights) == len(styles) else None
    refine = not pick.pretrained and (prefs.refine if prefs.refine is not None else services.settings.refine)
    params = JobParams(
        size=prefs.result_size(content.long_side, refining=refine),
        preset=Preset.balanced if refine else Preset.instant,
        strength=strength if strength is not None else prefs.strength_value,
        preserve_colors=preserve_colors if preserve_colors is not None else prefs.preserve_colors,
        fast_dev_run=services.settings.default_fast_dev_run,
    )
    job_id = uuid.uuid4().hex
    common = {"job_id": job_id, "owner": owner_of(chat_id), "content_key": content.key, "params": params}
    if pick.model:
        spec = JobSpec(kind=JobKind.cyclegan, model=pick.model, **common)
    elif pick.gallery is not None:
        spec = JobSpec(kind=JobKind.gallery, gallery={pick.gallery: 1.0}, **common)
    else:
        spec = JobSpec(kind=JobKind.nst, style_keys=styles, style_weights=weights, **common)
    rec = PendingDelivery(
        job_id=job_id,
        chat_id=chat_id,
        user_id=user_id,
        locale=locale,
        style=pick.model,
        gallery=pick.gallery,
        refine=refine,
        style_count=len(styles),
        styles=styles,
        weights=weights,
        as_document=content.as_document,
        flow=conv.flow,
        content=content,
        strength=params.strength,
        preserve_colors=params.preserve_colors,
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
