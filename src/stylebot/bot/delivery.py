"""Jobs from submission to delivery: the progress message, the result, and resuming after restart."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import BufferedInputFile, InputMediaPhoto, Message
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from PIL import Image

from stylebot.bot.conversation import Conversation, LastResult
from stylebot.bot.keyboards import progress_keyboard, result_keyboard
from stylebot.bot.persistence import PendingDelivery, PendingStore
from stylebot.bot.progress import EditThrottle, format_seconds, progress_text
from stylebot.bot.styles import style_title
from stylebot.client import JobClient, JobClientError
from stylebot.jobs.spec import JobSpec, JobState, JobStatus

log = logging.getLogger(__name__)


def _placeholder_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((96, 96)).convert("RGB").save(buf, "JPEG", quality=70)
    return buf.getvalue()


PLACEHOLDER = _placeholder_jpeg()


def describe_style(rec: PendingDelivery) -> str:
    if rec.style:
        return style_title(rec.style)
    if rec.gallery is not None:
        return _("gallery style {n}").format(n=rec.gallery)
    return ngettext("your {n} style image", "your {n} style images", rec.style_count).format(
        n=rec.style_count
    )


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [d/2, d], d = min(cap, base * 2**failures)."""
    delay = min(cap, base * 2 ** min(failures, 30))
    return random.uniform(delay / 2, delay)


@dataclass(frozen=True)
class Timing:
    """How often the runner looks, edits and retries; tests shrink these."""

    edit_interval: float = 1.5
    preview_interval: float = 6.0
    watch_interval: float = 1.0
    retry_base: float = 1.0
    retry_cap: float = 20.0
    outage_notice_after: float = 20.0
    claim_ttl: float = 30.0
    sweep_interval: float = 10.0


def ignorable_edit_error(exc: TelegramBadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


class JobRunner:
    """Submits jobs, keeps one progress message per job up to date, and delivers results once.

    The pending store is the truth about what runs for a chat: it survives restarts and is
    shared by every bot process (Redis). A process watches and delivers only the jobs it has
    claimed; a sweep claims the records nobody watches (after a restart, or when another
    process died and its claims expired).
    """

    def __init__(
        self,
        *,
        bot: Bot,
        client: JobClient,
        pending: PendingStore,
        storage: BaseStorage,
        i18n: I18n,
        timing: Timing | None = None,
    ) -> None:
        self.bot = bot
        self.client = client
        self.pending = pending
        self.storage = storage
        self.i18n = i18n
        self.timing = timing or Timing()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._submitting: set[str] = set()
        self._housekeeper: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def resume(self) -> int:
        """Watch every job that was in flight when the bot last stopped, and keep sweeping."""
        count = await self.sweep()
        if count:
            log.info("resumed %d pending deliveries", count)
        if self._housekeeper is None:
            self._housekeeper = asyncio.create_task(self._housekeeping(), name="pending-housekeeping")
        return count

    async def sweep(self) -> int:
        """Claim and watch every pending record that no process watches."""
        count = 0
        for rec in await self.pending.all():
            if rec.job_id in self._tasks or rec.job_id in self._submitting:
                continue
            if await self.pending.claim(rec.job_id, self.timing.claim_ttl):
                self._spawn(rec)
                count += 1
        return count

    async def _housekeeping(self) -> None:
        """Renew this process's claims; sweep for records whose owner is gone."""
        renew_every = self.timing.claim_ttl / 3
        next_sweep = time.monotonic() + self.timing.sweep_interval
        while True:
            await asyncio.sleep(min(renew_every, self.timing.sweep_interval))
            try:
                for job_id, task in list(self._tasks.items()):
                    if not await self.pending.renew(job_id, self.timing.claim_ttl):
                        log.warning("lost the claim on %s; another process delivers it", job_id)
                        task.cancel()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.timing.sweep_interval
                    if picked := await self.sweep():
                        log.info("picked up %d deliveries nobody was watching", picked)
            except Exception as exc:  # storage hiccup: keep the loop alive, try again next round
                log.warning("pending housekeeping failed: %s", exc)

    async def shutdown(self, *, release: bool = True) -> None:
        """Stop watching; pending records stay so the next start (or another process) resumes them."""
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
            self._housekeeper = None
        tasks = dict(self._tasks)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if release:
            for job_id in tasks:
                with contextlib.suppress(Exception):
                    await self.pending.release(job_id)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def _spawn(self, rec: PendingDelivery) -> None:
        if rec.job_id in self._tasks:
            return
        task = asyncio.create_task(self._watch(rec.job_id), name=f"watch-{rec.job_id}")
        self._tasks[rec.job_id] = task
        job_id = rec.job_id
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    # --- what runs for a chat ------------------------------------------------------------------
    async def running_for(self, chat_id: int, user_id: int | None = None) -> PendingDelivery | None:
        """The job in flight for this chat (the latest, if ever more than one)."""
        records = await self.pending.for_chat(chat_id, user_id)
        return records[-1] if records else None

    # --- submit, cancel, finish ----------------------------------------------------------------
    async def submit(self, spec: JobSpec, rec: PendingDelivery, thumb_file_id: str | None) -> JobStatus:
        """Persist first, then submit: a crash in between still leaves a record to resume."""
        self._submitting.add(rec.job_id)
        try:
            await self.pending.claim(rec.job_id, self.timing.claim_ttl)
            await self.pending.put(rec)
            try:
                status = await self.client.submit(spec)
            except BaseException:
                await self.pending.remove(rec.job_id)
                await self.pending.release(rec.job_id)
                raise
            message = await self._send_progress(rec, status, thumb_file_id)
            if message is not None:
                rec.progress_message_id = message.message_id
                rec.progress_is_photo = message.photo is not None
                await self.pending.update(rec)
            self._spawn(rec)
        finally:
            self._submitting.discard(rec.job_id)
        return status

    async def cancel(self, job_id: str, *, chat_id: int | None = None) -> bool:
        """Cancel on the ML side and forget the delivery; True when there was such a job.

        With ``chat_id``, only a job of that chat is cancelled (a button of another chat is not).
        Works from any process and after restarts: it reads the pending store, not memory.
        """
        rec = await self.pending.get(job_id)
        if rec is None or (chat_id is not None and rec.chat_id != chat_id):
            return False
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
        try:
            await self.client.cancel(job_id)
        except JobClientError as exc:
            log.info("cancel %s on the ML side: %s", job_id, exc.code)
        if not await self.pending.remove(job_id):
            return False  # delivered or cancelled by someone else meanwhile
        await self.pending.release(job_id)
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = progress_text(
                JobStatus(job_id=job_id, owner="x", kind="nst", state=JobState.cancelled),
                describe_style(rec),
            )
            await self._edit(rec, text, preview=None, keep_keyboard=False)
        await self._forget_job(rec, delivered=False)
        return True

    async def finish(self, job_id: str, *, chat_id: int) -> str | None:
        """ "Good, send it": end the refinement with its latest image. Returns None when done (the
        result follows as usual), else what to tell the user."""
        rec = await self.pending.get(job_id)
        if rec is None or rec.chat_id != chat_id:
            return _("This button is no longer active.")
        try:
            await self.client.finish(job_id)
        except JobClientError as exc:
            if exc.code == "not_ready":
                return _("There is no image yet; press again in a moment.")
            log.info("finish %s: %s", job_id, exc.code)
            return _("The style service is unavailable right now. Please try again in a minute.")
        return None

    # --- watching ------------------------------------------------------------------------------
    async def _watch(self, job_id: str) -> None:
        rec = await self.pending.get(job_id)
        if rec is None:
            return
        timing = self.timing
        throttle = EditThrottle(timing.edit_interval, timing.preview_interval)
        failures = 0
        outage_since: float | None = None
        told = False
        final: JobStatus | None = None
        while final is None:
            try:
                async for status in self.client.watch(rec.job_id, interval=timing.watch_interval):
                    note = None
                    if outage_since is not None:
                        log.info("ML side reachable again for %s", rec.job_id)
                        if told:
                            with self.i18n.context(), self.i18n.use_locale(rec.locale):
                                note = _("✅ The style service is back; your job continues.")
                        failures, outage_since, told = 0, None, False
                    if status.finished:
                        final = status
                        break
                    await self._show(rec, status, throttle, note=note)
                else:
                    final = await self.client.status(rec.job_id)
                    if not final.finished:
                        final = None
            except JobClientError as exc:
                if exc.code == "not_found":
                    log.warning("job %s is unknown to the ML side", rec.job_id)
                    await self._deliver_lost(rec)
                    return
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                backoff = backoff_delay(failures, base=timing.retry_base, cap=timing.retry_cap)
                delay = exc.retry_after or backoff
                failures += 1
                if not told:
                    due = outage_since + timing.outage_notice_after
                    if now >= due:
                        await self._tell_outage(rec)
                        told = True
                    else:
                        delay = min(delay, due - now)  # never later than promised
                log.warning("watching %s: %s; retrying in %.1f s", rec.job_id, exc.code, delay)
                await asyncio.sleep(delay)
        await self._finish(rec, final)

    async def _tell_outage(self, rec: PendingDelivery) -> None:
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = _(
                "⚠ The style service is unreachable right now. Your job is kept and continues "
                "as soon as the service is back; I will update this message."
            )
            if rec.progress_message_id is None:
                await self._send_text(rec.chat_id, text)
            else:
                head = _("🎨 Style: {style}").format(style=describe_style(rec))
                await self._edit(rec, head + "\n" + text, preview=None, keep_keyboard=True)

    async def _show(
        self, rec: PendingDelivery, status: JobStatus, throttle: EditThrottle, *, note: str | None = None
    ) -> None:
        if status.finished or rec.progress_message_id is None:
            return
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = progress_text(status, describe_style(rec))
        if note:
            text += "\n" + note
        preview: bytes | None = None
        if (
            status.preview_key
            and rec.progress_is_photo
            and throttle.preview_due()
            and status.preview_key != rec.shown_preview
        ):
            try:
                preview = await self.client.preview(rec.job_id)
            except JobClientError:
                preview = None
        if preview is None and not throttle.text_due(text, force=note is not None):
            return
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            await self._edit(rec, text, preview=preview, keep_keyboard=True)
        throttle.sent(text, preview=preview is not None)
        if preview is not None:
            rec.shown_preview = status.preview_key
            await self.pending.update(rec)

    async def _send_progress(
        self, rec: PendingDelivery, status: JobStatus, thumb_file_id: str | None
    ) -> Message | None:
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            text = progress_text(status, describe_style(rec))
            markup = progress_keyboard(rec.job_id, finishable=rec.refine)
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
        markup = progress_keyboard(rec.job_id, finishable=rec.refine) if keep_keyboard else None
        try:
            if preview is not None:
                media = InputMediaPhoto(media=BufferedInputFile(preview, "preview.jpg"), caption=text)
                await self.bot.edit_message_media(
                    chat_id=rec.chat_id, message_id=rec.progress_message_id, media=media, reply_markup=markup
                )
            elif rec.progress_is_photo:
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
        current = await self.pending.get(rec.job_id)
        if current is None:
            return  # cancelled or delivered by someone else meanwhile
        rec.phase = current.phase
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            if status.state is JobState.done:
                await self._deliver_result(rec, status)
                return
            if status.state is JobState.failed:
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
        await self.pending.release(rec.job_id)
        await self._forget_job(rec, delivered=False)

    async def _deliver_lost(self, rec: PendingDelivery) -> None:
        with self.i18n.context(), self.i18n.use_locale(rec.locale):
            await self._edit(rec, _("⚠ This job was lost on the server."), preview=None, keep_keyboard=False)
            await self._send_text(rec.chat_id, _("⚠ The server lost this job. Please send the photo again."))
        await self.pending.remove(rec.job_id)
        await self.pending.release(rec.job_id)
        await self._forget_job(rec, delivered=False)

    async def _deliver_result(self, rec: PendingDelivery, status: JobStatus) -> None:
        """Record "sending", send, drop the record the moment Telegram accepted; then tidy up.

        A crash between the first two steps leaves "sending": the next start sends again, with
        a note, so the user never gets two copies without being told why.
        """
        data = await self.client.result(rec.job_id)
        again = rec.phase == "sending"
        if not again:
            rec.phase = "sending"
            if not await self.pending.update(rec):
                return  # cancelled meanwhile
        seconds = status.run_seconds
        if seconds is None and status.finished_at is not None:
            seconds = status.finished_at - status.created_at
        caption = _("🎨 {style}").format(style=describe_style(rec))
        if seconds is not None:
            caption += " · ⏱ " + format_seconds(seconds)
        if again:
            caption += "\n" + _("↻ Sent again after a restart: you may already have this result.")
        markup = result_keyboard(rec.job_id, tunable=rec.style is None, preserve_colors=rec.preserve_colors)
        async with ChatActionSender.upload_photo(chat_id=rec.chat_id, bot=self.bot):
            file = BufferedInputFile(data, "stylized.jpg")
            if rec.as_document:
                await self.bot.send_photo(rec.chat_id, file, caption=caption)
                await self.bot.send_document(rec.chat_id, file, caption=caption, reply_markup=markup)
            else:
                await self.bot.send_photo(rec.chat_id, file, caption=caption, reply_markup=markup)
        # Telegram has it: from here on nothing may send it again.
        await self.pending.remove(rec.job_id)
        await self.pending.release(rec.job_id)
        if rec.progress_message_id is not None:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.delete_message(rec.chat_id, rec.progress_message_id)
        await self._forget_job(rec, delivered=True)

    async def _send_text(self, chat_id: int, text: str) -> None:
        try:
            await self.bot.send_message(chat_id, text)
        except TelegramAPIError as exc:
            log.warning("could not message chat: %s", type(exc).__name__)

    async def _forget_job(self, rec: PendingDelivery, *, delivered: bool) -> None:
        """Clear the conversation's job hint and remember a delivered result for its buttons."""
        state = FSMContext(
            self.storage, StorageKey(bot_id=self.bot.id, chat_id=rec.chat_id, user_id=rec.user_id)
        )
        conv = await Conversation.load(state)
        if conv.job == rec.job_id:
            conv.job = None
        if delivered and rec.content is not None:
            conv.last_result = LastResult(
                job=rec.job_id,
                content=rec.content,
                model=rec.style,
                gallery=rec.gallery,
                styles=rec.styles,
                weights=rec.weights,
                strength=rec.strength,
                preserve_colors=rec.preserve_colors,
            )
        await conv.save(state)
