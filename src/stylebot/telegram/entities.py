"""``parse_mode`` for the emulator: HTML and MarkdownV2 to plain text plus ``MessageEntity`` dicts.

Offsets and lengths count UTF-16 code units, as Telegram's do. Malformed markup is refused with
Telegram's "can't parse entities" error, which is what bots most often trip on (an unescaped ``.``
in MarkdownV2, a stray ``<`` in HTML).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from stylebot.telegram.errors import bad_request

Entity = dict[str, Any]

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cant_parse(detail: str):
    return bad_request(f"can't parse entities: {detail}")


class _HtmlToEntities(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.utf16_pos = 0
        self.stack: list[tuple[str, int, dict[str, Any]]] = []
        self.entities: list[Entity] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise _cant_parse(f'Unsupported start tag "{tag}"')
        attributes = dict(attrs)
        extra: dict[str, Any] = {}
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise _cant_parse('Tag "span" must have class "tg-spoiler"')
        if tag == "a":
            href = attributes.get("href")
            if not href:
                raise _cant_parse('Tag "a" must have attribute "href"')
            extra["url"] = href
        if tag == "code" and self.stack and self.stack[-1][0] == "pre":
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self.stack[-1][2]["language"] = language
        if tag == "tg-emoji":
            extra["custom_emoji_id"] = attributes.get("emoji-id") or ""
        if tag == "blockquote" and "expandable" in attributes:
            extra["type"] = "expandable_blockquote"
        self.stack.append((tag, self.utf16_pos, extra))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise _cant_parse(f'Unmatched end tag "{tag}"')
        _, start, extra = self.stack.pop()
        if self.utf16_pos == start:
            return
        entity_type = extra.pop("type", _HTML_TAGS[tag])
        if tag == "code" and self.stack and self.stack[-1][0] == "pre":
            return  # <pre><code class="language-x"> is one pre entity with a language
        self.entities.append(
            {"type": entity_type, "offset": start, "length": self.utf16_pos - start, **extra}
        )

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        self.utf16_pos += utf16_len(data)


def parse_html(text: str) -> tuple[str, list[Entity]]:
    parser = _HtmlToEntities()
    # A bare "<" that starts no tag is an error in Telegram, while HTMLParser keeps it as text.
    if re.search(r"<(?![a-zA-Z/!])", text):
        raise _cant_parse('Unexpected "<": use "&lt;" instead')
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise _cant_parse(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1][0]}"')
    return "".join(parser.parts), _sorted(parser.entities)


_MD2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD2_MARKERS = (
    ("||", "spoiler"),
    ("__", "underline"),
    ("*", "bold"),
    ("_", "italic"),
    ("~", "strikethrough"),
)


def parse_markdown_v2(text: str) -> tuple[str, list[Entity]]:
    out: list[str] = []
    offset = 0
    open_marks: list[tuple[str, str, int]] = []
    entities: list[Entity] = []
    i = 0

    def emit(chunk: str) -> None:
        nonlocal offset
        out.append(chunk)
        offset += utf16_len(chunk)

    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            emit(text[i + 1])
            i += 2
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise _cant_parse("Can't find end of pre entity")
            body = text[i + 3 : end]
            language = ""
            if "\n" in body:
                first, rest = body.split("\n", 1)
                if first and " " not in first:
                    language, body = first, rest
            start = offset
            emit(body.replace("\\`", "`").replace("\\\\", "\\"))
            entity: Entity = {"type": "pre", "offset": start, "length": offset - start}
            if language:
                entity["language"] = language
            entities.append(entity)
            i = end + 3
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise _cant_parse("Can't find end of code entity")
            start = offset
            emit(text[i + 1 : end].replace("\\`", "`").replace("\\\\", "\\"))
            entities.append({"type": "code", "offset": start, "length": offset - start})
            i = end + 1
            continue
        if ch == "[":
            match = re.compile(r"\[((?:[^\]\\]|\\.)*)\]\(((?:[^)\\]|\\.)*)\)").match(text, i)
            if not match:
                raise _cant_parse(
                    f"Character '[' is reserved and must be escaped with the preceding '\\' "
                    f"at byte offset {len(text[:i].encode())}"
                )
            inner_text, inner_entities = parse_markdown_v2(match.group(1))
            start = offset
            emit(inner_text)
            for inner in inner_entities:
                entities.append({**inner, "offset": inner["offset"] + start})
            url = re.sub(r"\\(.)", r"\1", match.group(2))
            entities.append({"type": "text_link", "offset": start, "length": offset - start, "url": url})
            i = match.end()
            continue
        marker = next((m for m in _MD2_MARKERS if text.startswith(m[0], i)), None)
        if marker is not None:
            token, entity_type = marker
            if open_marks and open_marks[-1][0] == token:
                _, kind, start = open_marks.pop()
                if offset > start:
                    entities.append({"type": kind, "offset": start, "length": offset - start})
            else:
                open_marks.append((token, entity_type, offset))
            i += len(token)
            continue
        if ch in _MD2_RESERVED:
            raise _cant_parse(f"Character '{ch}' is reserved and must be escaped with the preceding '\\'")
        emit(ch)
        i += 1
    if open_marks:
        raise _cant_parse(f"Can't find end of {open_marks[-1][1].capitalize()} entity")
    return "".join(out), _sorted(entities)


def parse_markdown_legacy(text: str) -> tuple[str, list[Entity]]:
    out: list[str] = []
    entities: list[Entity] = []
    offset = 0
    pattern = re.compile(r"\*([^*]+)\*|_([^_]+)_|```([^`]+)```|`([^`]+)`|\[([^\]]+)\]\(([^)]+)\)")
    pos = 0
    for match in pattern.finditer(text):
        plain = text[pos : match.start()]
        out.append(plain)
        offset += utf16_len(plain)
        bold, italic, pre, code, link_text, url = match.groups()
        body = next(g for g in (bold, italic, pre, code, link_text) if g is not None)
        kind = "bold" if bold else "italic" if italic else "pre" if pre else "code" if code else "text_link"
        entity: Entity = {"type": kind, "offset": offset, "length": utf16_len(body)}
        if url:
            entity["url"] = url
        entities.append(entity)
        out.append(body)
        offset += utf16_len(body)
        pos = match.end()
    rest = text[pos:]
    if any(c in rest for c in "*_`["):
        raise _cant_parse("Can't find end of the entity")
    out.append(rest)
    return "".join(out), entities


def parse(text: str, parse_mode: str | None) -> tuple[str, list[Entity]]:
    mode = (parse_mode or "").lower()
    if not mode:
        return text, []
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown_legacy(text)
    raise bad_request(f"unsupported parse_mode {parse_mode!r}")


_AUTO_PATTERNS = (
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")),
    ("url", re.compile(r"\bhttps?://[^\s<>\"]+")),
    ("mention", re.compile(r"(?<!\w)@[A-Za-z0-9_]{5,32}\b")),
)


def detect_entities(text: str) -> list[Entity]:
    """The entities Telegram's clients add to what a user types: commands, links, mentions."""
    found: list[Entity] = []
    taken: list[range] = []
    for kind, pattern in _AUTO_PATTERNS:
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue
            taken.append(span)
            found.append(
                {"type": kind, "offset": utf16_len(text[: match.start()]), "length": utf16_len(match.group())}
            )
    return _sorted(found)


def with_detected(text: str, entities: list[Entity] | None) -> list[Entity]:
    """What Telegram's server does to every message, a bot's included: besides the entities it was
    given, commands, links and mentions in the text become entities (where none was given)."""
    if entities is not None and not isinstance(entities, list):
        return entities  # not ours to fix: stored as given, as before
    given = list(entities or [])
    spans = [range(e["offset"], e["offset"] + e["length"]) for e in given if isinstance(e, dict)]
    for found in detect_entities(text):
        span = range(found["offset"], found["offset"] + found["length"])
        if not any(span.start < t.stop and t.start < span.stop for t in spans):
            given.append(found)
    return _sorted(given)


def _sorted(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))
