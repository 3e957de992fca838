"""First end-to-end checks: the aiogram echo bot against the emulator, driven by a UserClient."""

from __future__ import annotations

from echo_aiogram import tiny_png

from stylebot.telegram import UserClient


async def test_text_is_echoed(echo_bot, user: UserClient) -> None:
    sent = await user.send_text("hello there")
    reply = await user.wait_for(lambda m: m.get("text") == "hello there", after_message_id=sent["message_id"])
    assert reply["chat"]["id"] == user.user_id


async def test_photo_round_trip(echo_bot, user: UserClient) -> None:
    sent = await user.send_photo(tiny_png((10, 200, 10), (96, 64)))
    reply = await user.wait_for(lambda m: "photo" in m, after_message_id=sent["message_id"])
    assert reply["caption"] == "photo 96x64"
    data = await user.download(reply["photo"][-1]["file_id"])
    assert data[:2] == b"\xff\xd8"


async def test_button_edits_message(echo_bot, user: UserClient) -> None:
    await user.send_command("start")
    hello = await user.wait_for(lambda m: "reply_markup" in m)
    query = await user.press(hello["message_id"], "ping")
    assert query["chat_instance"]
    answer = await user.wait_answer(query["id"])
    assert answer["text"] == "pong"
    edited = await user.wait_for(lambda m: m.get("text") == "Pong!")
    assert edited["message_id"] == hello["message_id"]
    assert "reply_markup" not in edited
