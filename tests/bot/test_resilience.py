"""Restarts, Redis, flood control, the webhook's secret, and where the token must never go."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from bot_helpers import FAST, FakeJobClient, button, jpeg, press_button, reply_to, text_of

from stylebot.bot.app import BotApp, create_bot
from stylebot.config import get_settings
from stylebot.telegram import FloodLimit, LocalTelegram, UserClient, make_token


def is_result(m: dict) -> bool:
    return "photo" in m and "⏱" in text_of(m)


async def to_choice(user: UserClient) -> dict:
    sent = await user.send_photo(jpeg())
    return await reply_to(user, sent, lambda m: "How should I restyle" in text_of(m))


async def press(user: UserClient, message: dict, contains: str) -> dict:
    return await press_button(user, message, contains)


async def settings_for(backend: str, settings, monkeypatch, request):
    """Memory storage (the default) or a flushed Redis."""
    if backend == "memory":
        return settings
    redis_url = request.getfixturevalue("redis_url")
    import redis.asyncio as aioredis

    async with aioredis.from_url(redis_url) as r:
        await r.flushdb()
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    return get_settings()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_restart_mid_job_delivers_once_and_tells_lost_users(
    backend, start_bot, telegram, settings, monkeypatch, request
) -> None:
    settings = await settings_for(backend, settings, monkeypatch, request)
    client = FakeJobClient(auto=False)
    first = await start_bot(client, app_settings=settings)
    async with (
        UserClient(telegram.base_url, user_id=4001) as runner_user,
        UserClient(telegram.base_url, user_id=4002) as choosing_user,
    ):
        choice = await to_choice(runner_user)
        await press(runner_user, choice, "Monet")
        await reply_to(runner_user, choice, lambda m: "50%" in text_of(m), timeout=10)
        pending_choice = await to_choice(choosing_user)
        await first.stop()

        next(iter(client.jobs.values())).release.set()
        await asyncio.sleep(0.3)
        assert not any(is_result(m) for m in await runner_user.bot_messages())  # nobody watching yet

        await start_bot(client, app_settings=settings)
        await reply_to(runner_user, choice, is_result, timeout=15)
        await asyncio.sleep(0.5)
        assert sum(is_result(m) for m in await runner_user.bot_messages()) == 1

        if backend == "memory":
            # The old keyboard is stale now; the user is told once, and a photo is the new content.
            answer = await press(choosing_user, pending_choice, "7")
            assert answer.get("text") == "This button is no longer active."
            told = await reply_to(choosing_user, pending_choice, lambda m: "restarted" in text_of(m))
            again = await to_choice(choosing_user)
            assert again["message_id"] > told["message_id"]
            restarted = [m for m in await choosing_user.bot_messages() if "restarted" in text_of(m)]
            assert len(restarted) == 1
        else:
            # Redis kept the conversation: the old choice still works.
            assert (await press(choosing_user, pending_choice, "Cézanne")).get("text") == "Started."


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("how", ["button", "command"])
async def test_a_job_can_be_stopped_after_a_restart(
    backend, how, start_bot, telegram, settings, monkeypatch, request
) -> None:
    """The pending record, not the lost conversation, says what runs: /start, Cancel and /cancel see it."""
    settings = await settings_for(backend, settings, monkeypatch, request)
    client = FakeJobClient(auto=False)
    first = await start_bot(client, app_settings=settings)
    async with UserClient(telegram.base_url, user_id=4101) as u:
        choice = await to_choice(u)
        await press(u, choice, "Monet")
        progress = await reply_to(u, choice, lambda m: "50%" in text_of(m), timeout=10)
        await first.stop()
        await start_bot(client, app_settings=settings)
        hello = await u.send_command("start")
        said = await reply_to(u, hello, lambda m: "Hi" in text_of(m))
        assert "still running" in text_of(said) and "/cancel" in text_of(said)
        if how == "button":
            assert (await press(u, progress, "Cancel")).get("text") == "Cancelled."
        else:
            stop = await u.send_command("cancel")
            await reply_to(u, stop, lambda m: "Stopped your stylization" in text_of(m))
        job_id = next(iter(client.jobs))
        assert client.cancelled == [job_id]
        client.jobs[job_id].release.set()
        await asyncio.sleep(0.5)
        assert not any(is_result(m) for m in await u.bot_messages())
        shown = next(m for m in await u.history() if m["message_id"] == progress["message_id"])
        assert "Cancelled" in text_of(shown) and not shown.get("reply_markup")
        # Nothing runs any more: a new photo and a style start a job at once.
        again = await to_choice(u)
        assert (await press(u, again, "Cézanne")).get("text") == "Started."
        await reply_to(u, again, lambda m: "50%" in text_of(m), timeout=10)


async def test_flood_control_backs_off_and_delivers(settings, caplog) -> None:
    caplog.set_level(logging.INFO, logger="stylebot.bot.middlewares")
    async with LocalTelegram(flood_limit=FloodLimit(per_second=1.0, burst=2)) as tg:
        app = BotApp(settings, FakeJobClient(), bot=create_bot(tg.token, tg.base_url), **FAST)
        async with app, UserClient(tg.base_url, user_id=5001) as user:
            choice = await to_choice(user)
            await press(user, choice, "Monet")
            await reply_to(user, choice, is_result, timeout=30)
    assert "flood control" in caplog.text


async def test_a_flood_gets_one_answer_and_the_chat_pace_is_kept(settings) -> None:
    """30 texts in a burst get one reply; different messages each get theirs, paced so that a
    Telegram holding the bot to 1 message/s (bursts of 3) never has to refuse one."""
    from stylebot.bot.middlewares import ChatPacer
    from stylebot.telegram.state import FloodLimit as Limit

    async with LocalTelegram(flood_limit=Limit(per_second=1.0, burst=3)) as tg:
        bot = create_bot(tg.token, tg.base_url, pacer=ChatPacer(per_second=1.0, burst=3))
        app = BotApp(settings, FakeJobClient(), bot=bot, **{**FAST, "burst_gap": 1.0})
        async with app, UserClient(tg.base_url, user_id=5101) as user:
            first = await user.send_text("hello")
            for i in range(29):
                await user.send_text(f"hello {i}")
            answer = await reply_to(user, first)
            assert "Send me a photo" in text_of(answer)
            await asyncio.sleep(1.5)
            assert len(await user.bot_messages()) == 1
            assert app.bursts.dropped == 29

            sent = []
            for command in ("help", "styles", "settings", "cancel", "start"):
                sent.append(await user.send_command(command))
            sent.append(await user.send_text("and a question"))
            choice = await to_choice(user)  # a photo after all that: still served
            await press(user, choice, "Monet")
            await reply_to(user, choice, is_result, timeout=30)
            texts = [text_of(m) for m in await user.bot_messages()]
            for fragment in ("How it works", "Pretrained styles", "Settings", "Nothing to cancel", "Hi, "):
                assert sum(fragment in t for t in texts) == 1, fragment
        assert tg.world.flood_refusals == 0


async def test_webhook_checks_the_secret(telegram, settings, user) -> None:
    app = BotApp(settings, FakeJobClient(), bot=create_bot(telegram.token, telegram.base_url), **FAST)
    server = TestServer(app.webhook_app("right-secret"), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url(settings.webhook_path))
        assert telegram.token not in url and telegram.token.split(":")[1] not in url
        await app.bot.set_webhook(url, secret_token="right-secret")
        hello = await user.send_command("start")
        await reply_to(user, hello, lambda m: "Send me a photo" in text_of(m))
        before = len(await user.history())
        update = {
            "update_id": 999,
            "message": {
                "message_id": 999,
                "date": 0,
                "text": "/start",
                "chat": {"id": user.user_id, "type": "private"},
                "from": {"id": user.user_id, "is_bot": False, "first_name": "Eve"},
            },
        }
        async with httpx.AsyncClient() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                response = await http.post(url, json=update, headers=headers)
                assert response.status_code == 401
        await asyncio.sleep(0.3)
        assert len(await user.history()) == before
    finally:
        await server.close()
        await app.stop()


def test_webhook_path_with_the_token_is_refused(settings, monkeypatch) -> None:
    token = make_token(123456)
    monkeypatch.setenv("STYLEBOT_WEBHOOK_PATH", f"/hook/{token}")
    get_settings.cache_clear()
    app = BotApp(get_settings(), FakeJobClient(), bot=create_bot(token))
    with pytest.raises(ValueError, match="must not contain the bot token"):
        app.webhook_app("secret")


async def test_real_job_service_and_the_token_is_nowhere(
    start_bot, user, telegram, settings, synthetic_models_dir, monkeypatch, tmp_path: Path
) -> None:
    """Both happy paths on the real in-process job service; then grep everything for the token."""
    from stylebot.client import InProcessJobClient
    from stylebot.logs import setup_logging

    monkeypatch.setenv("STYLEBOT_MODELS_DIR", str(synthetic_models_dir))
    get_settings.cache_clear()
    settings = get_settings()
    log_text = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(log_text)
    root.addHandler(handler)
    old_level = root.level
    setup_logging("DEBUG", telegram.token)
    client = InProcessJobClient(settings=settings)
    try:
        await start_bot(client, app_settings=settings)
        choice = await to_choice(user)
        await press(user, choice, "Monet")
        result = await reply_to(user, choice, is_result, timeout=60)
        assert (await user.download(result["photo"][-1]["file_id"]))[:2] == b"\xff\xd8"

        sent = await user.send_album([jpeg(), jpeg("texture_brick.jpg", 48), jpeg("texture_grass.jpg", 48)])
        panel = await reply_to(user, sent, lambda m: "Style images: 2 of 5" in text_of(m))
        await press(user, panel, "Stylize")
        await reply_to(user, panel, lambda m: is_result(m) and "2 style images" in text_of(m), timeout=90)
    finally:
        await client.aclose()
        root.removeHandler(handler)
        root.setLevel(old_level)
    secret_part = telegram.token.split(":", 1)[1]
    assert secret_part not in log_text.getvalue()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("bot-state" in str(p) for p in written) and any("storage" in str(p) for p in written)
    for path in written:
        assert secret_part.encode() not in path.read_bytes(), path
        assert secret_part not in str(path)


@pytest.mark.parametrize("moment", ["before_send", "after_send"])
async def test_a_kill_at_delivery_gives_no_unlabelled_duplicate(
    moment, start_bot, telegram, settings
) -> None:
    """The process dies at the moment of delivery (nothing after that point runs, as with kill -9):
    the next start sends the result again, labelled, so the user never has two unexplained copies."""
    client = FakeJobClient(auto=False)
    first = await start_bot(client)
    async with UserClient(telegram.base_url, user_id=4201) as u:
        choice = await to_choice(u)
        await press(u, choice, "Monet")
        progress = await reply_to(u, choice, lambda m: "50%" in text_of(m), timeout=10)
        real_send = first.bot.send_photo
        dying = asyncio.Event()

        async def send_then_die(*args, **kwargs):
            if moment == "after_send":
                await real_send(*args, **kwargs)  # Telegram has accepted the result...
            dying.set()
            await asyncio.Event().wait()  # ...and the process is gone before it writes anything more

        first.bot.send_photo = send_then_die  # type: ignore[method-assign]
        job_id = next(iter(client.jobs))
        client.jobs[job_id].release.set()
        await asyncio.wait_for(dying.wait(), 10)
        assert (await first.pending.get(job_id)).phase == "sending"
        await first.runner.shutdown(release=False)  # the kill: no cleanup of any kind
        await first.stop()

        await start_bot(client)
        labelled = await reply_to(u, progress, lambda m: is_result(m) and "Sent again" in text_of(m))
        assert "Monet" in text_of(labelled)
        await asyncio.sleep(0.5)
        results = [m for m in await u.bot_messages() if is_result(m)]
        unlabelled = [m for m in results if "Sent again" not in text_of(m)]
        assert len(unlabelled) == (1 if moment == "after_send" else 0)
        assert len(results) == len(unlabelled) + 1
    assert not await client_pending(start_bot, settings)


async def client_pending(start_bot, settings) -> list:
    from stylebot.bot.app import bot_state_dir
    from stylebot.bot.persistence import JsonPendingStore

    files = list(bot_state_dir(settings).glob("pending-*.json"))
    return [r for f in files for r in await JsonPendingStore(f).all()]


async def test_ml_outage_is_told_in_time_and_the_message_updates_on_resume(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)  # FAST timing: told after 0.5 s of outage (60 s is the promise in production)
    choice = await to_choice(user)
    await press(user, choice, "Monet")
    progress = await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    same = progress["message_id"] - 1

    def progress_says(fragment: str):
        return lambda m: m["message_id"] == progress["message_id"] and fragment in text_of(m)

    client.down = True
    told = await reply_to(user, [{"message_id": same}], progress_says("unreachable"), timeout=10)
    assert "continues as soon as the service is back" in text_of(told) and button(told, "Cancel")
    await asyncio.sleep(1.0)
    client.down = False
    back = await reply_to(user, [{"message_id": same}], progress_says("✅ The style service"), timeout=10)
    assert "50%" in text_of(back)
    client.jobs[next(iter(client.jobs))].release.set()
    await reply_to(user, progress, is_result, timeout=10)


def test_retries_back_off_with_jitter() -> None:
    from stylebot.bot.delivery import backoff_delay

    for failures, ceiling in ((0, 1.0), (1, 2.0), (3, 8.0), (10, 20.0), (60, 20.0)):
        delays = [backoff_delay(failures, base=1.0, cap=20.0) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), failures
        assert len({round(d, 6) for d in delays}) > 100  # spread out, not in lockstep


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_good_send_it_works_after_a_restart(
    backend, start_bot, telegram, settings, monkeypatch, request
) -> None:
    settings = await settings_for(backend, settings, monkeypatch, request)
    client = FakeJobClient(auto=False)
    first = await start_bot(client, app_settings=settings)
    async with UserClient(telegram.base_url, user_id=4301) as u:
        sent = await u.send_album([jpeg(), jpeg("texture_brick.jpg", 40)])
        panel = await reply_to(u, sent, lambda m: "Style images: 1 of 5" in text_of(m))
        await press(u, panel, "Stylize")
        progress = await reply_to(u, panel, lambda m: "50%" in text_of(m), timeout=10)
        await first.stop()
        await start_bot(client, app_settings=settings)
        assert (await press(u, progress, "Good, send it")).get("text") == "Sending this image…"
        result = await reply_to(u, progress, is_result, timeout=15)
        assert "your 1 style image" in text_of(result)
        assert client.finished_early == [next(iter(client.jobs))]
        await asyncio.sleep(0.5)
        assert sum(is_result(m) for m in await u.bot_messages()) == 1


def test_the_operator_chooses_where_pending_deliveries_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bots whose storage folders sit side by side must not share pending records."""
    from stylebot.bot.app import create_storage
    from stylebot.bot.persistence import JsonPendingStore
    from stylebot.config import Settings

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("STYLEBOT_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.delenv("STYLEBOT_BOT_STATE_DIR", raising=False)
    _, default = create_storage(Settings(), 42)
    assert isinstance(default, JsonPendingStore)
    assert default.path == tmp_path / "bot-state" / "pending-42.json"
    monkeypatch.setenv("STYLEBOT_BOT_STATE_DIR", str(tmp_path / "bot-a"))
    _, chosen = create_storage(Settings(), 42)
    assert isinstance(chosen, JsonPendingStore)
    assert chosen.path == tmp_path / "bot-a" / "pending-42.json"
