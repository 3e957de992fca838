"""Two unmodified bot frameworks end to end: aiogram 3 (polling and webhook) and python-telegram-bot."""

from __future__ import annotations

import asyncio

import echo_aiogram
import echo_ptb
import pytest
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from echo_aiogram import polling, tiny_png

from stylebot.imaging import probe
from stylebot.telegram import LocalTelegram, UserClient


async def test_aiogram_document_album_sticker_edit_and_format(echo_bot, user: UserClient) -> None:
    sent = await user.send_document(b"col\n1\n", filename="data.csv", mime_type="text/csv")
    reply = await user.wait_for(lambda m: "document" in m, after_message_id=sent["message_id"])
    assert reply["document"]["file_name"] == "data.csv" and reply["caption"] == "text/csv"
    assert await user.download(reply["document"]["file_id"]) == b"col\n1\n"

    album = await user.send_album([tiny_png((255, 0, 0)), tiny_png((0, 255, 0)), tiny_png((0, 0, 255))])
    assert len({m["media_group_id"] for m in album}) == 1
    await user.wait_for(lambda m: m.get("caption") == "photo 48x32", after_message_id=album[-1]["message_id"])

    sticker = await user.send_sticker(emoji="🐱")
    echoed = await user.wait_for(lambda m: "sticker" in m, after_message_id=sticker["message_id"])
    assert echoed["sticker"]["file_id"] == sticker["sticker"]["file_id"]

    command = await user.send_command("count")
    counted = await user.wait_for(
        lambda m: m.get("text") == "counting 2", after_message_id=command["message_id"]
    )
    assert "edit_date" in counted
    assert [m.get("text") for m in await user.bot_messages()].count("counting 1") == 0

    command = await user.send_command("album")
    group = await user.wait_for(lambda m: "media_group_id" in m, after_message_id=command["message_id"])
    assert group["caption"] == "two photos"

    command = await user.send_command("html")
    formatted = await user.wait_for(
        lambda m: m.get("text", "").startswith("bold"), after_message_id=command["message_id"]
    )
    assert [e["type"] for e in formatted["entities"]] == ["bold", "italic", "code"]


async def test_idle_polling_does_not_busy_loop(tg: LocalTelegram) -> None:
    bot = echo_aiogram.make_bot(tg.base_url, tg.token)
    timeout = 1
    async with polling(bot, polling_timeout=timeout):
        await asyncio.sleep(3.5 * timeout)
    await bot.session.close()
    polls = tg.requests()["getupdates"]
    assert 1 <= polls <= 6, f"{polls} getUpdates calls in 3.5 poll timeouts"


async def test_aiogram_webhook_with_secret_and_retries(tg: LocalTelegram, unused_tcp_port: int) -> None:
    bot = echo_aiogram.make_bot(tg.base_url, tg.token)
    dispatcher = echo_aiogram.build_dispatcher()
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token="hook-secret").register(app, path="/hook")
    url = f"http://127.0.0.1:{unused_tcp_port}/hook"

    await bot.set_webhook(url, secret_token="hook-secret")  # nobody listens yet: deliveries must be retried
    async with UserClient(tg.base_url, user_id=31) as user:
        sent = await user.send_text("are you there?")
        info = None
        for _ in range(50):
            info = await bot.get_webhook_info()
            if info.last_error_message:
                break
            await asyncio.sleep(0.1)
        assert info is not None and info.last_error_message and info.pending_update_count == 1

        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
        try:
            reply = await user.wait_for(
                lambda m: m.get("text") == "are you there?", after_message_id=sent["message_id"]
            )
            assert reply["chat"]["id"] == 31
            assert (await bot.get_webhook_info()).pending_update_count == 0

            await bot.set_webhook(url, secret_token="wrong-secret")  # aiogram refuses it: 401, retried
            refused = await user.send_text("secret?")
            await asyncio.sleep(0.5)
            assert not [m for m in await user.bot_messages() if m["message_id"] > refused["message_id"]]
            assert (await bot.get_webhook_info()).pending_update_count == 1
            await bot.set_webhook(url, secret_token="hook-secret")
            await user.wait_for(lambda m: m.get("text") == "secret?", after_message_id=refused["message_id"])
        finally:
            await bot.delete_webhook()
            await runner.cleanup()
    await bot.session.close()


async def test_python_telegram_bot_end_to_end(tg: LocalTelegram) -> None:
    application = echo_ptb.build_application(tg.base_url, tg.token)
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0.0, timeout=2)
        try:
            async with UserClient(tg.base_url, user_id=55, first_name="Grace") as user:
                sent = await user.send_text("hi ptb")
                await user.wait_for(lambda m: m.get("text") == "hi ptb", after_message_id=sent["message_id"])

                start = await user.send_command("start")
                hello = await user.wait_for(
                    lambda m: "reply_markup" in m, after_message_id=start["message_id"]
                )
                query = await user.press(hello["message_id"], "ping")
                assert (await user.wait_answer(query["id"]))["text"] == "pong"
                await user.wait_for(lambda m: m.get("text") == "Pong from PTB")

                photo = await user.send_photo(tiny_png((9, 99, 199), (80, 60)))
                echoed = await user.wait_for(lambda m: "photo" in m, after_message_id=photo["message_id"])
                assert echoed["caption"] == "photo 80x60"
                info = probe(await user.download(echoed["photo"][-1]["file_id"]))
                assert (info.width, info.height) == (80, 60)

                document = await user.send_document(
                    b"plain text", filename="note.txt", mime_type="text/plain"
                )
                doc = await user.wait_for(lambda m: "document" in m, after_message_id=document["message_id"])
                assert doc["document"]["file_name"] == "note.txt"
                assert await user.download(doc["document"]["file_id"]) == b"plain text"
        finally:
            await application.updater.stop()
            await application.stop()


@pytest.mark.slow
async def test_two_hundred_users_each_answered_once_in_order(tg: LocalTelegram) -> None:
    import httpx

    bot = echo_aiogram.make_bot(tg.base_url, tg.token)
    per_user = 5
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with (
        polling(bot, polling_timeout=5, handle_as_tasks=False),
        httpx.AsyncClient(limits=limits, timeout=120) as http,
    ):

        async def one_user(user_id: int) -> list[str]:
            user = UserClient(tg.base_url, user_id=user_id, first_name=f"U{user_id}", http=http)
            expected = [f"user {user_id} message {i}" for i in range(per_user)]
            for text in expected:
                await user.send_text(text)
            await user.wait_for(lambda m: m.get("text") == expected[-1], timeout=120)
            return [m["text"] for m in await user.bot_messages()]

        user_ids = range(10_000, 10_200)
        answers = await asyncio.gather(*(one_user(uid) for uid in user_ids))
    await bot.session.close()
    for uid, got in zip(user_ids, answers, strict=True):
        assert got == [f"user {uid} message {i}" for i in range(per_user)]
    assert sum(len(a) for a in answers) == 200 * per_user
