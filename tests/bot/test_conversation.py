"""The conversation end to end over HTTP against the local Telegram, with a fake ML side."""

from __future__ import annotations

import asyncio
import io

import pytest
from bot_helpers import FakeJobClient, button, buttons, jpeg, png, press_button, reply_to, text_of

from stylebot.telegram import UserClient

CHOICE = "How should I restyle"


def is_choice(m: dict) -> bool:
    return CHOICE in text_of(m)


def is_result(m: dict) -> bool:
    return "photo" in m and "⏱" in text_of(m)


async def choose(user: UserClient, message: dict, contains: str) -> dict:
    return await press_button(user, message, contains)


async def photo_to_choice(user: UserClient, data: bytes | None = None) -> dict:
    sent = await user.send_photo(data or jpeg())
    return await reply_to(user, sent, is_choice)


async def test_photo_then_pretrained_style_with_live_progress(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    assert (await choose(user, choice, "Monet")).get("text") == "Started."
    progress = await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    assert "Monet" in text_of(progress) and "left" in text_of(progress)
    assert button(progress, "Cancel")
    # The choice keyboard no longer applies once the job runs.
    assert not buttons(next(m for m in await user.history() if m["message_id"] == choice["message_id"]))
    job = next(iter(client.jobs.values()))
    assert job.spec.model == "style_monet" and job.spec.params.fast_dev_run
    job.release.set()
    result = await reply_to(user, choice, is_result)
    assert "Monet" in text_of(result) and button(result, "Another style") and button(result, "New photo")
    history = await user.bot_messages()
    # One progress message the whole time (edited in place, removed once the result is there).
    assert not any("Working" in text_of(m) for m in history)
    assert sum(is_result(m) for m in history) == 1


async def test_progress_message_is_edited_not_repeated(start_bot, user, telegram) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Cézanne")
    progress = await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    await asyncio.sleep(0.5)
    same = [m for m in await user.bot_messages() if "Style:" in text_of(m)]
    assert [m["message_id"] for m in same] == [progress["message_id"]]
    assert telegram.requests().get("editmessagemedia", 0) >= 1  # the preview replaced the picture
    next(iter(client.jobs.values())).release.set()
    await reply_to(user, choice, is_result)


async def test_album_gives_content_and_styles_then_weights(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    sent = await user.send_album([jpeg(), jpeg("texture_brick.jpg"), jpeg("texture_grass.jpg")])
    said = await reply_to(user, sent, lambda m: "first image of the album" in text_of(m))
    assert "other 2" in text_of(said)
    panel = await reply_to(user, sent, lambda m: "Style images: 2 of 5" in text_of(m))
    await choose(user, panel, "Weights")
    ask = await reply_to(user, panel, lambda m: "Send 2 numbers" in text_of(m))
    bad = await user.send_text("2 x")
    await reply_to(user, bad, lambda m: "Please send 2 numbers" in text_of(m))
    good = await user.send_text("2 1")
    panel2 = await reply_to(user, good, lambda m: "Weights: 2 : 1" in text_of(m))
    assert ask
    assert (await choose(user, panel2, "Stylize")).get("text") == "Started."
    result = await reply_to(user, panel2, is_result)
    assert "your 2 style images" in text_of(result)
    spec = next(iter(client.jobs.values())).spec
    assert spec.kind == "nst" and len(spec.style_keys) == 2 and spec.style_weights == [2.0, 1.0]


async def test_my_style_images_collected_one_by_one_and_limit(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "My style images")
    prompt = await reply_to(user, choice, lambda m: "Send 1–5 style images" in text_of(m))
    one = await user.send_document(png(), filename="style.png", mime_type="image/png")
    panel = await reply_to(user, one, lambda m: "Style images: 1 of 5" in text_of(m))
    six = await user.send_album([jpeg("texture_gravel.jpg", 40)] * 5)
    await reply_to(user, six, lambda m: "the limit is 5" in text_of(m))
    assert prompt and panel
    four = await user.send_album([jpeg("texture_gravel.jpg", 40)] * 4)
    full = await reply_to(user, four, lambda m: "Style images: 5 of 5" in text_of(m))
    await choose(user, full, "Stylize")
    await reply_to(user, full, is_result)
    assert len(next(iter(client.jobs.values())).spec.style_keys) == 5


async def test_document_in_document_out(start_bot, user) -> None:
    await start_bot(FakeJobClient())
    sent = await user.send_document(png(64), filename="me.png", mime_type="image/png")
    choice = await reply_to(user, sent, is_choice)
    await choose(user, choice, "Ukiyo-e")
    doc = await reply_to(user, choice, lambda m: "document" in m)
    assert doc["document"]["file_name"].endswith(".jpg") and button(doc, "New photo")
    assert any(is_result(m) for m in await user.bot_messages())
    assert (await user.download(doc["document"]["file_id"]))[:2] == b"\xff\xd8"


async def test_result_buttons_another_style_and_new_photo(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Monet")
    result = await reply_to(user, choice, is_result)
    await choose(user, result, "Another style")
    again = await reply_to(user, result, is_choice)
    await choose(user, again, "Summer")
    second = await reply_to(user, again, is_result)
    specs = [j.spec for j in client.jobs.values()]
    assert specs[0].content_key == specs[1].content_key and specs[1].model == "summer2winter_yosemite"
    # Buttons that no longer apply are removed.
    first = next(m for m in await user.history() if m["message_id"] == result["message_id"])
    assert not buttons(first)
    await choose(user, second, "New photo")
    await reply_to(user, second, lambda m: "Send me a new photo" in text_of(m))


WRONG_INPUTS = ("text", "sticker", "pdf", "video", "broken", "tiny", "big")


async def send_wrong(user: UserClient, kind: str) -> tuple[dict, str]:
    """Send one wrong input; returns it and a fragment of the expected specific reply."""
    if kind == "text":
        return await user.send_text("hello there"), ""
    if kind == "sticker":
        return await user.send_sticker(), "That is a sticker"
    if kind == "pdf":
        return await user.send_document(b"%PDF-1.4 nope", filename="a.pdf", mime_type="application/pdf"), (
            "not an image"
        )
    if kind == "video":
        return await user.send_document(
            b"\x00\x00\x00\x18ftypmp42", filename="v.mp4", mime_type="video/mp4"
        ), ("Videos")
    if kind == "broken":
        return await user.send_document(jpeg()[:300], filename="cut.jpg", mime_type="image/jpeg"), "damaged"
    if kind == "tiny":
        return await user.send_document(png(8), filename="tiny.png", mime_type="image/png"), "too small"
    blob = jpeg() + b"\0" * (20 * 2**20 + 10)
    return await user.send_document(blob, filename="huge.jpg", mime_type="image/jpeg"), "limit is 20 MB"


async def reach_state(user: UserClient, state: str) -> dict:
    """Bring the chat to ``state``; returns the message whose buttons continue from there."""
    hello = await user.send_command("start")
    start = await reply_to(user, hello)
    if state == "idle":
        return start
    choice = await photo_to_choice(user)
    if state == "choosing":
        return choice
    await choose(user, choice, "My style images")
    prompt = await reply_to(user, choice, lambda m: "Send 1–5 style images" in text_of(m))
    if state == "collecting":
        return prompt
    style = await user.send_album([jpeg("texture_brick.jpg", 40), jpeg("texture_grass.jpg", 40)])
    panel = await reply_to(user, style, lambda m: "Style images: 2 of 5" in text_of(m))
    await choose(user, panel, "Weights")
    await reply_to(user, panel, lambda m: "Send 2 numbers" in text_of(m))
    return panel


@pytest.mark.parametrize("state", ["idle", "choosing", "collecting", "weights"])
async def test_every_wrong_input_gets_a_specific_reply_and_state_stays(start_bot, user, state) -> None:
    client = FakeJobClient()
    await start_bot(client)
    anchor = await reach_state(user, state)
    hints = {
        "idle": "Send me a photo",
        "choosing": "Choose a style",
        "collecting": "Send style images",
        "weights": "numbers",
    }
    for kind in WRONG_INPUTS:
        if kind == "big" and state in ("choosing", "weights"):
            continue  # one oversized upload per state kind is enough to keep the suite quick
        sent, expected = await send_wrong(user, kind)
        reply = await reply_to(user, sent)
        if kind == "text":
            expected = hints[state]
        elif state == "weights" and kind in ("broken", "tiny", "big"):
            expected = "waiting for the weights, not for an image"
        assert expected in text_of(reply), (state, kind, text_of(reply))
    # The conversation goes on from where it was.
    if state == "idle":
        await photo_to_choice(user)
    elif state == "choosing":
        assert (await choose(user, anchor, "Monet")).get("text") == "Started."
    elif state == "collecting":
        one = await user.send_photo(jpeg("texture_brick.jpg", 40))
        await reply_to(user, one, lambda m: "Style images: 1 of 5" in text_of(m))
    else:
        ok = await user.send_text("1 3")
        await reply_to(user, ok, lambda m: "Weights: 1 : 3" in text_of(m))
    assert not client.jobs or state == "choosing"


async def test_cancel_mid_job_cancels_on_the_ml_side_and_no_result_arrives(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Monet")
    await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    cancel = await user.send_command("cancel")
    await reply_to(user, cancel, lambda m: "Stopped your stylization" in text_of(m))
    job_id = next(iter(client.jobs))
    assert client.cancelled == [job_id]
    client.jobs[job_id].release.set()
    await asyncio.sleep(0.5)
    messages = await user.bot_messages()
    assert not any(is_result(m) for m in messages)
    assert any("Cancelled" in text_of(m) for m in messages)  # the progress message says so
    again = await user.send_command("cancel")
    await reply_to(user, again, lambda m: "Nothing to cancel" in text_of(m))


async def test_progress_cancel_button(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Monet")
    progress = await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    assert (await choose(user, progress, "Cancel")).get("text") == "Cancelled."
    assert client.cancelled == [progress and next(iter(client.jobs))]


async def test_second_job_while_one_runs_is_explained(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Monet")
    await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    second = await photo_to_choice(user, jpeg("astronaut.jpg"))
    assert (await choose(user, second, "Cézanne")).get("text") == "Not started."
    await reply_to(user, second, lambda m: "one per person at a time" in text_of(m))
    next(iter(client.jobs.values())).release.set()
    await reply_to(user, second, is_result)
    # The choice is still there: once the first job is done, the same button starts the second.
    assert (await choose(user, second, "Cézanne")).get("text") == "Started."
    list(client.jobs.values())[1].release.set()
    await user.wait_for(lambda m: is_result(m) and "Cézanne" in text_of(m), timeout=15)


async def test_two_users_at_once(start_bot, telegram) -> None:
    await start_bot(FakeJobClient())

    async def one(user_id: int, style: str) -> str:
        async with UserClient(telegram.base_url, user_id=user_id, language_code="en") as u:
            choice = await photo_to_choice(u)
            await choose(u, choice, style)
            return text_of(await reply_to(u, choice, is_result))

    results = await asyncio.gather(one(2001, "Monet"), one(2002, "Ukiyo-e"))
    assert "Monet" in results[0] and "Ukiyo-e" in results[1]


async def test_ml_server_down_then_recovers(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    client.down = True
    sent = await user.send_photo(jpeg())
    await reply_to(user, sent, lambda m: "unavailable right now" in text_of(m))
    client.down = False
    choice = await photo_to_choice(user)
    client.down = True
    assert (await choose(user, choice, "Monet")).get("text") == "Not started."
    await reply_to(user, choice, lambda m: "unavailable right now" in text_of(m))
    client.down = False
    await choose(user, choice, "Monet")
    await reply_to(user, choice, is_result)


async def test_ml_server_down_while_watching_still_delivers(start_bot, user) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "Monet")
    await reply_to(user, choice, lambda m: "50%" in text_of(m), timeout=10)
    client.down = True
    await asyncio.sleep(0.3)
    next(iter(client.jobs.values())).release.set()
    client.down = False
    await reply_to(user, choice, is_result, timeout=20)


async def test_old_keyboards_are_removed_and_forged_callbacks_answered(start_bot, user, telegram) -> None:
    client = FakeJobClient()
    app = await start_bot(client)
    old = await photo_to_choice(user)
    new = await photo_to_choice(user, jpeg("rocket.jpg"))
    assert not buttons(next(m for m in await user.history() if m["message_id"] == old["message_id"]))
    # Hostile callback data cannot come through the emulator's UI; feed it to the dispatcher directly.
    from aiogram.types import Update

    for n, data in enumerate(
        (
            "garbage",
            "ch:deadbeef:pre:style_monet",
            button(new, "7").replace(":7", ":999"),  # a tile that is not on the sheet
            button(new, "7").replace(":7", ":29"),  # Van Gogh: not installed, so not offered
            button(new, "7").replace(":7", ":-1"),
            "sp:" + button(new, "7").split(":")[1] + ":../x",
        )
    ):
        update = Update.model_validate(
            {
                "update_id": 10**6 + n,
                "callback_query": {
                    "id": "forged",
                    "chat_instance": "x",
                    "data": data,
                    "from": {"id": user.user_id, "is_bot": False, "first_name": "Ada"},
                    "message": {
                        "message_id": new["message_id"],
                        "date": 0,
                        "chat": {"id": user.user_id, "type": "private"},
                    },
                },
            }
        )
        await app.dispatcher.feed_update(app.bot, update)
    assert not client.jobs
    assert (await choose(user, new, "Monet")).get("text") == "Started."


async def test_styles_not_installed_are_not_shown_to_users(start_bot, user, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="stylebot.bot.styles")
    await start_bot(FakeJobClient())
    choice = await photo_to_choice(user)
    names = " ".join(buttons(choice))
    for page_two in ("More",):
        await choose(user, choice, page_two)
    names += " ".join(
        buttons(next(m for m in await user.history() if m["message_id"] == choice["message_id"]))
    )
    assert "26 Monet" in names and "28 Ukiyo-e" in names and "Van Gogh" not in names and "29" not in names
    assert "unavailable" not in text_of(choice) and "stylebot models" not in text_of(choice)
    styles = await user.send_command("styles")
    listing = text_of(await reply_to(user, styles))
    assert "26 Monet" in listing and "Van Gogh" not in listing and "26 gallery styles" in listing
    # The operator is told once, at start, with the command that installs them.
    lines = [r.getMessage() for r in caplog.records if "not shown to users" in r.getMessage()]
    assert len(lines) == 1 and "style_vangogh" in lines[0] and "stylebot models pull" in lines[0]


async def test_photo_gives_the_sheet_and_a_tile_goes_straight_to_the_result(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    sent = await user.send_photo(jpeg(size=96))
    sheet = await reply_to(user, sent, is_choice)
    assert "photo" in sheet  # the picture of every style, numbered
    assert sheet["photo"][-1]["width"] == 96  # the sheet the ML side rendered (the fake's astronaut)
    numbers = [t for t in buttons(sheet) if t.isdigit()]
    assert numbers == [str(n) for n in range(20)] and any("More" in t for t in buttons(sheet))
    assert (await choose(user, sheet, "7")).get("text") == "Started."
    result = await reply_to(user, sheet, is_result)
    assert "gallery style 7" in text_of(result)
    spec = next(iter(client.jobs.values())).spec
    assert spec.kind == "gallery" and spec.gallery == {7: 1.0}
    assert spec.params.size == 96  # "original size" is the default for pretrained results
    # Another style for the same photo: the sheet again, and a CycleGAN tile.
    await choose(user, result, "Another style")
    again = await reply_to(user, result, is_choice)
    await choose(user, again, "27 Cézanne")
    second = await reply_to(user, again, lambda m: is_result(m) and "Cézanne" in text_of(m))
    assert list(client.jobs.values())[1].spec.model == "style_cezanne" and second


async def test_without_the_gallery_network_the_choice_has_the_installed_styles(start_bot, user) -> None:
    client = FakeJobClient(sheets=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    assert (
        "photo" not in choice
        and "Monet" in buttons(choice)
        and not any("Van Gogh" in b for b in buttons(choice))
    )
    assert (await choose(user, choice, "Monet")).get("text") == "Started."
    await reply_to(user, choice, is_result)


async def test_style_images_refine_with_changing_previews_and_good_send_it(
    start_bot, user, monkeypatch
) -> None:
    client = FakeJobClient(auto=False)
    await start_bot(client)
    choice = await photo_to_choice(user)
    await choose(user, choice, "My style images")
    one = await user.send_photo(jpeg("texture_brick.jpg", 40))
    panel = await reply_to(user, one, lambda m: "Style images: 1 of 5" in text_of(m))
    await choose(user, panel, "Stylize")
    progress = await reply_to(user, panel, lambda m: "50%" in text_of(m), timeout=10)
    assert button(progress, "Good, send it") and button(progress, "Cancel")
    spec = next(iter(client.jobs.values())).spec
    assert spec.kind == "nst" and spec.params.preset == "balanced"  # refinement: on by default
    assert (await choose(user, progress, "Good, send it")).get("text") == "Sending this image…"
    await reply_to(user, progress, is_result)
    assert client.finished_early == [spec.job_id]


async def test_refine_off_gives_the_instant_result(start_bot, user, settings, monkeypatch) -> None:
    from stylebot.config import get_settings

    monkeypatch.setenv("STYLEBOT_REFINE", "off")
    get_settings.cache_clear()
    client = FakeJobClient()
    await start_bot(client, app_settings=get_settings())
    sent = await user.send_album([jpeg(size=80), jpeg("texture_brick.jpg", 40)])
    panel = await reply_to(user, sent, lambda m: "Style images: 1 of 5" in text_of(m))
    said = next(m for m in await user.bot_messages() if "first image of the album" in text_of(m))
    assert "the other one as a style image" in text_of(said)
    await choose(user, panel, "Stylize")
    await reply_to(user, panel, is_result)
    params = next(iter(client.jobs.values())).spec.params
    assert params.preset == "instant" and params.size == 80
    # A user can turn it back on in /settings.
    menu = await reply_to(user, await user.send_command("settings"), lambda m: "Settings" in text_of(m))
    await choose(user, menu, "Refine after the instant result: off")
    menu = next(m for m in await user.history() if m["message_id"] == menu["message_id"])
    assert any("Refine after the instant result: on" in b for b in buttons(menu))


async def test_russian_from_language_code_and_switch_in_settings(start_bot, telegram) -> None:
    client = FakeJobClient()
    await start_bot(client)
    async with UserClient(telegram.base_url, user_id=3001, language_code="ru-RU") as ru:
        hello = await ru.send_command("start")
        assert "Отправьте мне фото" in text_of(await reply_to(ru, hello))
    async with UserClient(telegram.base_url, user_id=3002, language_code="en") as en:
        menu_cmd = await en.send_command("settings")
        menu = await reply_to(en, menu_cmd)
        await choose(en, menu, "Русский")
        await choose(en, menu, "Сильно")  # the menu is in Russian from now on
        await choose(en, menu, "768px")
        assert "• Original (up to 2048) •" not in str(
            next(m for m in await en.history() if m["message_id"] == menu["message_id"])
        )
        await choose(en, menu, "цвета фото: нет")
        hello = await en.send_command("help")
        assert "Команды" in text_of(await reply_to(en, hello))
        sent = await en.send_photo(jpeg())
        choice = await reply_to(en, sent, lambda m: "Как" in text_of(m))
        await choose(en, choice, "Моне")
        await reply_to(en, choice, lambda m: "photo" in m and "⏱" in text_of(m))
    params = next(iter(client.jobs.values())).spec.params
    assert (params.size, params.strength, params.preserve_colors) == (768, 3.0, True)


def animated(fmt: str = "GIF", frames: int = 3, size: int = 48) -> bytes:
    """A small animation whose first frame is red and whose other frames are blue."""
    from PIL import Image

    colours = [(220, 20, 20)] + [(20, 20, 220)] * (frames - 1)
    images = [Image.new("RGB", (size, size), c) for c in colours]
    buf = io.BytesIO()
    images[0].save(buf, fmt, save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


async def test_gifs_videos_and_animated_webp_use_the_first_frame_and_say_so(start_bot, user) -> None:
    from stylebot.imaging import load_image

    client = FakeJobClient()
    await start_bot(client)
    # A GIF as Telegram's apps send it (an animation message): its first frame becomes the photo.
    sent = await user.send_animation(animated())
    said = await reply_to(user, sent, lambda m: "first frame" in text_of(m))
    assert "That was an animation or a video" in text_of(said)
    choice = await reply_to(user, sent, is_choice)
    first = load_image(client.inputs[max(client.inputs, key=list(client.inputs).index)])
    assert first.getpixel((first.width // 2, first.height // 2))[0] > 150  # red: the first frame
    # An animated WebP as a style image: the same note, and it counts as one style image.
    await choose(user, choice, "My style images")
    prompt = await reply_to(user, choice, lambda m: "Send 1–5 style images" in text_of(m))
    webp = await user.send_document(animated("WEBP"), filename="moving.webp", mime_type="image/webp")
    await reply_to(user, webp, lambda m: "first frame" in text_of(m))
    await reply_to(user, webp, lambda m: "Style images: 1 of 5" in text_of(m))
    # A still GIF file is just an image: no note.
    still = await user.send_document(animated(frames=1), filename="still.gif", mime_type="image/gif")
    await reply_to(user, still, lambda m: "Style images: 2 of 5" in text_of(m))
    later = [m for m in await user.bot_messages() if m["message_id"] > still["message_id"]]
    assert not any("first frame" in text_of(m) for m in later) and prompt
    # A video the emulator has no frame for: said plainly, nothing changes.
    video = await user.send_animation(b"\x00\x00\x00\x18ftypmp42", filename="v.mp4", mime_type="video/mp4")
    reply = await reply_to(user, video)
    assert "could not get one from this file" in text_of(reply)


async def test_result_buttons_stronger_weaker_and_colours_rerun_the_same_style(start_bot, user) -> None:
    client = FakeJobClient()
    await start_bot(client)
    sheet = await photo_to_choice(user)
    await choose(user, sheet, "7")
    result = await reply_to(user, sheet, is_result)
    assert button(result, "Stronger") and button(result, "Weaker") and button(result, "colours: off")
    assert (await choose(user, result, "Stronger")).get("text") == "Started."
    stronger = await reply_to(user, result, is_result)
    assert (await choose(user, stronger, "colours: off")).get("text") == "Started."
    coloured = await reply_to(user, stronger, is_result)
    assert button(coloured, "colours: on")
    await choose(user, coloured, "Weaker")
    await reply_to(user, coloured, is_result)
    specs = [j.spec for j in client.jobs.values()]
    assert [s.gallery for s in specs] == [{7: 1.0}] * 4
    assert len({s.content_key for s in specs}) == 1
    assert [(s.params.strength, s.params.preserve_colors) for s in specs] == [
        (1.0, False),
        (2.0, False),
        (2.0, True),
        (1.0, True),
    ]
    # A CycleGAN takes neither: its result offers only another style and a new photo.
    await choose(user, await reply_to(user, await user.send_photo(jpeg()), is_choice), "26 Monet")
    monet = await user.wait_for(lambda m: is_result(m) and "Monet" in text_of(m), timeout=15)
    assert not any(word in " ".join(buttons(monet)) for word in ("Stronger", "Weaker", "colours"))
