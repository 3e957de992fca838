"""A local Telegram: Bot API emulator, user-side API and web chat page. Knows nothing of style transfer.

Bot side: ``{base_url}/bot<token>/<method>`` and ``{base_url}/file/bot<token>/<file_path>``, so
aiogram connects with ``TelegramAPIServer.from_base(base_url)`` and python-telegram-bot with
``base_url=f"{base_url}/bot", base_file_url=f"{base_url}/file/bot"``. User side: ``/api/...``
(see :mod:`stylebot.telegram.userapi`) and the web chat page at ``/``.

::

    async with LocalTelegram() as tg:                       # or: with LocalTelegram() as tg (thread)
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
        user = UserClient(tg.base_url, user_id=42)
        sent = await user.send_text("hi")
        reply = await user.wait_for(lambda m: m.get("text") == "hi", after_message_id=sent["message_id"])
        await user.press(reply["message_id"], "data")      # -> CallbackQuery with chat_instance
        await user.history()                               # messages, edits applied
        await user.download(reply["photo"][-1]["file_id"])
        tg.requests()["getupdates"]                        # calls per method, for busy-loop checks
        tg.reset()

``LocalTelegram(tokens=[...])`` accepts only those tokens; by default any well-formed token is
accepted and ``tg.token`` (a fresh random token, see ``make_token``) is the bot the web chat and
``UserClient`` talk to. ``flood_limit=FloodLimit(per_second, burst)`` turns on 429 per chat.
"""

from stylebot.telegram.client import UserClient, UserClientError
from stylebot.telegram.errors import ApiError
from stylebot.telegram.server import LocalTelegram, make_token
from stylebot.telegram.state import FloodLimit

__all__ = [
    "ApiError",
    "FloodLimit",
    "LocalTelegram",
    "UserClient",
    "UserClientError",
    "make_token",
]
