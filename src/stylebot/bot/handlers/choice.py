"""Inline buttons of the conversation: style choice, multi-style panel, results, progress."""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from stylebot.bot.callbacks import (
    ChoiceAction,
    JobAction,
    JobButton,
    MultiAction,
    MultiStyle,
    ResultAction,
    ResultButton,
    SheetPage,
    SheetPick,
    StyleChoice,
)
from stylebot.bot.conversation import Conversation
from stylebot.bot.handlers.common import (
    Pick,
    Services,
    offer_styles,
    reset_conversation,
    send_panel,
    styles_panel_text,
    submit_job,
)
from stylebot.bot.keyboards import multi_style_keyboard, sheet_keyboard
from stylebot.bot.prefs import load_prefs
from stylebot.bot.states import Flow
from stylebot.bot.styles import style_title
from stylebot.jobs.spec import MAX_STRENGTH, MIN_STRENGTH, PRETRAINED_MODELS, JobKind, sheet_choice

router = Router(name="choice")
STRENGTH_STEP = 2.0  # "Stronger" doubles the style strength, "Weaker" halves it


def stale_text() -> str:
    return _("This button is no longer active.")


async def is_current(state: FSMContext, flow: str) -> bool:
    return bool(flow) and (await Conversation.load(state)).flow == flow


async def remove_keyboard(bot: Bot, query: CallbackQuery, state: FSMContext | None = None) -> None:
    """Take the buttons off the pressed message, unless it is the user's current panel."""
    if query.message is None:
        return
    if state is not None and (await Conversation.load(state)).panel == query.message.message_id:
        return
    with contextlib.suppress(TelegramBadRequest):
        await bot.edit_message_reply_markup(
            chat_id=query.message.chat.id, message_id=query.message.message_id, reply_markup=None
        )


async def _submit(
    query: CallbackQuery,
    state: FSMContext,
    services: Services,
    i18n: I18n,
    pick: Pick,
    callback_answer: CallbackAnswer,
) -> None:
    assert query.message is not None and query.bot is not None
    prefs = await load_prefs(state.storage, state.key)
    error = await submit_job(
        query.bot,
        state,
        services,
        chat_id=query.message.chat.id,
        user_id=query.from_user.id,
        prefs=prefs,
        locale=i18n.current_locale,
        pick=pick,
    )
    if error is not None:
        await query.bot.send_message(query.message.chat.id, error)
        callback_answer.text = _("Not started.")
    else:
        callback_answer.text = _("Started.")


@router.callback_query(StyleChoice.filter(), Flow.choosing_style)
async def style_chosen(
    query: CallbackQuery,
    callback_data: StyleChoice,
    state: FSMContext,
    services: Services,
    i18n: I18n,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    if not await is_current(state, callback_data.flow):
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    assert query.message is not None
    if callback_data.action is ChoiceAction.cancel:
        await reset_conversation(bot, query.message.chat.id, state)
        await bot.send_message(query.message.chat.id, _("Cancelled. Send a new photo whenever you like."))
        return
    if callback_data.action is ChoiceAction.mine:
        await state.set_state(Flow.collecting_styles)
        conv = await Conversation.load(state)
        conv.styles, conv.weights = [], None
        await conv.save(state)
        await send_panel(
            bot,
            query.message.chat.id,
            state,
            styles_panel_text(0, None),
            multi_style_keyboard(callback_data.flow, 0),
        )
        return
    model = callback_data.model
    if model not in PRETRAINED_MODELS:
        callback_answer.text = stale_text()
        return
    availability = await services.catalog.get(model)
    if availability is not None and not availability.installed:
        callback_answer.text = _("{style} is not available right now.").format(style=style_title(model))
        callback_answer.show_alert = True
        return
    await _submit(query, state, services, i18n, Pick(model=model), callback_answer)


@router.callback_query(SheetPick.filter(), Flow.choosing_style)
async def tile_picked(
    query: CallbackQuery,
    callback_data: SheetPick,
    state: FSMContext,
    services: Services,
    i18n: I18n,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """A numbered tile of the sheet: a gallery style or a CycleGAN, straight to its result."""
    conv = await Conversation.load(state)
    if not await is_current(state, callback_data.flow) or callback_data.number not in conv.sheet:
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    kind, choice = sheet_choice(callback_data.number)
    pick = Pick(gallery=int(choice)) if kind is JobKind.gallery else Pick(model=str(choice))
    await _submit(query, state, services, i18n, pick, callback_answer)


@router.callback_query(SheetPage.filter(), Flow.choosing_style)
async def sheet_paged(
    query: CallbackQuery,
    callback_data: SheetPage,
    state: FSMContext,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    conv = await Conversation.load(state)
    if not await is_current(state, callback_data.flow) or query.message is None:
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    with contextlib.suppress(TelegramBadRequest):
        await bot.edit_message_reply_markup(
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
            reply_markup=sheet_keyboard(conv.flow, conv.sheet, callback_data.page),
        )


@router.callback_query(MultiStyle.filter(), StateFilter(Flow.collecting_styles, Flow.entering_weights))
async def multi_pressed(
    query: CallbackQuery,
    callback_data: MultiStyle,
    state: FSMContext,
    services: Services,
    i18n: I18n,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    if not await is_current(state, callback_data.flow):
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    assert query.message is not None
    styles = (await Conversation.load(state)).styles
    if callback_data.action is MultiAction.cancel:
        await reset_conversation(bot, query.message.chat.id, state)
        await bot.send_message(query.message.chat.id, _("Cancelled. Send a new photo whenever you like."))
        return
    if not styles:
        callback_answer.text = _("Send at least one style image first.")
        return
    if callback_data.action is MultiAction.weights:
        if len(styles) < 2:
            callback_answer.text = _("Weights need at least two style images.")
            return
        await state.set_state(Flow.entering_weights)
        await bot.send_message(
            query.message.chat.id,
            _(
                "Send {n} numbers, one weight per style image in the order you sent them (e.g. “2 1” makes "
                "the first style twice as strong)."
            ).format(n=len(styles)),
        )
        return
    await _submit(query, state, services, i18n, Pick(), callback_answer)


@router.callback_query(ResultButton.filter())
async def result_pressed(
    query: CallbackQuery,
    callback_data: ResultButton,
    state: FSMContext,
    services: Services,
    i18n: I18n,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    assert query.message is not None
    conv = await Conversation.load(state)
    last = conv.last_result
    if last is None or last.job != callback_data.job:
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    await remove_keyboard(bot, query)
    if callback_data.action is ResultAction.new_photo:
        await reset_conversation(bot, query.message.chat.id, state)
        await bot.send_message(query.message.chat.id, _("Send me a new photo."))
        return
    await reset_conversation(bot, query.message.chat.id, state)
    conv = await Conversation.load(state)
    if callback_data.action is ResultAction.another or not last.tunable:
        conv.start(last.content)
        await conv.save(state)
        await state.set_state(Flow.choosing_style)
        await offer_styles(bot, query.message.chat.id, state, services)
        return
    # The same photo and style again, stronger, weaker, or with the other colour choice.
    conv.start(last.content, last.styles)
    conv.weights = last.weights
    await conv.save(state)
    strength, colours = last.strength, last.preserve_colors
    if callback_data.action is ResultAction.stronger:
        strength = min(MAX_STRENGTH, strength * STRENGTH_STEP)
    elif callback_data.action is ResultAction.weaker:
        strength = max(MIN_STRENGTH, strength / STRENGTH_STEP)
    else:
        colours = not colours
    error = await submit_job(
        bot,
        state,
        services,
        chat_id=query.message.chat.id,
        user_id=query.from_user.id,
        prefs=await load_prefs(state.storage, state.key),
        locale=i18n.current_locale,
        pick=Pick(model=last.model, gallery=last.gallery),
        strength=strength,
        preserve_colors=colours,
    )
    if error is not None:
        await bot.send_message(query.message.chat.id, error)
        callback_answer.text = _("Not started.")
    else:
        callback_answer.text = _("Started.")


@router.callback_query(JobButton.filter())
async def job_cancel_pressed(
    query: CallbackQuery,
    callback_data: JobButton,
    state: FSMContext,
    services: Services,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    assert query.message is not None
    # The pending record, not this process's memory, says whether the job still runs.
    if callback_data.action is JobAction.finish:
        problem = await services.runner.finish(callback_data.job_id, chat_id=query.message.chat.id)
        callback_answer.text = problem or _("Sending this image…")
        return
    if not await services.runner.cancel(callback_data.job_id, chat_id=query.message.chat.id):
        callback_answer.text = stale_text()
        await remove_keyboard(bot, query, state)
        return
    callback_answer.text = _("Cancelled.")


@router.callback_query(F.data)
async def stale_button(
    query: CallbackQuery, bot: Bot, state: FSMContext, callback_answer: CallbackAnswer
) -> None:
    """Anything else: an old keyboard (other state, before a restart) or another user's buttons."""
    callback_answer.text = stale_text()
    await remove_keyboard(bot, query, state)


@router.callback_query()
async def no_data(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    callback_answer.text = stale_text()
