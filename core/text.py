"""Text hygiene for what users type, and splitting Markdown answers under a platform's length limit."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

__all__ = ["clean_text", "close_fence", "is_blank", "link_text_misleads", "shorten_answer", "split_markdown",
           "truncate_markdown"]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Characters that show nothing on their own: format characters (Cf: zero-width space/joiners U+200B-U+200D, word
# joiner U+2060, BOM U+FEFF, bidi marks and isolates, soft hyphen, tags) are found by category; these are not Cf.
_SHOWS_NOTHING = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u180b\u180c\u180d\u180f"  # Mongolian variation selectors
    "\u2800"  # braille blank
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors 1-16
    + "".join(map(chr, range(0xE0100, 0xE01F0)))  # variation selectors 17-256
)
_EMPTY_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})


def is_blank(text: str) -> bool:
    """True when the text shows nothing: only whitespace and invisible characters (zero-width, bidi marks,
    variation selectors…), so a message made of them is an empty message, not a question."""
    return all(ch.isspace() or ch in _SHOWS_NOTHING or unicodedata.category(ch) in _EMPTY_CATEGORIES for ch in text)


def clean_text(text: str) -> str:
    """Text that can be stored and sent on: a lone surrogate (half an emoji from a bad client) becomes U+FFFD,
    which UTF-8 can encode, and control characters other than tab and line breaks are dropped. Text that shows
    nothing (only whitespace and invisible characters) becomes empty; visible text keeps its zero-width joiners
    and variation selectors, which emoji need."""
    cleaned = _CONTROL.sub("", _LONE_SURROGATE.sub("\ufffd", text))
    return "" if is_blank(cleaned) else cleaned


def _blocks(text: str) -> list[str]:
    """Paragraphs, with each fenced code block kept whole as one block."""
    blocks: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            if not in_fence and current:
                blocks.append("\n".join(current))
                current = []
            current.append(line)
            in_fence = not in_fence
            if not in_fence:
                blocks.append("\n".join(current))
                current = []
            continue
        if not in_fence and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _hard_split(block: str, limit: int) -> list[str]:
    """A single block longer than the limit: cut at line, then word boundaries; re-open code fences."""
    fence = _FENCE.match(block)
    opener = block.split("\n", 1)[0] if fence else ""
    closer = fence.group(1) if fence else ""
    inner_limit = limit - (len(opener) + len(closer) + 2 if fence else 0)
    body = block
    if fence:
        lines = block.split("\n")
        body = "\n".join(lines[1:-1] if _FENCE.match(lines[-1]) and len(lines) > 1 else lines[1:])
    pieces: list[str] = []
    while len(body) > inner_limit:
        cut = body.rfind("\n", 0, inner_limit)
        if cut <= inner_limit // 2:
            cut = body.rfind(" ", 0, inner_limit)
        if cut <= inner_limit // 2:
            cut = inner_limit
        pieces.append(body[:cut])
        body = body[cut:].lstrip("\n") if body[cut:cut + 1] == "\n" else body[cut:].lstrip(" ")
    pieces.append(body)
    return [f"{opener}\n{p}\n{closer}" for p in pieces] if fence else pieces


def split_markdown(text: str, limit: int) -> list[str]:
    """Chunks of at most `limit` characters, joined from whole paragraphs and whole code blocks when possible."""
    if limit < 40:
        raise ValueError("limit too small to split sensibly")
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for block in _blocks(text):
        parts = [block] if len(block) <= limit else _hard_split(block, limit)
        for part in parts:
            candidate = f"{current}\n\n{part}" if current else part
            if len(candidate) <= limit:
                current = candidate
            else:
                if current:
                    chunks.append(current)
                current = part
    if current:
        chunks.append(current)
    return chunks


def _open_fence(text: str) -> tuple[int, str] | None:
    """Where the code fence `text` leaves open starts (offset, marker), or None when every fence is closed."""
    opener: tuple[int, str] | None = None
    offset = 0
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if fence:
            opener = None if opener else (offset, fence.group(1))
        offset += len(line) + 1
    return opener


def close_fence(text: str) -> str:
    """`text` with a code fence it leaves open closed again, so a cut never turns the rest of a message into code."""
    opener = _open_fence(text)
    return f"{text}\n{opener[1]}" if opener else text


def shorten_answer(text: str, limit: int, note: str) -> str:
    """`text` if it has at most `limit` characters; else its head followed by `note`, `limit` characters in all.

    The head is cut at a paragraph, else a line, else a word; a code block the cut falls in is dropped when enough
    text comes before it, else closed.
    """
    if len(text) <= limit:
        return text
    budget = max(0, limit - len(note) - 2 - 4)  # 4: "\n```" to close a code block cut open
    cut = next((at for sep in ("\n\n", "\n", " ") if (at := text.rfind(sep, 0, budget + 1)) >= budget // 2), budget)
    head = text[:cut].rstrip()
    opener = _open_fence(head)
    if opener is not None and opener[0] >= budget // 2:
        head = head[:opener[0]].rstrip()
    return f"{close_fence(head)}\n\n{note}"


def truncate_markdown(text: str, limit: int, ellipsis: str = "…") -> str:
    """At most `limit` characters, cut at a word where possible, ending in `ellipsis`, with code fences balanced."""
    if len(text) <= limit:
        return text
    room = limit - len(ellipsis) - 4  # "\n```" may be needed to close a fence cut open
    cut = text.rfind(" ", room // 2, room)
    head = text[: cut if cut > 0 else room].rstrip()
    closed = close_fence(head + ellipsis)
    return closed if len(closed) <= limit else closed[:limit]


_URLISH = re.compile(
    r"^(?:(?:https?|ftp)://|mailto:|www\.)\S+$"  # a written-out link
    r"|^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}(?::\d+)?(?:[/?#]\S*)?$",  # or a bare domain
    re.IGNORECASE,
)


def _url_parts(value: str) -> tuple[str, str]:
    """(host without www., path+query without a trailing slash), lower-cased host; scheme ignored."""
    value = value.strip()
    if value.lower().startswith("mailto:"):
        return value[7:].lower(), ""
    parts = urlsplit(value if "://" in value else f"//{value}")
    host = (parts.hostname or "").lower().removeprefix("www.")
    rest = parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
    return host, rest


def link_text_misleads(text: str, target: str) -> bool:
    """True when a link's visible text reads as a URL or domain other than where the link really goes
    (`[https://good.example](https://evil.example)`): such links must show their real target."""
    shown = text.strip().strip("*_~`<>").strip()
    if not _URLISH.match(shown):
        return False
    shown_host, shown_rest = _url_parts(shown)
    host, rest = _url_parts(target)
    if shown_host != host:
        return True
    return bool(shown_rest) and shown_rest != rest
