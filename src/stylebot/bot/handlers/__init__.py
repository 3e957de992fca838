"""The bot's routers, in the order they are tried."""

from __future__ import annotations

from aiogram import Router

from stylebot.bot.handlers import choice, commands, content, settings


def routers() -> list[Router]:
    """The module routers, detached from any earlier dispatcher.

    A router belongs to one parent; a process that builds a second dispatcher (a restart in
    tests, the benchmark) takes them over from the first, which must no longer be running.
    """
    result = [commands.router, settings.router, choice.router, content.router]
    for router in result:
        parent = router.parent_router
        if parent is not None:
            parent.sub_routers.remove(router)
            router._parent_router = None
    return result
