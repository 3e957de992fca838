"""The aiohttp app that serves the Bot API, files, the user API and the web chat page.

``LocalTelegram`` runs it in-process (``async with LocalTelegram() as tg``) or on a background
thread (``with LocalTelegram() as tg``); the ``stylebot telegram`` command is in ``stylebot.cli.telegram``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from stylebot.telegram.botapi import BotApi, Described, Params, Upload
from stylebot.telegram.errors import NOT_FOUND, UNAUTHORIZED, ApiError
from stylebot.telegram.state import FILE_UPLOAD_LIMIT, Bot, FloodLimit, World
from stylebot.telegram.userapi import UserApi

log = logging.getLogger(__name__)

DEFAULT_BOT_ID = 110201543
TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,100}$")
STATIC_DIR = Path(__file__).parent / "static"


def make_token(bot_id: int = DEFAULT_BOT_ID) -> str:
    """A fresh, well-formed token for a local bot: ``<bot id>:<35 random URL-safe characters>``.

    Generated, never written down, so nothing token-shaped sits in the source or in a log template.
    """
    return f"{bot_id}:{secrets.token_urlsafe(26)}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class TelegramApp:
    """The routes; state lives in :class:`World`."""

    def __init__(self, world: World, tokens: Sequence[str] | None, default_token: str) -> None:
        self.world = world
        self.restricted = set(tokens) if tokens else None
        self.api = BotApi(world)
        for token in [default_token, *(tokens or [])]:
            world.bot_for_token(token)
        self.default_bot = world.bot_for_token(default_token)
        self.users = UserApi(world, self.api, self.default_bot)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=FILE_UPLOAD_LIMIT + 2**20)
        app.add_routes(
            [
                web.route("*", "/bot{token}/{method}", self.bot_method),
                web.get("/file/bot{token}/{file_path:.+}", self.bot_file),
                *self.users.routes(),
                web.get("/", self.index),
                web.static("/static", STATIC_DIR),
            ]
        )
        app.middlewares.append(_api_errors)
        app.on_cleanup.append(lambda _: self.api.close())
        return app

    def bot_for(self, token: str) -> Bot:
        if not TOKEN_RE.match(token) or (self.restricted is not None and token not in self.restricted):
            raise UNAUTHORIZED
        return self.world.bot_for_token(token)

    async def bot_method(self, request: web.Request) -> web.Response:
        try:
            bot = self.bot_for(request.match_info["token"])
            params = await _read_params(request)
            result = await self.api.call(bot, request.match_info["method"], params)
        except ApiError as err:
            return web.json_response(err.body(), status=err.code, dumps=_dumps)
        body: dict[str, Any] = {"ok": True, "result": result}
        if isinstance(result, Described):
            body = {"ok": True, "result": result.result, "description": result.description}
        return web.json_response(body, dumps=_dumps)

    async def bot_file(self, request: web.Request) -> web.StreamResponse:
        try:
            self.bot_for(request.match_info["token"])
        except ApiError as err:
            return web.json_response(err.body(), status=err.code, dumps=_dumps)
        stored = self.world.files_by_path.get(request.match_info["file_path"])
        if stored is None:
            return web.json_response(NOT_FOUND.body(), status=404, dumps=_dumps)
        return web.FileResponse(stored.path)

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@web.middleware
async def _api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return web.json_response(err.body(), status=err.code, dumps=_dumps)
    except web.HTTPRequestEntityTooLarge:
        too_large = ApiError(413, "Request Entity Too Large")
        return web.json_response(too_large.body(), status=413, dumps=_dumps)
    except web.HTTPNotFound:
        return web.json_response(NOT_FOUND.body(), status=404, dumps=_dumps)


async def _read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    uploads: dict[str, Upload] = {}
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON object") from None
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: can't parse JSON object")
            values.update(body)
        elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            for key, value in form.items():
                if isinstance(value, FileField):
                    uploads[key] = Upload(value.file.read(), value.filename, value.content_type)
                else:
                    values[key] = value
    return Params(values, uploads)


class LocalTelegram:
    """A local Telegram on 127.0.0.1: Bot API at ``base_url``, user API and web chat beside it.

    ``token`` is the default bot's token (the first of ``tokens``, else a fresh :func:`make_token`); when
    ``tokens`` is given only those are accepted, otherwise any well-formed token is.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Sequence[str] | None = None,
        flood_limit: FloodLimit | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tokens = list(tokens) if tokens else None
        self.token = self.tokens[0] if self.tokens else make_token()
        self.flood_limit = flood_limit
        self._own_files_dir = files_dir is None
        self.files_dir = files_dir or Path(tempfile.mkdtemp(prefix="local-telegram-"))
        self.world = World(self.files_dir, flood_limit=flood_limit)
        self.app = TelegramApp(self.world, self.tokens, self.token)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def web_url(self) -> str:
        return f"{self.base_url}/"

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app.build(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp types it as AbstractServer; a TCPSite's is an asyncio.Server
        if self.port == 0 and isinstance(server, asyncio.Server) and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            self.world.reset()
            await self._runner.cleanup()
            self._runner = None
        if self._own_files_dir:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def reset(self) -> None:
        """Forget users, chats, files, updates and webhooks (bots and tokens stay)."""
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(_call(self.world.reset), self._loop).result(10)
        else:
            self.world.reset()

    def requests(self, token: str | None = None) -> Counter[str]:
        """How many times the bot called each method (lowercase names), e.g. ``["getupdates"]``."""
        bot = self.world.bots.get(int((token or self.token).split(":", 1)[0]))
        return Counter(bot.requests) if bot else Counter()

    async def __aenter__(self) -> LocalTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- on a background thread, for synchronous code ----------------------------------------
    def __enter__(self) -> LocalTelegram:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stopped = asyncio.Event()

            async def main() -> None:
                try:
                    await self.start()
                except BaseException as exc:
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                assert self._stopped is not None
                await self._stopped.wait()
                await self.stop()

            loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=run, name="local-telegram", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = None


async def _call(func: Any) -> None:
    func()
