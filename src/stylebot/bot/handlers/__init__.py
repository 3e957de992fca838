"""The bot's routers, in the order they are tried."""

from __future__ import annotations

from aiogram import Router

from stylebot.bot.handlers import choice, commands, content, settings


def _copy(router: Router) -> Router:
    """A new router with the same handlers: a router belongs to one dispatcher, and one process
    may hold several (two bots in a test, the benchmark, a restart)."""
    fresh = Router(name=router.name)
    for name, observer in router.observers.items():
        fresh.observers[name].handlers.extend(observer.handlers)
    return fresh


def routers() -> list[Router]:
    """Fresh copies of the module routers, for one dispatcher."""
    return [_copy(r) for r in (commands.router, settings.router, choice.router, content.router)]
