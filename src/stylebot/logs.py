"""Logging set-up with secret redaction: bot tokens never reach a log line."""

from __future__ import annotations

import logging
import re

# Telegram bot tokens look like "123456789:AAE...35 chars"; they also appear inside Bot API URLs.
TOKEN_PATTERN = re.compile(r"(?<![0-9])\d{5,12}:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted-token>"


def redact(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like a bot token, plus every explicitly named secret.

    Secrets are replaced longest first, whatever their length: a configured secret is redacted even
    when it is short (a short secret is a weak one, but still must not be printed).
    """
    text = TOKEN_PATTERN.sub(REDACTED, text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


class RedactingFilter(logging.Filter):
    """Formats the record once, redacts it, and freezes the result into ``record.msg``."""

    def __init__(self, *secrets: str | None) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        clean = redact(message, *self.secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, *self.secrets)
        record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "INFO", *secrets: str | None) -> None:
    """Configure the root logger once; every handler gets the redacting filter."""
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(console)
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(RedactingFilter(*secrets))
    root.setLevel(level.upper())
    # Libraries that log full request URLs (which contain /bot<token>/) at INFO or DEBUG.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
