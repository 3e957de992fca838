"""Every string the bot says exists in Russian, with the same placeholders, and the .mo is current."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from stylebot.bot.i18n import LOCALES_DIR, locale_from_language_code, make_i18n

PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def test_every_message_is_translated_with_the_same_placeholders(tmp_path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-k",
            "_",
            "-k",
            "__",
            "--no-location",
            "-o",
            str(pot),
            str(LOCALES_DIR.parent),
        ],
        check=True,
        capture_output=True,
    )
    wanted = {m.id for m in read_po(pot.open("rb")) if m.id}
    with (LOCALES_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        ru = {m.id: m.string for m in read_po(f) if m.id}
    assert wanted - set(ru) == set(), "run the locale update (see docs/notes/bot.md)"
    for msgid in wanted:
        assert ru[msgid], msgid
        if isinstance(msgid, tuple):  # ngettext: Russian has three forms, each translated
            forms = ru[msgid]
            assert len(forms) == 3 and all(forms), msgid
            allowed = set(PLACEHOLDER.findall(msgid[1]))
            assert all(set(PLACEHOLDER.findall(f)) <= allowed for f in forms), msgid
            assert set(PLACEHOLDER.findall(forms[2])) == allowed, msgid
            continue
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(ru[msgid])), msgid


def test_plurals_in_both_languages() -> None:
    from aiogram.utils.i18n import ngettext

    i18n = make_i18n()
    album = (
        "I took the first image of the album as your photo and the other one as a style image.",
        "I took the first image of the album as your photo and the other {n} as style images.",
    )
    with i18n.context():
        with i18n.use_locale("en"):
            assert "the other one as a style image" in ngettext(*album, 1)
            assert "the other 3 as style images" in ngettext(*album, 3).format(n=3)
        with i18n.use_locale("ru"):
            said = {
                n: ngettext("your {n} style image", "your {n} style images", n).format(n=n)
                for n in (1, 3, 5, 21)
            }
    assert said[1] == "1 изображение стиля" and said[21] == "21 изображение стиля"
    assert said[3] == "3 изображения стиля" and said[5] == "5 изображений стиля"


def _messages(catalog: Catalog) -> dict[object, object]:
    """What a user would read: every translated message (plural forms included), not the header,
    which names the Babel version that compiled the file and so differs between installs."""

    def plain(value: object) -> object:
        return tuple(value) if isinstance(value, list | tuple) else value  # .mo plurals read as lists

    def translated(m: Message) -> bool:
        strings = m.string if isinstance(m.string, list | tuple) else [m.string]
        # Babel writes an untranslated plural into the .mo as its English forms: that is no translation.
        return all(strings) and plain(m.string) != plain(m.id)

    return {plain(m.id): plain(m.string) for m in catalog if m.id and not m.fuzzy and translated(m)}


def test_compiled_catalogs_match_the_po_files() -> None:
    for lang in ("en", "ru"):
        folder = LOCALES_DIR / lang / "LC_MESSAGES"
        with (folder / "messages.po").open("rb") as f:
            source = read_po(f)
        with (folder / "messages.mo").open("rb") as f:
            compiled = read_mo(f)
        assert _messages(compiled) == _messages(source), f"{lang}: recompile the .mo (docs/notes/bot.md)"


def test_the_catalog_comparison_sees_a_stale_translation(tmp_path) -> None:
    folder = LOCALES_DIR / "ru" / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as f:
        source = read_po(f)
    msgid = next(m.id for m in source if m.id == "Cancel")
    source[msgid].string = "Отменить"  # the .po changed, the .mo was not recompiled
    with (folder / "messages.mo").open("rb") as f:
        compiled = read_mo(f)
    assert _messages(compiled) != _messages(source)
    # ...and a recompiled catalog matches again, whatever Babel version writes the header.
    buffer = io.BytesIO()
    write_mo(buffer, source)
    buffer.seek(0)
    assert _messages(read_mo(buffer)) == _messages(source)


def test_language_codes() -> None:
    assert [locale_from_language_code(c) for c in ("ru", "ru-RU", "RU_ru", "en-US", "de", "", None)] == [
        "ru",
        "ru",
        "ru",
        "en",
        "en",
        "en",
        "en",
    ]
    i18n = make_i18n()
    assert i18n.gettext("Cancel", locale="ru") == "Отмена"
