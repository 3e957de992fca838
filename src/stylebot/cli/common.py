"""What every subcommand shares: exit codes and the one-line failure message."""

from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2
EXIT_WEIGHTS = 3
EXIT_CANCELLED = 130


def fail(message: str, code: int) -> int:
    """Print ``stylebot: message`` on stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"stylebot: {message}", file=sys.stderr)
    return code
