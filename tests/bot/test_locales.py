"""Every string the bot says exists in Russian, with the same placeholders, and the .mo is current."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from babel.messages.mofile import write_mo
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
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(ru[msgid])), msgid


def test_compiled_catalogs_match_the_po_files() -> None:
    for lang in ("en", "ru"):
        folder = LOCALES_DIR / lang / "LC_MESSAGES"
        with (folder / "messages.po").open("rb") as f:
            catalog = read_po(f)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        assert buffer.getvalue() == (folder / "messages.mo").read_bytes(), lang


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
