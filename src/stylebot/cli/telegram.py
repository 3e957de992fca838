"""``stylebot telegram``: the local Telegram (Bot API emulator, user API, web chat) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "telegram",
        help="the local Telegram: Bot API emulator, user-side API and web chat page",
        description="A local stand-in for Telegram; any Bot API bot can connect to it.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--token", action="append", help="accept only this token (repeatable)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.telegram.server import TOKEN_RE, LocalTelegram

    tokens = args.token or None
    for token in tokens or []:
        if not TOKEN_RE.match(token):
            print(f"not a well-formed bot token: {token[:12]}…")
            return 2

    async def serve() -> None:
        async with LocalTelegram(host=args.host, port=args.port, tokens=tokens) as tg:
            print(
                f"Bot API base URL: {tg.base_url}  (aiogram: TelegramAPIServer.from_base(...); "
                f"python-telegram-bot: base_url={tg.base_url}/bot)"
            )
            if tokens:
                print("Accepted tokens: " + ", ".join(tokens))
            else:
                print(f"Accepted tokens: any well-formed token; the web chat talks to {tg.token}")
            print(f"Web chat: {tg.web_url}", flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
