"""The ``stylebot`` command: a thin argparse front over the rooms of the package.

Each subcommand has one ``_add_<name>`` function (its arguments) and one ``_cmd_<name>``
handler that imports what it needs lazily, so ``stylebot --help`` stays fast and a missing
optional extra only breaks the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stylebot.jobs.spec import MAX_SIZE, PRETRAINED_MODELS

Handler = Callable[[argparse.Namespace], int]


def _setup_logging(level: str) -> None:
    from stylebot.logs import setup_logging

    setup_logging(level)


# --- run / playground / bot ------------------------------------------------------------------
def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="everything on embedded defaults: the real bot with API_TOKEN, else the playground",
        description="With API_TOKEN set: the bot with an in-process ML worker and local storage. "
        "Without: the playground (local Telegram + bot + worker), printing the web chat URL.",
    )
    p.add_argument("--host", default="127.0.0.1", help="playground bind address")
    p.add_argument("--port", type=int, default=8081, help="playground port")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from stylebot.bot.app import run_main

    return run_main(args)


def _add_playground(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "playground",
        help="local Telegram + bot + in-process worker, with a web chat page",
        description="Runs the bot against the local Telegram emulator; open the printed URL.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.set_defaults(handler=_cmd_playground)


def _cmd_playground(args: argparse.Namespace) -> int:
    from stylebot.bot.app import playground_main

    return playground_main(args)


def _add_bot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bot",
        help="the Telegram bot alone (polling, or webhook when WEBHOOK_HOST_ADDR is set)",
        description="Needs API_TOKEN. Uses ML_SERVER_HOST_ADDR when set, else an in-process worker.",
    )
    p.set_defaults(handler=_cmd_bot)


def _cmd_bot(args: argparse.Namespace) -> int:
    from stylebot.bot.app import bot_main

    return bot_main(args)


# --- server ----------------------------------------------------------------------------------
def _add_server(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="the ML server (HTTP API) on uvicorn or Ray Serve",
        description="Serves /v1/jobs, /v1/inputs, /v1/styles, /healthz and /metrics. "
        "The bearer token comes from ML_SERVER_TOKEN.",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(handler=_cmd_server)


def _cmd_server(args: argparse.Namespace) -> int:
    from stylebot.server.main import server_main

    return server_main(args)


# --- telegram (local Bot API emulator) -------------------------------------------------------
def _add_telegram(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "telegram",
        help="the local Telegram: Bot API emulator, user-side API and web chat page",
        description="A local stand-in for Telegram; any Bot API bot can connect to it.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--token", action="append", help="accept only this token (repeatable)")
    p.set_defaults(handler=_cmd_telegram)


def _cmd_telegram(args: argparse.Namespace) -> int:
    from stylebot.telegram.server import telegram_main

    return telegram_main(args)


# --- stylize ---------------------------------------------------------------------------------
def _add_stylize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize",
        help="restyle a photo with style images (NST) or a pretrained CycleGAN model",
        description="Examples: stylebot stylize photo.jpg -s starry.jpg -o out.jpg ; "
        "stylebot stylize photo.jpg --model style_monet -o out.jpg",
    )
    p.add_argument("content", type=Path, help="the photo to restyle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-s", "--style", type=Path, action="append", help="style image (repeatable, 1-5)")
    src.add_argument("--model", choices=PRETRAINED_MODELS, help="pretrained CycleGAN style")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (.jpg or .png)")
    p.add_argument("--style-weights", help="relative weight per style image, e.g. 2,1")
    p.add_argument("--strength", type=float, default=1.0, help="0.1-10: style vs content (default 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    p.add_argument(
        "--size", type=int, default=None,
        help=f"long side of the result, up to {MAX_SIZE} (default: 512 for style images; "
        "the photo's own size for --model)",
    )
    p.add_argument("--preset", choices=("fast", "balanced", "quality"), default="balanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--backbone", choices=("auto", "vgg19", "vgg16"), default=None)
    p.add_argument("--fast-dev-run", action="store_true", help="tiny and quick, for debugging")
    p.set_defaults(handler=_cmd_stylize)


def _cmd_stylize(args: argparse.Namespace) -> int:
    from stylebot.stylize_cli import stylize_command

    return stylize_command(args)


# --- models ----------------------------------------------------------------------------------
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, pull, verify or import model weights")
    msub = p.add_subparsers(dest="models_cmd", required=True, metavar="{list,pull,verify,import}")
    msub.add_parser("list", help="every model, its source, size and whether it is installed")
    pull = msub.add_parser("pull", help="download weights (all when no name is given)")
    pull.add_argument("names", nargs="*")
    verify = msub.add_parser("verify", help="check installed weights: checksum and strict load")
    verify.add_argument("names", nargs="*")
    imp = msub.add_parser("import", help="install weights from a local file")
    imp.add_argument("name")
    imp.add_argument("path", type=Path)
    p.set_defaults(handler=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from stylebot.stylize_cli import models_command

    return models_command(args)


SUBCOMMANDS: Sequence[Callable[[argparse._SubParsersAction], None]] = (
    _add_run,
    _add_playground,
    _add_bot,
    _add_server,
    _add_telegram,
    _add_stylize,
    _add_models,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylebot", description="Neural style transfer for Telegram: bot, ML server and tools."
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default from settings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from stylebot.config import get_settings

    _setup_logging(args.log_level or get_settings().log_level)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
