"""The Bot API methods: parameters in (query, JSON, form or multipart), Telegram's answers out.

Each method is an ``async def`` registered under its lowercase name (Telegram's method names are
case-insensitive). A method raises :class:`ApiError` for anything Telegram would refuse, with
Telegram's own wording, so a bot sees here what it would see there.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import aiohttp

from stylebot.telegram.entities import parse, utf16_len, with_detected
from stylebot.telegram.errors import ApiError, bad_request, conflict
from stylebot.telegram.state import (
    CAPTION_LIMIT,
    DOWNLOAD_LIMIT,
    TEXT_LIMIT,
    UPDATE_TYPES,
    Bot,
    CallbackQuery,
    Chat,
    Webhook,
    World,
    pulse,
)

log = logging.getLogger(__name__)

MAX_POLL_TIMEOUT = 50  # Telegram caps long polling a little under a minute
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
BUTTON_ACTIONS = {
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
}
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass
class Upload:
    data: bytes
    filename: str | None = None
    content_type: str | None = None


class Params:
    """One call's parameters; form values arrive as strings, JSON-valued ones as JSON text."""

    def __init__(self, values: dict[str, Any], uploads: dict[str, Upload] | None = None) -> None:
        self.values = values
        self.uploads = uploads or {}

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "") or name in self.uploads

    # The methods below are named after the types they return, so inside this class body the names
    # ``str``, ``int`` and ``bool`` mean these methods: annotations spell the types ``builtins.*``.
    @overload
    def str(self, name: builtins.str, *, required: Literal[True]) -> builtins.str: ...
    @overload
    def str(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None: ...
    def str(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        if isinstance(value, (dict, list)):
            raise bad_request(f'field "{name}" must be of type String')
        return str(value)

    @overload
    def int(self, name: builtins.str, *, required: Literal[True]) -> builtins.int: ...
    @overload
    def int(
        self, name: builtins.str, *, required: builtins.bool = False, default: builtins.int | None = None
    ) -> builtins.int | None: ...
    def int(
        self, name: builtins.str, *, required: builtins.bool = False, default: builtins.int | None = None
    ) -> builtins.int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return default
        if isinstance(value, bool):
            raise bad_request(f"invalid {name} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def bool(self, name: builtins.str) -> builtins.bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def json(self, name: builtins.str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            if value == "":
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value

    def file(self, value: Any, name: builtins.str) -> Upload | builtins.str:
        """An upload (multipart field or ``attach://``) or a ``file_id`` to resend."""
        if name in self.uploads and (value is None or value == ""):
            return self.uploads[name]
        if not isinstance(value, str) or not value:
            raise bad_request(f"there is no {name} in the request")
        if value.startswith("attach://"):
            upload = self.uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"file for {name} must be uploaded as attach:// multipart field")
            return upload
        if value.startswith(("http://", "https://")):
            # Fetching caller-chosen URLs is what real Telegram does; a local emulator should not.
            raise bad_request(
                "failed to get HTTP URL content: URL fetching is disabled in the local Telegram"
            )
        return value


Method = Callable[["BotApi", Bot, Params], Awaitable[Any]]
METHODS: dict[str, Method] = {}


def method(name: str) -> Callable[[Method], Method]:
    def register(func: Method) -> Method:
        METHODS[name.lower()] = func
        return func

    return register


class BotApi:
    def __init__(self, world: World) -> None:
        self.world = world
        self._http: aiohttp.ClientSession | None = None

    async def call(self, bot: Bot, name: str, params: Params) -> Any:
        bot.requests[name.lower()] += 1
        handler = METHODS.get(name.lower())
        if handler is None:
            raise ApiError(404, "Not Found")
        return await handler(self, bot, params)

    async def close(self) -> None:
        for bot in self.world.bots.values():
            if bot.webhook_task:
                bot.webhook_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await bot.webhook_task
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- shared pieces --------------------------------------------------------------------------
    def text_content(self, p: Params, field: str = "text") -> dict[str, Any]:
        text = p.str(field) or ""
        entities = p.json("entities")
        if entities is None:
            text, entities = parse(text, p.str("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        content: dict[str, Any] = {"text": text}
        entities = with_detected(text, entities)
        if entities:
            content["entities"] = entities
        return content

    def caption_content(self, caption: str | None, parse_mode: str | None, entities: Any) -> dict[str, Any]:
        if not caption:
            return {}
        if entities is None:
            caption, entities = parse(caption, parse_mode)
        if utf16_len(caption) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        content: dict[str, Any] = {"caption": caption} if caption else {}
        entities = with_detected(caption, entities)
        if entities:
            content["caption_entities"] = entities
        return content

    def markup(self, p: Params) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(inline keyboard for the message, reply-keyboard change for the chat)``."""
        markup = p.json("reply_markup")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            return _inline_keyboard(markup["inline_keyboard"]), None
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise bad_request("can't parse reply keyboard markup JSON object")
            return None, {"set": markup}
        if markup.get("remove_keyboard"):
            return None, {"set": None}
        return None, None

    def chat_for(self, bot: Bot, p: Params) -> Chat:
        if not p.has("chat_id"):
            raise bad_request("chat_id is empty")
        return self.world.chat_for_bot(bot, p.values["chat_id"])

    def send(
        self, bot: Bot, chat: Chat, p: Params, content: dict[str, Any], *, check_flood: bool = True
    ) -> dict:
        inline, keyboard = self.markup(p)
        reply = self.reply_to(chat, p)
        if check_flood:
            self.world.check_flood(chat)
        if reply is not None:
            content["reply_to_message"] = reply
        if inline:
            content["reply_markup"] = inline
        if p.bool("protect_content"):
            content["has_protected_content"] = True
        if keyboard is not None:
            chat.reply_keyboard = keyboard["set"]
        return self.world.add_message(chat, bot.user(), content)

    def reply_to(self, chat: Chat, p: Params) -> dict[str, Any] | None:
        params = p.json("reply_parameters") or {}
        message_id = params.get("message_id") if isinstance(params, dict) else None
        if message_id is None:
            message_id = p.int("reply_to_message_id")
        if message_id is None:
            return None
        original = chat.messages.get(int(message_id))
        if original is None:
            allow = p.bool("allow_sending_without_reply") or (
                isinstance(params, dict) and params.get("allow_sending_without_reply")
            )
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return {k: v for k, v in original.items() if k != "reply_to_message"}

    def own_message(self, bot: Bot, p: Params, *, verb: str = "edit") -> tuple[Chat, dict[str, Any]]:
        if p.has("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self.chat_for(bot, p)
        message_id = p.int("message_id", required=True)
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request(f"message to {verb} not found")
        if message["from"]["id"] != bot.id:
            raise bad_request("message can't be edited")
        return chat, message

    def apply_edit(
        self, chat: Chat, message: dict[str, Any], changes: dict[str, Any], removed: tuple
    ) -> dict:
        updated = {k: v for k, v in message.items() if k not in removed and k != "edit_date"}
        updated.update(changes)
        comparable = ("edit_date", "date")
        if {k: v for k, v in updated.items() if k not in comparable} == {
            k: v for k, v in message.items() if k not in comparable
        }:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are exactly the "
                "same as a current content and reply markup of the message"
            )
        updated["edit_date"] = int(time.time())
        chat.messages[message["message_id"]] = updated
        self.world.publish(chat, "edit", updated)
        return updated

    def media_content(self, kind: str, source: Upload | str) -> dict[str, Any]:
        world = self.world
        if isinstance(source, Upload):
            if kind == "photo":
                return {"photo": world.store_photo(source.data)}
            if kind == "sticker":
                return {"sticker": world.store_sticker(source.data, None)}
            return {"document": world.store_document(source.data, source.filename, source.content_type)}
        known = world.media.get(source)
        if known is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if known[0] != kind:
            raise bad_request("type of file mismatch")
        return {kind: known[1]}

    async def deliver_webhook(self, bot: Bot) -> None:
        """POST pending updates one at a time, in order, retrying with backoff until the bot says 2xx."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        delay = 0.1
        while bot.webhook is not None:
            webhook = bot.webhook
            if not bot.pending:
                await bot.changed.wait()
                continue
            update = bot.pending[0]
            headers = (
                {"X-Telegram-Bot-Api-Secret-Token": webhook.secret_token} if webhook.secret_token else {}
            )
            try:
                async with self._http.post(webhook.url, json=update, headers=headers) as response:
                    body = await response.read()
                    ok = 200 <= response.status < 300
                    if not ok:
                        raise RuntimeError(
                            f"Wrong response from the webhook: {response.status} {response.reason}"
                        )
                    content_type = response.content_type
            except Exception as exc:
                webhook.last_error_date = int(time.time())
                webhook.last_error_message = str(exc) or type(exc).__name__
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if bot.pending and bot.pending[0] is update:
                bot.pending.pop(0)
            await self._webhook_reply(bot, body, content_type)

    async def _webhook_reply(self, bot: Bot, body: bytes, content_type: str) -> None:
        """A bot may answer a webhook with one method call in the response body."""
        if content_type != "application/json" or not body.strip():
            return
        with contextlib.suppress(ValueError):
            payload = json.loads(body)
            if isinstance(payload, dict) and isinstance(payload.get("method"), str):
                name = payload.pop("method")
                with contextlib.suppress(ApiError):
                    await self.call(bot, name, Params(payload))


def _inline_keyboard(rows: Any) -> dict[str, Any] | None:
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request("can't parse inline keyboard markup JSON object")
    clean_rows = []
    for row in rows:
        clean_row = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request(
                    "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                )
            button = {k: v for k, v in button.items() if v is not None}
            actions = [k for k in button if k in BUTTON_ACTIONS]
            if len(actions) != 1:
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                    raise bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(r"^(https?|tg)://", str(button["url"])):
                raise bad_request(f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL")
            clean_row.append(button)
        if clean_row:
            clean_rows.append(clean_row)
    return {"inline_keyboard": clean_rows} if clean_rows else None


# --- identity and updates ---------------------------------------------------------------------
@method("getMe")
async def get_me(api: BotApi, bot: Bot, p: Params) -> dict:
    return bot.me()


@method("logOut")
async def log_out(api: BotApi, bot: Bot, p: Params) -> bool:
    return True


@method("close")
async def close(api: BotApi, bot: Bot, p: Params) -> bool:
    return True


@method("getUpdates")
async def get_updates(api: BotApi, bot: Bot, p: Params) -> list[dict]:
    if bot.webhook is not None:
        raise conflict(
            "can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first"
        )
    offset = p.int("offset")
    limit = min(max(p.int("limit", default=100) or 100, 1), 100)
    timeout = min(max(p.int("timeout", default=0) or 0, 0), MAX_POLL_TIMEOUT)
    allowed = p.json("allowed_updates")
    if isinstance(allowed, list):
        bot.allowed_updates = [t for t in allowed if t in UPDATE_TYPES] or None
        bot.pending = [u for u in bot.pending if bot.accepts(_update_type(u))]
    if offset is not None:
        api.world.confirm(bot, offset)
    bot.poll_generation += 1
    generation = bot.poll_generation
    pulse(bot)  # an older long poll still waiting ends with 409, as in Telegram
    deadline = time.monotonic() + timeout
    while not bot.pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        event = bot.changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)
        if bot.poll_generation != generation:
            raise conflict(
                "terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        if bot.webhook is not None:
            break
    return bot.pending[:limit]


def _update_type(update: dict[str, Any]) -> str:
    return next(k for k in update if k != "update_id")


@method("setWebhook")
async def set_webhook(api: BotApi, bot: Bot, p: Params) -> Any:
    url = p.str("url") or ""
    if not url:
        return await delete_webhook(api, bot, p)
    if not url.startswith(("http://", "https://")):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = p.str("secret_token")
    if secret is not None and not SECRET_RE.match(secret):
        raise bad_request("secret token contains unallowed characters")
    allowed = p.json("allowed_updates")
    if p.bool("drop_pending_updates"):
        bot.pending.clear()
    bot.webhook = Webhook(
        url=url,
        secret_token=secret,
        allowed_updates=[t for t in allowed if t in UPDATE_TYPES] if isinstance(allowed, list) else None,
        max_connections=p.int("max_connections", default=40) or 40,
    )
    bot.poll_generation += 1
    pulse(bot)
    if bot.webhook_task is None or bot.webhook_task.done():
        bot.webhook_task = asyncio.get_running_loop().create_task(api.deliver_webhook(bot))
    return Described(True, "Webhook was set")


@method("deleteWebhook")
async def delete_webhook(api: BotApi, bot: Bot, p: Params) -> Any:
    had = bot.webhook is not None
    bot.webhook = None
    if p.bool("drop_pending_updates"):
        bot.pending.clear()
    if bot.webhook_task is not None:
        bot.webhook_task.cancel()
        bot.webhook_task = None
    pulse(bot)
    return Described(True, "Webhook was deleted" if had else "Webhook is already deleted")


@method("getWebhookInfo")
async def get_webhook_info(api: BotApi, bot: Bot, p: Params) -> dict:
    webhook = bot.webhook
    info: dict[str, Any] = {
        "url": webhook.url if webhook else "",
        "has_custom_certificate": False,
        "pending_update_count": len(bot.pending),
    }
    if webhook:
        info["max_connections"] = webhook.max_connections
        info["ip_address"] = "127.0.0.1"
        if webhook.allowed_updates:
            info["allowed_updates"] = webhook.allowed_updates
        if webhook.last_error_date:
            info["last_error_date"] = webhook.last_error_date
            info["last_error_message"] = webhook.last_error_message
    return info


@dataclass
class Described:
    """A result that Telegram answers with a ``description`` beside it."""

    result: Any
    description: str


# --- sending ----------------------------------------------------------------------------------
@method("sendMessage")
async def send_message(api: BotApi, bot: Bot, p: Params) -> dict:
    chat = api.chat_for(bot, p)
    return api.send(bot, chat, p, api.text_content(p))


def _media_send(kind: str) -> Method:
    async def send_media(api: BotApi, bot: Bot, p: Params) -> dict:
        chat = api.chat_for(bot, p)
        caption = api.caption_content(p.str("caption"), p.str("parse_mode"), p.json("caption_entities"))
        api.world.check_flood(chat)
        content = api.media_content(kind, p.file(p.values.get(kind), kind))
        if kind == "sticker":
            emoji = p.str("emoji")
            if emoji:
                content["sticker"] = {**content["sticker"], "emoji": emoji}
            caption = {}
        if p.bool("has_spoiler") and kind == "photo":
            content["has_media_spoiler"] = True
        if p.bool("show_caption_above_media"):
            content["show_caption_above_media"] = True
        return api.send(bot, chat, p, {**content, **caption}, check_flood=False)

    return send_media


METHODS["sendphoto"] = _media_send("photo")
METHODS["senddocument"] = _media_send("document")
METHODS["sendsticker"] = _media_send("sticker")


@method("sendMediaGroup")
async def send_media_group(api: BotApi, bot: Bot, p: Params) -> list[dict]:
    chat = api.chat_for(bot, p)
    media = p.json("media")
    if not isinstance(media, list) or not all(isinstance(m, dict) for m in media):
        raise bad_request("can't parse media JSON object")
    if not 2 <= len(media) <= 10:
        raise bad_request("media must include 2-10 items")
    kinds = {m.get("type") for m in media}
    if not kinds <= {"photo", "video", "document", "audio"}:
        raise bad_request("wrong media type in the group")
    if len(kinds) > 1 and not kinds <= {"photo", "video"}:
        raise bad_request("documents and audio can't be mixed with other media types")
    captions = [
        api.caption_content(m.get("caption"), m.get("parse_mode"), m.get("caption_entities")) for m in media
    ]
    reply = api.reply_to(chat, p)
    api.world.check_flood(chat)
    contents = []
    for item in media:
        kind = item["type"]
        if kind not in ("photo", "document"):
            raise bad_request(f"{kind} is not supported by the local Telegram")
        contents.append(api.media_content(kind, p.file(item.get("media"), "media")))
    group_id = str(secrets.randbelow(10**18) + 10**17)
    messages = []
    for content, caption in zip(contents, captions, strict=True):
        message = {**content, **caption, "media_group_id": group_id}
        if reply is not None:
            message["reply_to_message"] = reply
        messages.append(api.world.add_message(chat, bot.user(), message))
    return messages


@method("sendChatAction")
async def send_chat_action(api: BotApi, bot: Bot, p: Params) -> bool:
    chat = api.chat_for(bot, p)
    action = p.str("action", required=True)
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    chat.last_action = {"action": action, "until": time.time() + 5}
    api.world.publish(chat, "action", {"action": action})
    return True


@method("copyMessage")
async def copy_message(api: BotApi, bot: Bot, p: Params) -> dict:
    chat = api.chat_for(bot, p)
    source = _source_message(api, bot, p)
    content = {k: v for k, v in source.items() if k in _COPYABLE}
    if p.has("caption") and any(k in content for k in ("photo", "document")):
        content.pop("caption_entities", None)
        content.update(api.caption_content(p.str("caption"), p.str("parse_mode"), p.json("caption_entities")))
    message = api.send(bot, chat, p, content)
    return {"message_id": message["message_id"]}


@method("forwardMessage")
async def forward_message(api: BotApi, bot: Bot, p: Params) -> dict:
    chat = api.chat_for(bot, p)
    source = _source_message(api, bot, p)
    content = {k: v for k, v in source.items() if k in _COPYABLE and k != "reply_markup"}
    content["forward_origin"] = {"type": "user", "sender_user": source["from"], "date": source["date"]}
    api.world.check_flood(chat)
    return api.world.add_message(chat, bot.user(), content)


_COPYABLE = (
    "text",
    "entities",
    "photo",
    "document",
    "sticker",
    "caption",
    "caption_entities",
    "reply_markup",
)


def _source_message(api: BotApi, bot: Bot, p: Params) -> dict[str, Any]:
    if not p.has("from_chat_id"):
        raise bad_request("from_chat_id is empty")
    source_chat = api.world.chat_for_bot(bot, p.values["from_chat_id"])
    message = source_chat.messages.get(p.int("message_id", required=True))
    if message is None:
        raise bad_request("message to copy not found")
    return message


# --- editing and deleting ---------------------------------------------------------------------
@method("editMessageText")
async def edit_message_text(api: BotApi, bot: Bot, p: Params) -> dict:
    chat, message = api.own_message(bot, p)
    if "text" not in message:
        raise bad_request("there is no text in the message to edit")
    content = api.text_content(p)
    inline, _ = api.markup(p)
    changes = {**content, **({"reply_markup": inline} if inline else {})}
    return api.apply_edit(chat, message, changes, ("text", "entities", "reply_markup"))


@method("editMessageCaption")
async def edit_message_caption(api: BotApi, bot: Bot, p: Params) -> dict:
    chat, message = api.own_message(bot, p)
    if not any(k in message for k in ("photo", "document")):
        raise bad_request("there is no caption in the message to edit")
    caption = api.caption_content(p.str("caption"), p.str("parse_mode"), p.json("caption_entities"))
    inline, _ = api.markup(p)
    changes = {**caption, **({"reply_markup": inline} if inline else {})}
    return api.apply_edit(chat, message, changes, ("caption", "caption_entities", "reply_markup"))


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(api: BotApi, bot: Bot, p: Params) -> dict:
    chat, message = api.own_message(bot, p)
    inline, _ = api.markup(p)
    return api.apply_edit(chat, message, {"reply_markup": inline} if inline else {}, ("reply_markup",))


@method("editMessageMedia")
async def edit_message_media(api: BotApi, bot: Bot, p: Params) -> dict:
    chat, message = api.own_message(bot, p)
    if not any(k in message for k in ("photo", "document")):
        raise bad_request("there is no media in the message to edit")
    media = p.json("media")
    if not isinstance(media, dict) or media.get("type") not in ("photo", "document"):
        raise bad_request("can't parse InputMedia: media type is not supported here")
    caption = api.caption_content(
        media.get("caption"), media.get("parse_mode"), media.get("caption_entities")
    )
    content = api.media_content(media["type"], p.file(media.get("media"), "media"))
    inline, _ = api.markup(p)
    changes = {**content, **caption, **({"reply_markup": inline} if inline else {})}
    return api.apply_edit(
        chat, message, changes, ("photo", "document", "caption", "caption_entities", "reply_markup")
    )


@method("deleteMessage")
async def delete_message(api: BotApi, bot: Bot, p: Params) -> bool:
    chat = api.chat_for(bot, p)
    message_id = p.int("message_id", required=True)
    if chat.messages.pop(message_id, None) is None:
        raise bad_request("message to delete not found")
    api.world.publish(chat, "delete", {"message_id": message_id})
    return True


@method("deleteMessages")
async def delete_messages(api: BotApi, bot: Bot, p: Params) -> bool:
    chat = api.chat_for(bot, p)
    ids = p.json("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise bad_request("message_ids must be a list of 1-100 identifiers")
    for message_id in ids:
        if chat.messages.pop(int(message_id), None) is not None:
            api.world.publish(chat, "delete", {"message_id": int(message_id)})
    return True


# --- callbacks, files, commands ---------------------------------------------------------------
@method("answerCallbackQuery")
async def answer_callback_query(api: BotApi, bot: Bot, p: Params) -> bool:
    query_id = p.str("callback_query_id", required=True)
    query: CallbackQuery | None = bot.callbacks.get(query_id)
    if query is None or query.answer is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = p.str("text") or ""
    if len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answer = {"callback_query_id": query.id, "text": text, "show_alert": p.bool("show_alert")}
    if p.str("url"):
        query.answer["url"] = p.str("url")
    chat = api.world.chats.get(query.chat_key)
    if chat is not None:
        api.world.publish(chat, "callback_answer", query.answer)
    return True


@method("getFile")
async def get_file(api: BotApi, bot: Bot, p: Params) -> dict:
    stored = api.world.get_file(p.str("file_id", required=True))
    if stored.size > DOWNLOAD_LIMIT:
        raise bad_request("file is too big")
    return stored.as_file()


def _commands_key(p: Params) -> tuple[str, str]:
    scope = p.json("scope")
    scope_key = json.dumps(scope, sort_keys=True) if isinstance(scope, dict) else '{"type": "default"}'
    return scope_key, p.str("language_code") or ""


@method("setMyCommands")
async def set_my_commands(api: BotApi, bot: Bot, p: Params) -> bool:
    commands = p.json("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad_request("can't parse commands JSON object")
    clean = []
    for command in commands:
        if not isinstance(command, dict):
            raise bad_request("can't parse BotCommand")
        name = str(command.get("command", "")).removeprefix("/")
        description = str(command.get("description", ""))
        if not COMMAND_RE.match(name):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(description) <= 256:
            raise bad_request("command description must be 1-256 characters")
        clean.append({"command": name, "description": description})
    bot.commands[_commands_key(p)] = clean
    return True


@method("getMyCommands")
async def get_my_commands(api: BotApi, bot: Bot, p: Params) -> list[dict]:
    return bot.commands.get(_commands_key(p), [])


@method("deleteMyCommands")
async def delete_my_commands(api: BotApi, bot: Bot, p: Params) -> bool:
    bot.commands.pop(_commands_key(p), None)
    return True
