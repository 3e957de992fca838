"""Bot API methods over raw HTTP: every answer validates against aiogram's own types, and what Telegram
refuses is refused here with Telegram's words."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiogram import methods
from echo_aiogram import tiny_png
from PIL import Image
from pydantic import BaseModel, TypeAdapter

from stylebot.imaging import probe
from stylebot.telegram import FloodLimit, LocalTelegram, UserClient, UserClientError


class BotHttp:
    """A bot speaking plain HTTP: JSON bodies, or multipart when files are given."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url}/bot{token}"
        self.file_base = f"{base_url}/file/bot{token}"
        self.http = httpx.AsyncClient(timeout=30)

    async def raw(self, method: str, files: dict[str, tuple] | None = None, **params: Any) -> httpx.Response:
        if files:
            form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
            return await self.http.post(f"{self.base}/{method}", data=form, files=files)
        return await self.http.post(f"{self.base}/{method}", json=params)

    async def ok(self, method: str, files: dict[str, tuple] | None = None, **params: Any) -> Any:
        response = await self.raw(method, files, **params)
        body = response.json()
        assert response.status_code == 200 and body["ok"] is True, body
        return validated(method, body["result"])

    async def error(
        self, method: str, files: dict[str, tuple] | None = None, **params: Any
    ) -> tuple[int, str]:
        response = await self.raw(method, files, **params)
        body = response.json()
        assert body["ok"] is False and body["error_code"] == response.status_code, body
        return body["error_code"], body["description"]


def _no_unknown_fields(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{where}: fields aiogram does not know: {sorted(value.model_extra)}"
        for name in type(value).model_fields:
            _no_unknown_fields(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _no_unknown_fields(item, f"{where}[{i}]")


def validated(method: str, result: Any) -> Any:
    method_class = getattr(methods, method[0].upper() + method[1:])
    parsed = TypeAdapter(method_class.__returning__).validate_python(result)
    _no_unknown_fields(parsed, method)
    return result


@pytest.fixture
async def bot(tg: LocalTelegram) -> AsyncIterator[BotHttp]:
    client = BotHttp(tg.base_url, tg.token)
    yield client
    await client.http.aclose()


def jpeg(size: tuple[int, int], color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


async def test_every_method_answers_what_aiogram_expects(bot: BotHttp, user: UserClient) -> None:
    me = await bot.ok("getMe")
    assert me["is_bot"] is True and me["username"].endswith("bot")
    await user.send_command("start")
    await user.send_photo(jpeg((120, 80)), caption="a photo")
    await user.send_document(b"%PDF-1.4 tiny", filename="notes.pdf", mime_type="application/pdf")
    await user.send_sticker(emoji="👍")
    await user.send_album([jpeg((64, 64)), jpeg((64, 48))])
    updates = await bot.ok("getUpdates", timeout=0)
    kinds = [next(k for k in ("text", "photo", "document", "sticker") if k in u["message"]) for u in updates]
    assert kinds == ["text", "photo", "document", "sticker", "photo", "photo"]
    assert updates[0]["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert updates[4]["message"]["media_group_id"] == updates[5]["message"]["media_group_id"]
    chat_id = user.user_id

    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    sent = await bot.ok(
        "sendMessage", chat_id=chat_id, text="<b>hi</b> there", parse_mode="HTML", reply_markup=keyboard
    )
    assert sent["text"] == "hi there" and sent["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
    query = await user.press(sent["message_id"], "go")
    updates = await bot.ok("getUpdates", offset=updates[-1]["update_id"] + 1, timeout=1)
    assert updates[-1]["callback_query"]["chat_instance"] == query["chat_instance"]
    assert await bot.ok("answerCallbackQuery", callback_query_id=query["id"], text="done") is True
    assert (await user.wait_answer(query["id"]))["text"] == "done"

    edited = await bot.ok(
        "editMessageText",
        chat_id=chat_id,
        message_id=sent["message_id"],
        text="edited",
        reply_markup=keyboard,
    )
    assert edited["edit_date"] and edited["reply_markup"] == keyboard
    await bot.ok("editMessageReplyMarkup", chat_id=chat_id, message_id=sent["message_id"])

    photo = await bot.ok(
        "sendPhoto",
        files={"photo": ("p.png", tiny_png((1, 2, 3)), "image/png")},
        chat_id=str(chat_id),
        caption="cap",
    )
    await bot.ok("editMessageCaption", chat_id=chat_id, message_id=photo["message_id"], caption="new caption")
    await bot.ok(
        "editMessageMedia",
        files={"fresh": ("q.png", tiny_png((200, 2, 3)), "image/png")},
        chat_id=str(chat_id),
        message_id=str(photo["message_id"]),
        media={"type": "photo", "media": "attach://fresh", "caption": "replaced"},
    )
    document = await bot.ok(
        "sendDocument", files={"document": ("report.csv", b"a,b\n1,2\n", "text/csv")}, chat_id=str(chat_id)
    )
    assert (
        document["document"]["file_name"] == "report.csv" and document["document"]["mime_type"] == "text/csv"
    )
    album = await bot.ok(
        "sendMediaGroup",
        files={
            "one": ("1.png", tiny_png((9, 9, 9)), "image/png"),
            "two": ("2.png", tiny_png((99, 9, 9)), "image/png"),
        },
        chat_id=str(chat_id),
        media=[
            {"type": "photo", "media": "attach://one", "caption": "album"},
            {"type": "photo", "media": "attach://two"},
        ],
    )
    assert len({m["media_group_id"] for m in album}) == 1
    sticker_id = (await user.history())[3]["sticker"]["file_id"]
    await bot.ok("sendSticker", chat_id=chat_id, sticker=sticker_id)
    await bot.ok("sendPhoto", chat_id=chat_id, photo=photo["photo"][0]["file_id"])  # resend by file_id
    assert await bot.ok("sendChatAction", chat_id=chat_id, action="upload_photo") is True

    file = await bot.ok("getFile", file_id=document["document"]["file_id"])
    download = await bot.http.get(f"{bot.file_base}/{file['file_path']}")
    assert download.content == b"a,b\n1,2\n"

    commands = [{"command": "start", "description": "Begin"}, {"command": "help", "description": "Help"}]
    assert await bot.ok("setMyCommands", commands=commands) is True
    assert await bot.ok("getMyCommands") == commands
    assert await bot.ok("getMyCommands", language_code="de") == []
    assert (await user.chat_state())["commands"] == commands
    assert await bot.ok("deleteMyCommands") is True

    copied = await bot.ok("copyMessage", chat_id=chat_id, from_chat_id=chat_id, message_id=1)
    forwarded = await bot.ok("forwardMessage", chat_id=chat_id, from_chat_id=chat_id, message_id=1)
    assert forwarded["forward_origin"]["sender_user"]["id"] == chat_id
    assert await bot.ok("deleteMessage", chat_id=chat_id, message_id=copied["message_id"]) is True
    assert copied["message_id"] not in [m["message_id"] for m in await user.history()]

    assert await bot.ok("setWebhook", url="http://127.0.0.1:9/hook", secret_token="s3cret") is True
    info = await bot.ok("getWebhookInfo")
    assert info["url"] == "http://127.0.0.1:9/hook"
    assert await bot.ok("deleteWebhook") is True
    assert (await bot.ok("getWebhookInfo"))["url"] == ""


async def test_photo_is_kept_as_jpeg_variants_largest_last(bot: BotHttp, user: UserClient) -> None:
    message = await user.send_photo(jpeg((1000, 700)))
    sizes = message["photo"]
    widths = [s["width"] for s in sizes]
    assert widths == sorted(widths) and widths[-1] == 1000 and widths[0] == 90
    assert max(sizes[1]["width"], sizes[1]["height"]) == 320
    assert len({s["file_unique_id"] for s in sizes}) == len(sizes)
    file = await bot.ok("getFile", file_id=sizes[-1]["file_id"])
    data = (await bot.http.get(f"{bot.file_base}/{file['file_path']}")).content
    info = probe(data)
    assert (info.format, info.width, info.height) == ("JPEG", 1000, 700)


async def test_documents_keep_name_and_type_and_images_get_a_thumbnail(user: UserClient) -> None:
    image = await user.send_document(
        tiny_png((5, 5, 5), (200, 100)), filename="scan.png", mime_type="image/png"
    )
    assert image["document"]["mime_type"] == "image/png" and image["document"]["file_name"] == "scan.png"
    assert image["document"]["thumbnail"]["width"] == 200
    other = await user.send_document(b"PK\x03\x04zip", filename="../../etc/archive.zip", mime_type="x/evil")
    assert other["document"]["file_name"] == "archive.zip"
    assert other["document"]["mime_type"] == "application/zip"
    assert "thumbnail" not in other["document"]


@pytest.mark.parametrize(
    ("method", "params", "code", "description"),
    [
        ("sendMessage", {"chat_id": 999, "text": "x"}, 400, "Bad Request: chat not found"),
        ("sendMessage", {"chat_id": "CHAT", "text": "   "}, 400, "Bad Request: message text is empty"),
        ("sendMessage", {"chat_id": "CHAT", "text": "x" * 4097}, 400, "Bad Request: message is too long"),
        ("sendMessage", {"chat_id": "CHAT", "text": "😀" * 2049}, 400, "Bad Request: message is too long"),
        (
            "sendMessage",
            {"chat_id": "CHAT", "text": "Hi.", "parse_mode": "MarkdownV2"},
            400,
            "Bad Request: can't parse entities: Character '.' is reserved",
        ),
        (
            "sendMessage",
            {"chat_id": "CHAT", "text": "<blink>x</blink>", "parse_mode": "HTML"},
            400,
            "Bad Request: can't parse entities",
        ),
        (
            "sendMessage",
            {"chat_id": "CHAT", "text": "1 < 2", "parse_mode": "HTML"},
            400,
            "Bad Request: can't parse entities",
        ),
        (
            "sendMessage",
            {
                "chat_id": "CHAT",
                "text": "x",
                "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "d" * 65}]]},
            },
            400,
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            "sendMessage",
            {"chat_id": "CHAT", "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "a"}]]}},
            400,
            "Bad Request: can't parse inline keyboard button",
        ),
        (
            "sendMessage",
            {"chat_id": "CHAT", "text": "x", "reply_to_message_id": 999},
            400,
            "Bad Request: message to be replied not found",
        ),
        (
            "sendPhoto",
            {"chat_id": "CHAT", "photo": "nonexistent-file-id"},
            400,
            "Bad Request: wrong file identifier/HTTP URL specified",
        ),
        (
            "sendPhoto",
            {"chat_id": "CHAT", "photo": "http://169.254.169.254/latest"},
            400,
            "Bad Request: failed to get HTTP URL content",
        ),
        (
            "sendChatAction",
            {"chat_id": "CHAT", "action": "dancing"},
            400,
            "Bad Request: wrong parameter action in request",
        ),
        (
            "editMessageText",
            {"chat_id": "CHAT", "message_id": 1, "text": "mine now"},
            400,
            "Bad Request: message can't be edited",
        ),
        (
            "editMessageText",
            {"chat_id": "CHAT", "message_id": 77, "text": "x"},
            400,
            "Bad Request: message to edit not found",
        ),
        (
            "deleteMessage",
            {"chat_id": "CHAT", "message_id": 77},
            400,
            "Bad Request: message to delete not found",
        ),
        ("answerCallbackQuery", {"callback_query_id": "123"}, 400, "Bad Request: query is too old"),
        ("getFile", {"file_id": "nope"}, 400, "Bad Request: wrong file identifier"),
        (
            "setMyCommands",
            {"commands": [{"command": "Bad Command", "description": "x"}]},
            400,
            "Bad Request: BOT_COMMAND_INVALID",
        ),
        ("setWebhook", {"url": "ftp://x"}, 400, "Bad Request: bad webhook"),
        (
            "setWebhook",
            {"url": "http://127.0.0.1:9/", "secret_token": "no spaces"},
            400,
            "Bad Request: secret token contains unallowed characters",
        ),
        ("sendInvoice", {"chat_id": "CHAT"}, 404, "Not Found"),
    ],
)
async def test_refusals_use_telegrams_words(
    bot: BotHttp, user: UserClient, method: str, params: dict, code: int, description: str
) -> None:
    await user.send_text("hello")
    params = {k: (user.user_id if v == "CHAT" else v) for k, v in params.items()}
    got_code, got_description = await bot.error(method, **params)
    assert got_code == code
    assert got_description.startswith(description), got_description


async def test_identical_edit_is_not_modified(bot: BotHttp, user: UserClient) -> None:
    await user.send_text("hi")
    sent = await bot.ok("sendMessage", chat_id=user.user_id, text="same")
    code, description = await bot.error(
        "editMessageText", chat_id=user.user_id, message_id=sent["message_id"], text="same"
    )
    assert (code, description.split(":")[1].strip()) == (400, "message is not modified")


async def test_commands_and_links_in_bot_texts_become_entities(bot: BotHttp, user: UserClient) -> None:
    """As on Telegram, a bot's "/help" is a tappable command, with or without parse_mode."""
    await user.send_text("hi")
    plain = await bot.ok(
        "sendMessage", chat_id=user.user_id, text="Send /help or /start@my_bot, see https://x.org"
    )
    kinds = [(e["type"], e["offset"], e["length"]) for e in plain["entities"]]
    assert kinds == [("bot_command", 5, 5), ("bot_command", 14, 13), ("url", 33, 13)]
    html = await bot.ok(
        "sendMessage", chat_id=user.user_id, text="<b>/cancel</b> now, or /settings", parse_mode="HTML"
    )
    assert [(e["type"], e["offset"]) for e in html["entities"]] == [("bold", 0), ("bot_command", 16)]
    assert not any(
        e["type"] == "bot_command" and e["offset"] == 0 for e in html["entities"]
    )  # given ones win
    files = {"photo": ("p.png", tiny_png((1, 2, 3)), "image/png")}
    photo = await bot.ok("sendPhoto", files=files, chat_id=str(user.user_id), caption="🎨 then /styles")
    assert photo["caption_entities"] == [{"type": "bot_command", "offset": 8, "length": 7}]  # UTF-16 offsets
    edited = await bot.ok(
        "editMessageText", chat_id=user.user_id, message_id=plain["message_id"], text="no commands"
    )
    assert "entities" not in edited
    # The user's side sees the same entities (what the web chat renders as links).
    shown = next(m for m in await user.history() if m["message_id"] == html["message_id"])
    assert shown["entities"] == html["entities"]


async def test_text_where_there_is_none_and_caption_limits(bot: BotHttp, user: UserClient) -> None:
    await user.send_text("hi")
    photo = await bot.ok(
        "sendPhoto", files={"photo": ("p.png", tiny_png((1, 2, 3)), "image/png")}, chat_id=str(user.user_id)
    )
    assert (
        await bot.error("editMessageText", chat_id=user.user_id, message_id=photo["message_id"], text="t")
    )[1] == ("Bad Request: there is no text in the message to edit")
    files = {"photo": ("p.png", tiny_png((1, 2, 3)), "image/png")}
    code, description = await bot.error(
        "sendPhoto", files=files, chat_id=str(user.user_id), caption="c" * 1025
    )
    assert (code, description) == (400, "Bad Request: message caption is too long")
    code, description = await bot.error(
        "sendPhoto", files={"photo": ("p.png", b"not an image", "image/png")}, chat_id=str(user.user_id)
    )
    assert (code, description) == (400, "Bad Request: IMAGE_PROCESS_FAILED")


async def test_tokens_and_chats_the_bot_may_not_use(tg: LocalTelegram, user: UserClient) -> None:
    async with httpx.AsyncClient() as http:
        for token in ("not-a-token", "123:has space", ""):
            response = await http.post(f"{tg.base_url}/bot{token}/getMe")
            assert response.status_code in (401, 404)
            assert response.json()["ok"] is False
    await user.send_text("hi")  # known user, but this bot never heard from them
    other = BotHttp(tg.base_url, "987654:another-bot-token")
    assert await other.error("sendMessage", chat_id=user.user_id, text="hi") == (
        403,
        "Forbidden: bot can't initiate conversation with a user",
    )
    await user.block()
    own = BotHttp(tg.base_url, tg.token)
    assert await own.error("sendMessage", chat_id=user.user_id, text="hi") == (
        403,
        "Forbidden: bot was blocked by the user",
    )
    updates = await own.ok("getUpdates")
    assert updates[-1]["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    await other.http.aclose()
    await own.http.aclose()


async def test_restricted_tokens_refuse_others(tmp_path) -> None:
    async with (
        LocalTelegram(tokens=["111:allowed"], files_dir=tmp_path / "f") as tg,
        httpx.AsyncClient() as http,
    ):
        assert (await http.get(f"{tg.base_url}/bot111:allowed/getMe")).status_code == 200
        refused = await http.get(f"{tg.base_url}/bot222:other/getMe")
        assert (refused.status_code, refused.json()["description"]) == (401, "Unauthorized")


async def test_flood_gives_429_with_retry_after(tmp_path) -> None:
    async with LocalTelegram(flood_limit=FloodLimit(per_second=0.5, burst=3), files_dir=tmp_path / "f") as tg:
        async with UserClient(tg.base_url, user_id=7) as user:
            await user.send_text("hi")
        bot = BotHttp(tg.base_url, tg.token)
        for i in range(3):
            await bot.ok("sendMessage", chat_id=7, text=f"m{i}")
        response = await bot.raw("sendMessage", chat_id=7, text="one too many")
        body = response.json()
        assert response.status_code == 429
        assert body["description"].startswith("Too Many Requests: retry after")
        assert body["parameters"]["retry_after"] >= 1
        await bot.http.aclose()


async def test_file_limits(bot: BotHttp, user: UserClient, tg: LocalTelegram) -> None:
    big = await user.send_document(b"\0" * (20 * 2**20 + 1), filename="big.bin")
    assert (await bot.error("getFile", file_id=big["document"]["file_id"])) == (
        400,
        "Bad Request: file is too big",
    )
    files = {"photo": ("huge.jpg", b"\xff\xd8" + b"\0" * (10 * 2**20), "image/jpeg")}
    code, _ = await bot.error("sendPhoto", files=files, chat_id=str(user.user_id))
    assert code == 400
    files = {"document": ("huge.bin", b"\0" * (50 * 2**20 + 1), "application/octet-stream")}
    code, description = await bot.error("sendDocument", files=files, chat_id=str(user.user_id))
    assert (code, description) == (413, "Request Entity Too Large")
    escape = await bot.http.get(f"{bot.file_base}/../../../etc/passwd")
    assert escape.status_code == 404


async def test_get_updates_offset_limit_and_allowed_updates(bot: BotHttp, user: UserClient) -> None:
    for i in range(5):
        await user.send_text(f"m{i}")
    first_two = await bot.ok("getUpdates", limit=2)
    assert [u["message"]["text"] for u in first_two] == ["m0", "m1"]
    rest = await bot.ok("getUpdates", offset=first_two[-1]["update_id"] + 1)
    assert [u["message"]["text"] for u in rest] == ["m2", "m3", "m4"]
    assert [u["message"]["text"] for u in await bot.ok("getUpdates", offset=-1)] == ["m4"]
    assert await bot.ok("getUpdates", offset=rest[-1]["update_id"] + 1) == []
    sent = await bot.ok(
        "sendMessage",
        chat_id=user.user_id,
        text="k",
        reply_markup={"inline_keyboard": [[{"text": "b", "callback_data": "b"}]]},
    )
    assert await bot.ok("getUpdates", allowed_updates=["message"]) == []
    await user.press(sent["message_id"], "b")
    await user.send_text("after")
    only_messages = await bot.ok("getUpdates", allowed_updates=["message"])
    assert [next(k for k in u if k != "update_id") for u in only_messages] == ["message"]


async def test_long_poll_waits_then_returns_the_new_update(bot: BotHttp, user: UserClient) -> None:
    await user.send_text("first")  # the chat exists; confirm it away
    first = await bot.ok("getUpdates")
    poll = asyncio.create_task(bot.ok("getUpdates", offset=first[-1]["update_id"] + 1, timeout=20))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await user.send_text("wake up")
    updates = await asyncio.wait_for(poll, 10)
    assert [u["message"]["text"] for u in updates] == ["wake up"]


async def test_second_poller_terminates_the_first_and_webhook_blocks_polling(
    bot: BotHttp, tg: LocalTelegram
) -> None:
    first = asyncio.create_task(bot.raw("getUpdates", timeout=20))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(bot.raw("getUpdates", timeout=1))
    response = await asyncio.wait_for(first, 10)
    assert response.status_code == 409
    assert response.json()["description"].startswith("Conflict: terminated by other getUpdates request")
    await second
    await bot.ok("setWebhook", url="http://127.0.0.1:9/hook")
    code, description = await bot.error("getUpdates")
    assert code == 409 and "webhook is active" in description


async def test_mismatched_files_odd_photos_and_double_answers(bot: BotHttp, user: UserClient) -> None:
    photo = await user.send_photo(jpeg((64, 64)))
    code, description = await bot.error(
        "sendDocument", chat_id=user.user_id, document=photo["photo"][-1]["file_id"]
    )
    assert (code, description) == (400, "Bad Request: type of file mismatch")
    with pytest.raises(UserClientError, match="PHOTO_INVALID_DIMENSIONS"):
        await user.send_photo(jpeg((2100, 50)))
    sent = await bot.ok(
        "sendMessage",
        chat_id=user.user_id,
        text="k",
        reply_markup={"inline_keyboard": [[{"text": "b", "callback_data": "b"}]]},
    )
    query = await user.press(sent["message_id"], "b")
    assert await bot.ok("answerCallbackQuery", callback_query_id=query["id"]) is True
    code, description = await bot.error("answerCallbackQuery", callback_query_id=query["id"])
    assert code == 400 and description.startswith("Bad Request: query is too old")
