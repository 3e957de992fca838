"""/start, /help, /cancel, /styles."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from stylebot.bot.conversation import Conversation
from stylebot.bot.handlers.common import Services, reset_conversation
from stylebot.bot.styles import style_title
from stylebot.jobs.spec import MAX_STYLES, SHEET_CYCLEGAN_NUMBERS
from stylebot.ml.names import GALLERY_STYLES

router = Router(name="commands")


@router.message(CommandStart())
async def start(message: Message, state: FSMContext, services: Services) -> None:
    assert message.bot is not None
    await reset_conversation(message.bot, message.chat.id, state)
    name = message.from_user.first_name if message.from_user else ""
    running = await services.runner.running_for(message.chat.id)
    if running is not None:
        await message.answer(
            _(
                "Hi, {name}! Your stylization is still running: its progress message is above, and the "
                "result will come here. To stop it, press Cancel under that message or send /cancel."
            ).format(name=name)
        )
        return
    await message.answer(
        _(
            "Hi, {name}! I restyle photos: in the style of pictures you send me, "
            "or like a famous painter.\n\n"
            "Send me a photo to begin. /help explains more."
        ).format(name=name)
    )


@router.message(Command("help"))
async def help_command(message: Message, services: Services) -> None:
    mb = services.settings.max_upload_bytes // 2**20
    await message.answer(
        _(
            "How it works:\n"
            "1. Send a photo (as a photo, or as a file to get the result back as a file too).\n"
            "2. Choose “My style images” and send 1–{max} pictures whose style I should copy, "
            "or pick one of the pretrained styles.\n"
            "3. Watch the progress; the result arrives here.\n\n"
            "Tip: send an album and I take the first image as your photo and the rest as style images.\n\n"
            "Limits: images up to {mb} MB, one stylization at a time.\n\n"
            "Commands:\n/start: start over\n/cancel: stop what is going on\n"
            "/settings: strength, colours, result size, language\n/styles: the pretrained styles\n"
            "/help: this text"
        ).format(max=MAX_STYLES, mb=mb)
    )


@router.message(Command("cancel"))
async def cancel(message: Message, state: FSMContext, services: Services) -> None:
    assert message.bot is not None
    conv = await Conversation.load(state)
    had_state = await state.get_state() is not None or conv.content is not None
    cancelled_job = False
    for rec in await services.runner.pending.for_chat(message.chat.id):
        cancelled_job = await services.runner.cancel(rec.job_id, chat_id=message.chat.id) or cancelled_job
    await reset_conversation(message.bot, message.chat.id, state)
    if cancelled_job:
        await message.answer(
            _("Stopped your stylization and cleared everything. Send a new photo whenever you like.")
        )
    elif had_state:
        await message.answer(_("Cancelled. Send a new photo whenever you like."))
    else:
        await message.answer(_("Nothing to cancel. Send me a photo to begin."))


@router.message(Command("styles"))
async def styles_command(message: Message, services: Services) -> None:
    lines = [
        _("Pretrained styles: send a photo and I show it in each of them, numbered; pick one by its number."),
        _("• {n} gallery styles (numbers 0–{last})").format(n=GALLERY_STYLES, last=GALLERY_STYLES - 1),
    ]
    for style in await services.catalog.list():
        if style.installed:
            number = SHEET_CYCLEGAN_NUMBERS[style.name]
            lines.append(f"• {number} {style_title(style.name)}")
    lines.append("")
    lines.append(
        _("Or use your own: choose “My style images” and send 1–{max} pictures.").format(max=MAX_STYLES)
    )
    await message.answer("\n".join(lines))
