"""An ordinary python-telegram-bot echo bot, unmodified but for the API server it is pointed at."""

from __future__ import annotations

from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ping", callback_data="ping")]])
    await update.effective_message.reply_text("Hello from PTB", reply_markup=keyboard)


async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer("pong")
    await update.callback_query.edit_message_text("Pong from PTB")


async def echo_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(update.effective_message.text)


async def echo_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    largest = update.effective_message.photo[-1]
    data = await (await largest.get_file()).download_as_bytearray()
    await update.effective_message.reply_photo(bytes(data), caption=f"photo {largest.width}x{largest.height}")


async def echo_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    document = update.effective_message.document
    data = await (await document.get_file()).download_as_bytearray()
    await update.effective_message.reply_document(bytes(data), filename=document.file_name)


def build_application(base_url: str, token: str) -> Application:
    application = (
        Application.builder()
        .token(token)
        .base_url(f"{base_url}/bot")
        .base_file_url(f"{base_url}/file/bot")
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(ping, pattern="^ping$"))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo_text))
    application.add_handler(MessageHandler(filters.PHOTO, echo_photo))
    application.add_handler(MessageHandler(filters.Document.ALL, echo_document))
    return application
