"""The conversation end to end over HTTP against the local Telegram, with a fake ML side."""

from __future__ import annotations

from bot_helpers import FakeJobClient, button, jpeg, reply_to, text_of


async def test_photo_then_pretrained_style_delivers_one_result(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    sent = await user.send_photo(jpeg())
    choice = await reply_to(user, sent, lambda m: "How should I restyle" in text_of(m))
    press = await user.press(choice["message_id"], button(choice, "Monet"))
    answer = await user.wait_answer(press["id"])
    assert answer.get("text") == "Started."
    result = await reply_to(user, choice, lambda m: "photo" in m and "⏱" in text_of(m))
    assert "Monet" in text_of(result)
    assert button(result, "Another style")
    job = next(iter(client.jobs.values()))
    assert job.spec.model == "style_monet" and job.spec.params.fast_dev_run
