"""The ``stylebot`` command: a thin argparse front, one module per subcommand.

Each module has ``add_parser(sub)`` (its arguments) and ``handle(args) -> int``; the heavy rooms are
imported inside the handlers, so ``stylebot --help`` stays fast and a missing optional extra only
breaks the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stylebot.cli import bot, gallery, models, playground, run, server, stylize, telegram

SUBCOMMANDS = (run, playground, bot, server, telegram, stylize, gallery, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylebot", description="Neural style transfer for Telegram: bot, ML server and tools."
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default from settings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from stylebot.config import get_settings
    from stylebot.logs import setup_logging

    settings = get_settings()
    setup_logging(args.log_level or settings.log_level, *settings.secret_values())
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
