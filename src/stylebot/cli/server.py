"""``stylebot server --backend local|ray``: the ML server (HTTP API) on uvicorn or Ray Serve."""

from __future__ import annotations

import argparse
import sys

from stylebot.cli.common import exit_on_storage_problem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="the ML server (HTTP API) on uvicorn or Ray Serve",
        description="Serves /v1/jobs, /v1/inputs, /v1/styles, /healthz and /metrics. "
        "The bearer token comes from ML_SERVER_TOKEN.",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings
    from stylebot.server.main import check_exposure, serve

    settings = get_settings()
    problem = check_exposure(args.host, settings)
    if problem:
        print(f"stylebot server: {problem}", file=sys.stderr)
        return 2
    if (code := exit_on_storage_problem(settings, "server")) is not None:
        return code
    return serve(settings, args.backend, args.host, args.port)
