"""An ordinary aiogram 3 echo bot, unmodified but for the API server it is pointed at.

- text: echoed back (``/start`` answers with an inline keyboard; ``/count`` edits its own message;
  ``/album`` sends a media group; ``/html`` sends formatted text)
- photo: downloaded and sent back as a new upload, captioned with its size
- document: downloaded and sent back under the same file name
- sticker: sent back by file_id
- button ``ping``: answered with a toast, and the message edited to "Pong!"
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from PIL import Image


def make_bot(base_url: str, token: str) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(base_url))
    return Bot(token, session=session)


def build_dispatcher() -> Dispatcher:
    router = Router(name="echo")
    router.message.register(start, CommandStart())
    router.message.register(count, Command("count"))
    router.message.register(album, Command("album"))
    router.message.register(html, Command("html"))
    router.callback_query.register(ping, F.data == "ping")
    router.message.register(echo_text, F.text)
    router.message.register(echo_photo, F.photo)
    router.message.register(echo_document, F.document)
    router.message.register(echo_sticker, F.sticker)
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


def tiny_png(color: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


PING_KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="Ping", callback_data="ping")]]
)


async def start(message: Message) -> None:
    await message.answer("Hello! Press the button.", reply_markup=PING_KEYBOARD)


async def count(message: Message) -> None:
    sent = await message.answer("counting 1")
    await sent.edit_text("counting 2")


async def album(message: Message) -> None:
    media = [
        InputMediaPhoto(media=BufferedInputFile(tiny_png((200, 0, 0)), "red.png"), caption="two photos"),
        InputMediaPhoto(media=BufferedInputFile(tiny_png((0, 0, 200)), "blue.png")),
    ]
    await message.answer_media_group(media)


async def html(message: Message) -> None:
    await message.answer("<b>bold</b>, <i>italic</i> and <code>code</code>", parse_mode="HTML")


async def ping(query: CallbackQuery) -> None:
    await query.answer("pong")
    assert query.message is not None
    await query.message.edit_text("Pong!")  # type: ignore[union-attr]


async def echo_text(message: Message) -> None:
    await message.answer(message.text or "")


async def echo_photo(message: Message, bot: Bot) -> None:
    largest = message.photo[-1]  # type: ignore[index]
    data = await bot.download(largest.file_id)
    assert data is not None
    await message.answer_photo(
        BufferedInputFile(data.read(), "echo.jpg"), caption=f"photo {largest.width}x{largest.height}"
    )


async def echo_document(message: Message, bot: Bot) -> None:
    document = message.document
    assert document is not None
    data = await bot.download(document.file_id)
    assert data is not None
    await message.answer_document(
        BufferedInputFile(data.read(), document.file_name or "file"), caption=document.mime_type
    )


async def echo_sticker(message: Message) -> None:
    await message.answer_sticker(message.sticker.file_id)  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def polling(bot: Bot, **kwargs: Any) -> AsyncIterator[None]:
    dispatcher = build_dispatcher()
    task = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False, **kwargs)
    )
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            await dispatcher.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
