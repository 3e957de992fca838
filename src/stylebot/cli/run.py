"""``stylebot run``: the real bot when API_TOKEN is set, else the playground."""

from __future__ import annotations

import argparse

from stylebot.cli import bot, playground


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="everything on embedded defaults: the real bot with API_TOKEN, else the playground",
        description="With API_TOKEN set: the bot with an in-process ML worker and local storage. "
        "Without: the playground (local Telegram + bot + worker), printing the web chat URL.",
    )
    playground.add_address_arguments(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings

    if get_settings().api_token is not None:
        return bot.handle(args)
    return playground.handle(args)
