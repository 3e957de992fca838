"""Two bot processes in webhook mode with Redis behind one URL.

Both bots run here as two ``BotApp``s, each with its own Telegram session, Redis connections and
webhook server, sharing only Redis and the ML side, as two processes would. In front of them a
proxy plays the load balancer at its worst: it hands every update to *both* (as a retry after a
timeout would), so "handled once" cannot come from the routing. One process is then killed mid-job
(no cleanup at all); the other must pick up its delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bot_helpers import FAST, FakeJobClient, jpeg, press_button, reply_to, text_of

from stylebot.bot.app import BotApp, create_bot
from stylebot.config import get_settings
from stylebot.telegram import LocalTelegram, UserClient

SECRET = "shared-webhook-secret"


def is_result(m: dict) -> bool:
    return "photo" in m and "⏱" in text_of(m)


class FanOut:
    """The one URL Telegram knows: forwards each update to every live bot process, or with
    ``round_robin`` to one process after another (a plain load balancer)."""

    def __init__(self, *, round_robin: bool = False) -> None:
        self.targets: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None
        self.round_robin = round_robin
        self.turn = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            "X-Telegram-Bot-Api-Secret-Token": request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        }
        assert self.session is not None

        async def one(url: str) -> int:
            try:
                async with self.session.post(url, data=body, headers=headers) as response:
                    return response.status
            except aiohttp.ClientError:
                return 502

        urls = list(self.targets.values())
        if self.round_robin:
            self.turn += 1
            urls = [urls[self.turn % len(urls)]]
        statuses = await asyncio.gather(*(one(url) for url in urls))
        return web.Response(status=200 if 200 in statuses else 502)


@asynccontextmanager
async def two_processes(
    settings, client: FakeJobClient, fan: FanOut, **app_options: object
) -> AsyncIterator[tuple[LocalTelegram, dict[str, BotApp], dict[str, TestServer]]]:
    """Two bot apps in webhook mode sharing Redis, behind ``fan``; all stopped at the end."""
    proxy_app = web.Application()
    proxy_app.router.add_post("/hook", fan.handle)
    async with LocalTelegram() as tg, aiohttp.ClientSession() as session:
        fan.session = session
        proxy = TestServer(proxy_app, host="127.0.0.1")
        await proxy.start_server()
        apps: dict[str, BotApp] = {}
        servers: dict[str, TestServer] = {}
        for name in ("a", "b"):
            options = {**FAST, **app_options}
            app = BotApp(settings, client, bot=create_bot(tg.token, tg.base_url), **options)
            server = TestServer(app.webhook_app(SECRET), host="127.0.0.1")
            await server.start_server()
            apps[name], servers[name] = app, server
            fan.targets[name] = str(server.make_url(settings.webhook_path))
        await apps["a"].bot.set_webhook(str(proxy.make_url("/hook")), secret_token=SECRET)
        try:
            yield tg, apps, servers
        finally:
            await apps["a"].bot.delete_webhook()
            for name, app in apps.items():
                await servers[name].close()
                await app.stop()
            await proxy.close()


@pytest.fixture
async def redis_settings(redis_url, monkeypatch):
    import redis.asyncio as aioredis

    async with aioredis.from_url(redis_url) as r:
        await r.flushdb()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DEFAULT_FAST_DEV_RUN", "1")
    get_settings.cache_clear()
    return get_settings()


async def test_each_update_handled_once_and_a_killed_process_deliveries_picked_up(redis_settings) -> None:
    client = FakeJobClient(auto=False)
    fan = FanOut()
    async with (
        two_processes(redis_settings, client, fan) as (tg, apps, servers),
        UserClient(tg.base_url, user_id=6001) as user,
    ):
        hello = await user.send_command("start")
        await reply_to(user, hello, lambda m: "Send me a photo" in text_of(m))
        sent = await user.send_photo(jpeg())
        choice = await reply_to(user, sent, lambda m: "How should I restyle" in text_of(m))
        assert (await press_button(user, choice, "Monet")).get("text") == "Started."
        progress = await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
        await asyncio.sleep(0.5)
        texts = [text_of(m) for m in await user.bot_messages()]
        assert sum("Send me a photo" in t for t in texts) == 1
        assert sum("How should I restyle" in t for t in texts) == 1
        assert len(client.jobs) == 1
        assert sum(app.once.skipped for app in apps.values()) >= 3  # every copy was seen, and dropped

        # Kill the process that watches the job: no cleanup, its Redis claim just expires.
        job_id = next(iter(client.jobs))
        owner = next(n for n, app in apps.items() if job_id in app.runner._tasks)
        survivor = "b" if owner == "a" else "a"
        await apps[owner].runner.shutdown(release=False)
        del fan.targets[owner]
        await servers[owner].close()
        client.jobs[job_id].release.set()

        result = await reply_to(user, progress, is_result, timeout=20)
        assert "Monet" in text_of(result) and "Sent again" not in text_of(result)
        await asyncio.sleep(1.0)
        assert sum(is_result(m) for m in await user.bot_messages()) == 1
        assert not await apps[survivor].pending.all()

        # The survivor serves the next conversation alone, each update once.
        again = await user.send_photo(jpeg("rocket.jpg"))
        await reply_to(user, again, lambda m: "How should I restyle" in text_of(m))


async def test_an_album_split_between_two_processes_is_still_one_album(redis_settings) -> None:
    fan = FanOut(round_robin=True)  # the album's three messages go to a, b, a
    async with (
        two_processes(redis_settings, FakeJobClient(), fan) as (tg, _apps, _servers),
        UserClient(tg.base_url, user_id=6002) as user,
    ):
        album = await user.send_album([jpeg(), jpeg("rocket.jpg"), jpeg("coffee.jpg")])
        told = await reply_to(user, album[-1], lambda m: "as style images" in text_of(m))
        assert "the other 2 as style images" in text_of(told)
        await reply_to(user, album[-1], lambda m: "Style images: 2 of 5" in text_of(m))
        await asyncio.sleep(1.0)  # a split album would also have answered its other part by now
        texts = [text_of(m) for m in await user.bot_messages()]
        assert sum("as style image" in t for t in texts) == 1, texts
        assert not any("How should I restyle" in t for t in texts), texts  # no part taken as a photo


async def test_two_processes_never_interleave_one_conversations_updates(redis_url) -> None:
    """Style images sent one by one may reach different processes: each adds to the conversation
    with a load, a change and a save. With Redis the processes' locks are one lock."""
    import redis.asyncio as aioredis
    from aiogram.fsm.context import FSMContext
    from aiogram.fsm.storage.base import StorageKey
    from aiogram.fsm.storage.memory import MemoryStorage

    from stylebot.bot.middlewares import UserLocks

    async with aioredis.from_url(redis_url) as shared:
        await shared.flushdb()

        async def add_styles(locks: list[UserLocks], chat: int, counter: str) -> int:
            state = FSMContext(MemoryStorage(), StorageKey(bot_id=42, chat_id=chat, user_id=chat))

            async def add_one(lock_of_this_process: UserLocks) -> None:
                async with lock_of_this_process(state):
                    count = int(await shared.get(counter) or 0)  # load
                    await asyncio.sleep(0.01)  # the handler's work between load and save
                    await shared.set(counter, count + 1)  # save

            await asyncio.gather(*(add_one(locks[i % 2]) for i in range(10)))
            return int(await shared.get(counter))

        # One asyncio lock per process (how it was): the two processes lose each other's updates.
        assert await add_styles([UserLocks(), UserLocks()], 1, "before") < 10
        async with aioredis.from_url(redis_url) as one, aioredis.from_url(redis_url) as other:
            assert await add_styles([UserLocks(one, 42), UserLocks(other, 42)], 2, "after") == 10
            # another chat is not held up by this one's lock
            held = UserLocks(one, 42)(
                FSMContext(MemoryStorage(), StorageKey(bot_id=42, chat_id=3, user_id=3))
            )
            async with held:
                free = UserLocks(other, 42)(
                    FSMContext(MemoryStorage(), StorageKey(bot_id=42, chat_id=4, user_id=4))
                )
                async with asyncio.timeout(2):
                    async with free:
                        pass


async def test_a_flood_split_between_two_processes_gets_one_answer(redis_settings) -> None:
    fan = FanOut(round_robin=True)
    async with (
        two_processes(redis_settings, FakeJobClient(), fan, burst_gap=1.0) as (tg, apps, _servers),
        UserClient(tg.base_url, user_id=6003) as user,
    ):
        first = await user.send_text("hello")
        for i in range(19):
            await user.send_text(f"hello {i}")
        assert "Send me a photo" in text_of(await reply_to(user, first))
        await asyncio.sleep(1.5)
        assert len(await user.bot_messages()) == 1
        assert [app.bursts.dropped > 0 for app in apps.values()] == [True, True]  # both saw some
