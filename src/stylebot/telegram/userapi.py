"""The user side: act as Telegram users over HTTP, read chats, and watch them live.

Routes (JSON unless said; ``bot`` query parameter picks the bot by id, default: the first token's bot)::

    GET  /api/bots                          bots seen: id, username, request counts, pending updates
    GET  /api/users            POST /api/users {id?, first_name, last_name?, username?, language_code?}
    POST /api/chats/{user_id}/messages      JSON {text, reply_to_message_id?}, or multipart with
                                            kind=photo|document|sticker, file (repeat for an album),
                                            caption?, emoji?  -> {"messages": [...]}
    POST /api/chats/{user_id}/press         {message_id, callback_data} -> the callback query
    POST /api/chats/{user_id}/block         {blocked: bool}
    GET  /api/chats/{user_id}               {messages, reply_keyboard, callback_answers, commands, version}
    GET  /api/chats/{user_id}/wait?version=N&timeout=S   returns once the chat's version passes N
    GET  /api/chats/{user_id}/events        server-sent events: snapshot, message, edit, delete, action, ...
    GET  /api/files/{file_id}               the file's bytes
    POST /api/reset                         forget everything
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from stylebot.telegram.botapi import BotApi
from stylebot.telegram.entities import detect_entities, utf16_len
from stylebot.telegram.errors import ApiError, bad_request
from stylebot.telegram.state import CAPTION_LIMIT, TEXT_LIMIT, Bot, CallbackQuery, Chat, World

SSE_HEARTBEAT_S = 15.0
MAX_WAIT_S = 60.0
USER_UPLOAD_LIMIT = 50 * 2**20


class UserApi:
    def __init__(self, world: World, api: BotApi, default_bot: Bot) -> None:
        self.world = world
        self.api = api
        self.default_bot = default_bot

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/bots", self.bots),
            web.get("/api/users", self.list_users),
            web.post("/api/users", self.create_user),
            web.post("/api/chats/{user_id}/messages", self.send),
            web.post("/api/chats/{user_id}/press", self.press),
            web.post("/api/chats/{user_id}/block", self.block),
            web.get("/api/chats/{user_id}", self.history),
            web.get("/api/chats/{user_id}/wait", self.wait),
            web.get("/api/chats/{user_id}/events", self.events),
            web.get("/api/files/{file_id}", self.download),
            web.post("/api/reset", self.reset),
        ]

    # --- helpers ------------------------------------------------------------------------------
    def bot(self, request: web.Request) -> Bot:
        raw = request.query.get("bot")
        if not raw:
            return self.default_bot
        try:
            return self.world.bots[int(raw)]
        except (ValueError, KeyError):
            raise ApiError(404, "Not Found: no such bot") from None

    def chat(self, request: web.Request) -> tuple[Bot, Chat]:
        try:
            user_id = int(request.match_info["user_id"])
        except ValueError:
            raise bad_request("user_id must be an integer") from None
        bot = self.bot(request)
        return bot, self.world.chat(bot.id, user_id)

    def state(self, bot: Bot, chat: Chat) -> dict[str, Any]:
        answers = {
            q.id: q.answer for q in bot.callbacks.values() if q.chat_key == (bot.id, chat.id) and q.answer
        }
        action = chat.last_action if chat.last_action and chat.last_action["until"] > time.time() else None
        return {
            "bot": bot.user(),
            "user": chat.user,
            "messages": list(chat.messages.values()),
            "reply_keyboard": chat.reply_keyboard,
            "callback_answers": answers,
            "commands": bot.commands.get(('{"type": "default"}', chat.user.get("language_code", "")))
            or bot.commands.get(('{"type": "default"}', ""), []),
            "action": action and action["action"],
            "blocked": chat.blocked,
            "version": chat.version,
        }

    def post_from_user(self, bot: Bot, chat: Chat, content: dict[str, Any]) -> dict[str, Any]:
        if chat.blocked:
            self._set_blocked(bot, chat, False)
        chat.started = True
        message = self.world.add_message(chat, chat.user, content)
        self.world.enqueue(bot, "message", message)
        return message

    def _set_blocked(self, bot: Bot, chat: Chat, blocked: bool) -> None:
        if chat.blocked == blocked:
            return
        chat.blocked = blocked
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        member_old: dict[str, Any] = {"status": old, "user": bot.user()}
        member_new: dict[str, Any] = {"status": new, "user": bot.user()}
        for member in (member_old, member_new):
            if member["status"] == "kicked":
                member["until_date"] = 0
        self.world.enqueue(
            bot,
            "my_chat_member",
            {
                "chat": chat.as_chat(),
                "from": chat.user,
                "date": int(time.time()),
                "old_chat_member": member_old,
                "new_chat_member": member_new,
            },
        )
        self.world.publish(chat, "blocked", {"blocked": blocked})

    # --- routes -------------------------------------------------------------------------------
    async def bots(self, request: web.Request) -> web.Response:
        return _ok(
            [
                {
                    **bot.user(),
                    "pending_updates": len(bot.pending),
                    "webhook": bool(bot.webhook),
                    "requests": dict(bot.requests),
                    "default": bot is self.default_bot,
                }
                for bot in self.world.bots.values()
            ]
        )

    async def list_users(self, request: web.Request) -> web.Response:
        return _ok(list(self.world.users.values()))

    async def create_user(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        return _ok(self.world.upsert_user(body))

    async def send(self, request: web.Request) -> web.Response:
        bot, chat = self.chat(request)
        if request.content_type == "multipart/form-data":
            return _ok({"messages": await self._send_files(request, bot, chat)})
        body = await _json_body(request)
        text = str(body.get("text") or "")
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        content: dict[str, Any] = {"text": text}
        entities = detect_entities(text)
        if entities:
            content["entities"] = entities
        reply_to = body.get("reply_to_message_id")
        if reply_to is not None:
            original = chat.messages.get(int(reply_to))
            if original is None:
                raise bad_request("message to be replied not found")
            content["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        return _ok({"messages": [self.post_from_user(bot, chat, content)]})

    async def _send_files(self, request: web.Request, bot: Bot, chat: Chat) -> list[dict[str, Any]]:
        form = await request.post()
        kind = str(form.get("kind") or "photo")
        if kind not in ("photo", "document", "sticker", "animation"):
            raise bad_request("kind must be photo, document, sticker or animation")
        uploads = [v for k, v in form.items() if k == "file" and isinstance(v, FileField)]
        if not uploads:
            raise bad_request("no file in the request")
        if len(uploads) > 10 or (kind in ("sticker", "animation") and len(uploads) > 1):
            raise bad_request("an album holds 2-10 files; a sticker or an animation is one file")
        caption = str(form.get("caption") or "")
        if utf16_len(caption) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        contents: list[dict[str, Any]] = []
        for upload in uploads:
            data = upload.file.read()
            if kind == "photo":
                contents.append({"photo": self.world.store_photo(data)})
            elif kind == "document":
                contents.append(
                    {"document": self.world.store_document(data, upload.filename, upload.content_type)}
                )
            elif kind == "animation":
                animation = self.world.store_animation(data, upload.filename, upload.content_type)
                # As Telegram does: an animation message also carries it as a document.
                contents.append({"animation": animation, "document": dict(animation)})
            else:
                contents.append(
                    {"sticker": self.world.store_sticker(data, str(form.get("emoji") or "") or None)}
                )
        if caption and kind != "sticker":
            contents[0]["caption"] = caption
            entities = detect_entities(caption)
            if entities:
                contents[0]["caption_entities"] = entities
        if len(contents) > 1:
            group_id = str(secrets.randbelow(10**18) + 10**17)
            for content in contents:
                content["media_group_id"] = group_id
        return [self.post_from_user(bot, chat, content) for content in contents]

    async def press(self, request: web.Request) -> web.Response:
        bot, chat = self.chat(request)
        body = await _json_body(request)
        try:
            message_id = int(body["message_id"])
        except (KeyError, TypeError, ValueError):
            raise bad_request("message_id must be an integer") from None
        data = body.get("callback_data")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message not found")
        buttons = [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
        if not any(b.get("callback_data") == data for b in buttons):
            raise bad_request("the message has no button with this callback_data")
        query_id = str(secrets.randbits(63))
        bot.callbacks[query_id] = CallbackQuery(
            id=query_id,
            chat_key=(bot.id, chat.id),
            message_id=message_id,
            data=str(data),
            created=time.time(),
        )
        query = {
            "id": query_id,
            "from": chat.user,
            "message": message,
            "chat_instance": chat.chat_instance,
            "data": data,
        }
        chat.started = True
        self.world.enqueue(bot, "callback_query", query)
        return _ok(query)

    async def block(self, request: web.Request) -> web.Response:
        bot, chat = self.chat(request)
        body = await _json_body(request)
        self._set_blocked(bot, chat, bool(body.get("blocked", True)))
        return _ok(True)

    async def history(self, request: web.Request) -> web.Response:
        bot, chat = self.chat(request)
        return _ok(self.state(bot, chat))

    async def wait(self, request: web.Request) -> web.Response:
        bot, chat = self.chat(request)
        try:
            version = int(request.query.get("version", "0"))
            timeout = min(max(float(request.query.get("timeout", "30")), 0.0), MAX_WAIT_S)
        except ValueError:
            raise bad_request("version and timeout must be numbers") from None
        deadline = time.monotonic() + timeout
        while chat.version <= version and (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(chat.changed.wait(), remaining)
            if self.world.chats.get((bot.id, chat.id)) is not chat:
                break  # reset
        return _ok({"version": chat.version})

    async def events(self, request: web.Request) -> web.StreamResponse:
        bot, chat = self.chat(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        chat.subscribers.add(queue)
        try:
            await _sse(response, "snapshot", self.state(bot, chat))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await _sse(response, event["type"], {**event["data"], "version": event["version"]})
                if event["type"] == "reset":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            chat.subscribers.discard(queue)
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        stored = self.world.files.get(request.match_info["file_id"])
        if stored is None:
            raise ApiError(404, "Not Found")
        headers = {"Cache-Control": "private, max-age=3600"}
        if stored.file_name:
            headers["Content-Disposition"] = f"inline; filename*=UTF-8''{_quote(stored.file_name)}"
        return web.Response(
            body=stored.path.read_bytes(),
            content_type=stored.mime_type
            or ("image/jpeg" if stored.file_path.endswith(".jpg") else "application/octet-stream"),
            headers=headers,
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.world.reset()
        return _ok(True)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


async def _sse(response: web.StreamResponse, event: str, data: Any) -> None:
    payload = json.dumps(data, ensure_ascii=False)
    await response.write(f"event: {event}\ndata: {payload}\n\n".encode())


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _ok(result: Any) -> web.Response:
    return web.json_response(
        {"ok": True, "result": result}, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )
