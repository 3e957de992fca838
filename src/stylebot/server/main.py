"""Starting the ML server: who may listen where, and the foreground serve loop."""

from __future__ import annotations

import ipaddress
import logging
import signal

from stylebot.config import Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def check_exposure(host: str, settings: Settings) -> str | None:
    """Why the server must not start, or None. Beyond loopback a bearer token is required."""
    if settings.ml_server_token is None and not is_loopback(host):
        return f"refusing to listen on {host} without a token: set ML_SERVER_TOKEN, or bind to 127.0.0.1"
    if settings.ml_server_token is not None and len(settings.ml_server_token.get_secret_value()) < 16:
        return "ML_SERVER_TOKEN is too short; use at least 16 random characters"
    return None


def serve(settings: Settings, backend: str, host: str, port: int) -> int:
    """Run the ML server in the foreground until stopped; the exit status."""
    if backend == "ray":
        from stylebot.server.ray_app import serve_main

        return serve_main(host, port, settings)

    import uvicorn

    from stylebot.server.app import create_app
    from stylebot.server.service import JobService
    from stylebot.storage import make_storage

    service = JobService(make_storage(settings), settings)
    app = create_app(service)
    log.info("ML server (local backend, %d worker(s)) on http://%s:%d", service.workers, host, port)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then raises the signal again with the
    # handler found at start: make that (and a signal before uvicorn's own handlers) exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    return 0


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)
