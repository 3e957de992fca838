"""``UserClient``: one simulated Telegram user, over the emulator's user API (see :mod:`.userapi`)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import httpx

Predicate = Callable[[dict[str, Any]], bool]


class UserClientError(RuntimeError):
    pass


class UserClient:
    """Acts as one user in a private chat with a bot: send, press buttons, read, download, wait.

    ``bot_id`` picks the bot (default: the emulator's default bot). ``http`` lets many clients share
    one connection pool. Messages are Telegram ``Message`` dicts; a bot's message has
    ``m["from"]["is_bot"]`` true.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user_id: int,
        first_name: str = "Test",
        language_code: str = "en",
        username: str | None = None,
        last_name: str | None = None,
        bot_id: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = {
            "id": user_id,
            "first_name": first_name,
            "language_code": language_code,
            "username": username,
            "last_name": last_name,
        }
        self.user_id = user_id
        self.bot_id = bot_id
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(90.0, connect=10.0))
        self._registered = False

    async def __aenter__(self) -> UserClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # --- plumbing -----------------------------------------------------------------------------
    @property
    def _chat_url(self) -> str:
        return f"{self.base_url}/api/chats/{self.user_id}"

    @property
    def _params(self) -> dict[str, Any]:
        return {"bot": self.bot_id} if self.bot_id is not None else {}

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        if not self._registered:
            self._registered = True
            await self._request("POST", f"{self.base_url}/api/users", json=self.user)
        params = {**self._params, **kwargs.pop("params", {})}
        response = await self.http.request(method, url, params=params, **kwargs)
        if response.status_code == 404 and "no such user" in response.text and "files" not in kwargs:
            # The emulator was reset since this client registered its user: register again, retry once.
            await self.http.post(f"{self.base_url}/api/users", json=self.user)
            response = await self.http.request(method, url, params=params, **kwargs)
        try:
            body = response.json()
        except ValueError:
            raise UserClientError(f"{response.status_code}: {response.text[:200]}") from None
        if not body.get("ok"):
            raise UserClientError(body.get("description") or str(body))
        return body["result"]

    async def _send_files(self, kind: str, files: list[tuple[str, bytes, str]], **fields: str) -> list[dict]:
        multipart = [("file", (name, io.BytesIO(data), mime)) for name, data, mime in files]
        data = {"kind": kind, **{k: v for k, v in fields.items() if v}}
        result = await self._request("POST", f"{self._chat_url}/messages", data=data, files=multipart)
        return result["messages"]

    # --- acting -------------------------------------------------------------------------------
    async def send_text(self, text: str, *, reply_to_message_id: int | None = None) -> dict:
        body: dict[str, Any] = {"text": text}
        if reply_to_message_id is not None:
            body["reply_to_message_id"] = reply_to_message_id
        return (await self._request("POST", f"{self._chat_url}/messages", json=body))["messages"][0]

    async def send_command(self, command: str, args: str = "") -> dict:
        text = "/" + command.removeprefix("/")
        return await self.send_text(f"{text} {args}".strip())

    async def send_photo(self, data: bytes, *, caption: str | None = None) -> dict:
        return (await self._send_files("photo", [("photo.jpg", data, "image/jpeg")], caption=caption or ""))[
            0
        ]

    async def send_document(
        self,
        data: bytes,
        *,
        filename: str,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
    ) -> dict:
        files = [(filename, data, mime_type)]
        return (await self._send_files("document", files, caption=caption or ""))[0]

    async def send_animation(
        self, data: bytes, *, filename: str = "animation.gif", mime_type: str = "image/gif"
    ) -> dict:
        """A GIF (or a short video) as Telegram's clients send one: an ``animation`` message."""
        return (await self._send_files("animation", [(filename, data, mime_type)], caption=""))[0]

    async def send_album(self, items: list[bytes], *, caption: str | None = None) -> list[dict]:
        files = [(f"photo{i}.jpg", data, "image/jpeg") for i, data in enumerate(items)]
        return await self._send_files("photo", files, caption=caption or "")

    async def send_sticker(self, data: bytes | None = None, *, emoji: str = "🙂") -> dict:
        """A sticker; without ``data`` a small generated WebP picture."""
        if data is None:
            from PIL import Image

            buffer = io.BytesIO()
            Image.new("RGBA", (128, 128), (255, 200, 0, 255)).save(buffer, "WEBP")
            data = buffer.getvalue()
        return (await self._send_files("sticker", [("sticker.webp", data, "image/webp")], emoji=emoji))[0]

    async def press(self, message_id: int, callback_data: str) -> dict:
        """Press an inline button; returns the ``CallbackQuery`` sent to the bot (with ``chat_instance``)."""
        body = {"message_id": message_id, "callback_data": callback_data}
        return await self._request("POST", f"{self._chat_url}/press", json=body)

    async def block(self, blocked: bool = True) -> None:
        await self._request("POST", f"{self._chat_url}/block", json={"blocked": blocked})

    # --- reading ------------------------------------------------------------------------------
    async def chat_state(self) -> dict[str, Any]:
        """Messages, reply keyboard, callback answers, bot commands and the chat's version number."""
        return await self._request("GET", self._chat_url)

    async def history(self) -> list[dict]:
        """Every message in the chat, oldest first, with edits applied and deleted ones gone."""
        return (await self.chat_state())["messages"]

    async def bot_messages(self) -> list[dict]:
        return [m for m in await self.history() if m["from"]["is_bot"]]

    async def download(self, file_id: str) -> bytes:
        response = await self.http.get(f"{self.base_url}/api/files/{file_id}")
        if response.status_code != 200:
            raise UserClientError(f"download failed: {response.status_code}")
        return response.content

    async def wait_for(
        self, predicate: Predicate | None = None, timeout: float = 30.0, *, after_message_id: int = 0
    ) -> dict:
        """The first bot message (after ``after_message_id``) matching ``predicate``, as it is now.

        Waits with the user API's long poll, so an idle wait costs one request per change.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = await self.chat_state()
            for message in state["messages"]:
                if (
                    message["from"]["is_bot"]
                    and message["message_id"] > after_message_id
                    and (predicate is None or predicate(message))
                ):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                texts = [m.get("text") or m.get("caption") or "<media>" for m in state["messages"][-5:]]
                raise TimeoutError(f"no matching bot message within {timeout}s; last messages: {texts}")
            await self._wait_change(state["version"], remaining)

    async def _wait_change(self, version: int, timeout: float) -> None:
        params = {"version": version, "timeout": min(timeout, 50)}
        await self._request("GET", f"{self._chat_url}/wait", params=params)

    async def wait_answer(self, callback_query_id: str, timeout: float = 30.0) -> dict:
        """The bot's ``answerCallbackQuery`` for a press."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.chat_state()
            answer = state["callback_answers"].get(callback_query_id)
            if answer is not None:
                return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the bot did not answer the callback query")
            await self._wait_change(state["version"], remaining)
