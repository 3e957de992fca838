"""``stylebot playground``: local Telegram + bot + in-process worker + local storage, one process.

``stylebot run`` without ``API_TOKEN`` lands here too: open the printed web chat URL and talk to the
bot in a browser. Nothing leaves the machine except the first download of the model weights.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys

from stylebot.cli.common import exit_on_storage_problem, fetch_first_run_models
from stylebot.config import Settings

log = logging.getLogger(__name__)


DEFAULT_PORT = 8081


def add_address_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="web chat bind address")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"web chat port (default {DEFAULT_PORT}, or a free one when that is taken; 0: any free one)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "playground",
        help="local Telegram + bot + in-process worker, with a web chat page",
        description="Runs the bot against the local Telegram emulator; open the printed URL.",
    )
    add_address_arguments(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings

    settings = get_settings()
    if (code := exit_on_storage_problem(settings, "playground")) is not None:
        return code
    port = DEFAULT_PORT if args.port is None else args.port
    try:
        return asyncio.run(run_playground(settings, host=args.host, port=port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    if args.port is not None:
        print(
            f"stylebot playground: {args.host}:{port} is already in use (another playground?); "
            "pick another with --port N, or --port 0 for any free port",
            file=sys.stderr,
        )
        return 2
    print(f"Port {port} is taken; using a free port instead (choose one with --port N).", file=sys.stderr)
    return asyncio.run(run_playground(settings, host=args.host, port=0, pull_weights=False))


async def run_playground(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    stop: asyncio.Event | None = None,
    pull_weights: bool = True,
) -> int:
    from stylebot.bot.app import BotApp, create_bot
    from stylebot.client import InProcessJobClient
    from stylebot.telegram import LocalTelegram

    if pull_weights:
        await asyncio.to_thread(fetch_first_run_models, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            break
    async with LocalTelegram(host=host, port=port) as telegram:
        client = InProcessJobClient(settings=settings)
        bot = create_bot(telegram.token, telegram.base_url)
        try:
            async with BotApp(settings, client, bot=bot):
                print(f"Playground ready: open {telegram.web_url} in a browser and send a photo.", flush=True)
                await stop.wait()
        finally:
            await client.aclose()
    return 0
