"""``stylebot bot``: the Telegram bot alone (polling, or webhook when WEBHOOK_HOST_ADDR is set)."""

from __future__ import annotations

import argparse
import asyncio

from stylebot.cli.common import exit_on_storage_problem, fetch_first_run_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bot",
        help="the Telegram bot alone (polling, or webhook when WEBHOOK_HOST_ADDR is set)",
        description="Needs API_TOKEN. Uses ML_SERVER_HOST_ADDR when set, else an in-process worker.",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.bot.app import run_bot
    from stylebot.config import get_settings

    settings = get_settings()
    if settings.api_token is None:
        print("API_TOKEN is not set; `stylebot playground` runs the bot without one.")
        return 2
    if (code := exit_on_storage_problem(settings, "bot")) is not None:
        return code
    if settings.ml_server_host_addr is None:  # the in-process worker runs the models itself
        fetch_first_run_models(settings)
    asyncio.run(run_bot(settings))
    return 0
