"""``stylebot models list|pull|verify|import``: manage the weights in the models folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylebot.cli.common import EXIT_BAD_INPUT, EXIT_WEIGHTS, fail, model_sources


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stylebot.config import get_settings
    from stylebot.ml import weights

    settings = get_settings()
    root, sources = settings.models_dir, model_sources(settings)
    try:
        if args.models_cmd == "list":
            for info in weights.list_models(root, sources):
                size = f"{info.size_bytes / 1e6:6.1f} MB" if info.size_bytes else "      ?   "
                state = "installed" if info.installed else "missing  "
                print(f"{info.name:24} {info.kind:9} {state} {size}  {info.title}")
                print(f"{'':24} source: {info.source}")
                if info.reason:
                    print(f"{'':24} {info.reason}")
            return 0
        if args.models_cmd == "pull":
            names = args.names or list(weights.DEFAULT_PULL)
            print(f"fetching {weights.download_note(names)} into {root}", file=sys.stderr)
            installed = weights.pull(names, models_dir=root, sources=sources)
            print("installed: " + ", ".join(installed))
            return 0
        if args.models_cmd == "verify":
            results = weights.verify(args.names or None, models_dir=root)
            if not results:
                print("no models installed; run `stylebot models pull`")
                return 1
            for r in results:
                print(f"{r.name:24} {'ok  ' if r.ok else 'FAIL'} {r.message}")
            return 0 if all(r.ok for r in results) else 1
        if args.models_cmd == "import":
            path = weights.import_weights(args.name, args.path, models_dir=root)
            print(f"installed {args.name} at {path}")
            return 0
    except weights.WeightsError as exc:
        return fail(str(exc), EXIT_WEIGHTS)
    return fail(f"unknown models command {args.models_cmd!r}", EXIT_BAD_INPUT)
