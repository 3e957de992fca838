"""Jobs from submission to delivery: the progress message, the result, and resuming after restart."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import BufferedInputFile, InputMediaPhoto, Message
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from PIL import Image

from stylebot.bot.keyboards import progress_keyboard, result_keyboard
from stylebot.bot.persistence import PendingDelivery, PendingStore
from stylebot.bot.progress import EditThrottle, format_seconds, progress_text
from stylebot.bot.styles import style_title
from stylebot.client import JobClient, JobClientError
from stylebot.jobs.spec import JobSpec, JobState, JobStatus

log = logging.getLogger(__name__)
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


def _placeholder_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((96, 96)).convert("RGB").save(buf, "JPEG", quality=70)
    return buf.getvalue()


PLACEHOLDER = _placeholder_jpeg()


def describe_style(rec: PendingDelivery) -> str:
    if rec.style:
        return style_title(rec.style)
    return _("your style images ({n})").format(n=rec.style_count)


def ignorable_edit_error(exc: TelegramBadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


class JobRunner:
    """Submits jobs, keeps one progress message per job up to date, and delivers results once."""

    def __init__(
        self,
        *,
        bot: Bot,
        client: JobClient,
        pending: PendingStore,
        storage: BaseStorage,
        i18n: I18n,
        edit_interval: float = 1.5,
        preview_interval: float = 6.0,
        watch_interval: float = 1.0,
    ) -> None:
        self.bot = bot
        self.client = client
        self.pending = pending
        self.storage = storage
        self.i18n = i18n
        self.edit_interval = edit_interval
        self.preview_interval = preview_interval
        self.watch_interval = watch_interval
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # --- lifecycle -----------------------------------------------------------------------------
    async def resume(self) -> int:
        """Watch every job that was in flight when the bot last stopped."""
        records = await self.pending.all()
        for rec in records:
            self._spawn(rec)
        if records:
            log.info("resumed %d pending deliveries", len(records))
        return len(records)

    async def shutdown(self) -> None:
        """Stop watching; pending records stay so the next start resumes them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def _spawn(self, rec: PendingDelivery) -> None:
        if rec.job_id in self._tasks:
            return
        task = asyncio.create_task(self._watch(rec), name=f"watch-{rec.job_id}")
        self._tasks[rec.job_id] = task
        task.add_done_callback(lambda t, job_id=rec.job_id: self._tasks.pop(job_id, None))

    # --- submit and cancel ---------------------------------------------------------------------
    async def submit(self, spec: JobSpec, rec: PendingDelivery, thumb_file_id: str | None) -> JobStatus:
        """Persist first, then submit: a crash in between still leaves a record to resume."""
        await self.pending.put(rec)
        try:
            status = await self.client.submit(spec)
        except BaseException:
            await self.pending.remove(rec.job_id)
            raise
        message = await self._send_progress(rec, status, thumb_file_id)
        if message is not None:
            rec.progress_message_id = message.message_id
            rec.content["progress_is_photo"] = message.photo is not None
            await self.pending.put(rec)
        self._spawn(rec)
        return status

    async def cancel(self, job_id: str) -> bool:
        """Cancel on the ML side and forget the delivery; True when there was such a job."""
        rec = await self.pending.get(job_id)
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
        try:
            await self.client.cancel(job_id)
        except JobClientError as exc:
            log.info("cancel %s on the ML side: %s", job_id, exc.code)
        await self.pending.remove(job_id)
        if rec is not None:
            with self.i18n.context(), self.i18n.use_locale(rec.locale):
                text = progress_text(
                    JobStatus(job_id=job_id, owner="x", kind="nst", state=JobState.cancelled),
                    describe_style(rec),
                )
                await self._edit(rec, text, preview=None, keep_keyboard=False)
        return rec is not None

    # --- watching ------------------------------------------------------------------------------
    async def _watch(self, rec: PendingDelivery) -> None:
        throttle = EditThrottle(self.edit_interval, self.preview_interval)
        failures = 0
        final: JobStatus | None = None
        while final is None:
            try:
                async for status in self.client.watch(rec.job_id, interval=self.watch_interval):
                    failures = 0
                    await self._show(rec, status, throttle)
                    if status.finished:
                        final = status
                        break
                else:
                    final = await self.client.status(rec.job_id)
                    if not final.finished:
                        final = None
            except JobClientError as exc:
                if exc.code == "not_found":
                    log.warning("job %s is unknown to the ML side", rec.job_id)
                    await self._deliver_lost(rec)
                    return
                delay = exc.retry_after or RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("watching %s: %s; retrying in %.0f s", rec.job_id, exc.code, delay)
                await asyncio.sleep(delay)
        await self._finish(rec, final)

    async def _show(self, rec: PendingDelivery, status: JobStatus, throttle: EditThrottle) -> None:
        if status.finished or rec.progress_message_id is None:
            return
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = progress_text(status, describe_style(rec))
        preview: bytes | None = None
        if (
            status.preview_key
            and rec.content.get("progress_is_photo")
            and throttle.preview_due()
            and status.preview_key != rec.content.get("shown_preview")
        ):
            try:
                preview = await self.client.preview(rec.job_id)
            except JobClientError:
                preview = None
        if preview is None and not throttle.text_due(text):
            return
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            await self._edit(rec, text, preview=preview, keep_keyboard=True)
        throttle.sent(text, preview=preview is not None)
        if preview is not None:
            rec.content["shown_preview"] = status.preview_key

    async def _send_progress(
        self, rec: PendingDelivery, status: JobStatus, thumb_file_id: str | None
    ) -> Message | None:
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = progress_text(status, describe_style(rec))
            markup = progress_keyboard(rec.job_id)
            photo: Any = thumb_file_id or BufferedInputFile(PLACEHOLDER, "progress.jpg")
            try:
                return await self.bot.send_photo(rec.chat_id, photo, caption=text, reply_markup=markup)
            except TelegramBadRequest:
                # An unusable thumbnail (expired file id): a text progress message still works.
                with contextlib.suppress(TelegramAPIError):
                    return await self.bot.send_message(rec.chat_id, text, reply_markup=markup)
            except TelegramAPIError as exc:
                log.warning("could not send the progress message: %s", type(exc).__name__)
        return None

    async def _edit(
        self, rec: PendingDelivery, text: str, *, preview: bytes | None, keep_keyboard: bool
    ) -> None:
        if rec.progress_message_id is None:
            return
        markup = progress_keyboard(rec.job_id) if keep_keyboard else None
        try:
            if preview is not None:
                media = InputMediaPhoto(media=BufferedInputFile(preview, "preview.jpg"), caption=text)
                await self.bot.edit_message_media(
                    chat_id=rec.chat_id, message_id=rec.progress_message_id, media=media, reply_markup=markup
                )
            elif rec.content.get("progress_is_photo"):
                await self.bot.edit_message_caption(
                    chat_id=rec.chat_id, message_id=rec.progress_message_id, caption=text, reply_markup=markup
                )
            else:
                await self.bot.edit_message_text(
                    chat_id=rec.chat_id, message_id=rec.progress_message_id, text=text, reply_markup=markup
                )
        except TelegramBadRequest as exc:
            if not ignorable_edit_error(exc):
                log.info("progress message of %s not editable: %s", rec.job_id, exc.message)
        except TelegramRetryAfter as exc:
            log.info("progress edit of %s skipped: flood control for %s s", rec.job_id, exc.retry_after)
        except TelegramAPIError as exc:
            log.info("progress edit of %s failed: %s", rec.job_id, type(exc).__name__)

    # --- the end of a job ----------------------------------------------------------------------
    async def _finish(self, rec: PendingDelivery, status: JobStatus) -> None:
        if await self.pending.get(rec.job_id) is None:
            return  # cancelled or delivered by someone else meanwhile
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            if status.state is JobState.done:
                await self._deliver_result(rec, status)
            elif status.state is JobState.failed:
                await self._edit(
                    rec, progress_text(status, describe_style(rec)), preview=None, keep_keyboard=False
                )
                reason = status.error.message if status.error else _("Something went wrong.")
                await self._send_text(
                    rec.chat_id,
                    _(
                        "⚠ I could not stylize this photo: {reason}\nTry another style, or send a new photo."
                    ).format(reason=reason),
                )
            else:
                await self._edit(
                    rec, progress_text(status, describe_style(rec)), preview=None, keep_keyboard=False
                )
        await self.pending.remove(rec.job_id)
        await self._forget_job(rec, delivered=status.state is JobState.done)

    async def _deliver_lost(self, rec: PendingDelivery) -> None:
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            await self._edit(rec, _("⚠ This job was lost on the server."), preview=None, keep_keyboard=False)
            await self._send_text(rec.chat_id, _("⚠ The server lost this job. Please send the photo again."))
        await self.pending.remove(rec.job_id)
        await self._forget_job(rec, delivered=False)

    async def _deliver_result(self, rec: PendingDelivery, status: JobStatus) -> None:
        data = await self.client.result(rec.job_id)
        seconds = status.run_seconds
        if seconds is None and status.finished_at is not None:
            seconds = status.finished_at - status.created_at
        caption = _("🎨 {style}").format(style=describe_style(rec))
        if seconds is not None:
            caption += " · ⏱ " + format_seconds(seconds)
        markup = result_keyboard(rec.job_id)
        async with ChatActionSender.upload_photo(chat_id=rec.chat_id, bot=self.bot):
            if rec.as_document:
                await self.bot.send_photo(
                    rec.chat_id, BufferedInputFile(data, "stylized.jpg"), caption=caption
                )
                await self.bot.send_document(
                    rec.chat_id, BufferedInputFile(data, "stylized.jpg"), caption=caption, reply_markup=markup
                )
            else:
                await self.bot.send_photo(
                    rec.chat_id, BufferedInputFile(data, "stylized.jpg"), caption=caption, reply_markup=markup
                )
        if rec.progress_message_id is not None:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.delete_message(rec.chat_id, rec.progress_message_id)

    async def _send_text(self, chat_id: int, text: str) -> None:
        try:
            await self.bot.send_message(chat_id, text)
        except TelegramAPIError as exc:
            log.warning("could not message chat: %s", type(exc).__name__)

    async def _forget_job(self, rec: PendingDelivery, *, delivered: bool) -> None:
        """Clear the user's running job and remember the delivered one for its result buttons."""
        state = FSMContext(
            self.storage, StorageKey(bot_id=self.bot.id, chat_id=rec.chat_id, user_id=rec.user_id)
        )
        data = await state.get_data()
        if data.get("job_id") == rec.job_id:
            data.pop("job_id")
        if delivered:
            content = {k: v for k, v in rec.content.items() if k in ("key", "as_document", "thumb")}
            data["last_result"] = {"job": rec.job_id, "content": content}
        await state.set_data(data)
