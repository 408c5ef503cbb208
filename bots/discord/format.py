"""Pure text shaping for Discord: defuse pings, split under 2,000 characters, thread titles, nonces, links."""

from __future__ import annotations

import hashlib
import re

from bots.discord import strings as msgs
from core.text import link_text_misleads, split_markdown

__all__ = [
    "MESSAGE_LIMIT",
    "THREAD_NAME_LIMIT",
    "answer_chunks",
    "escalation_of",
    "jump_link",
    "neutralise_mentions",
    "nonce_for",
    "question_text",
    "show_link_targets",
    "thread_name",
]

MESSAGE_LIMIT = 2000  # Discord rejects longer message content
THREAD_NAME_LIMIT = 100  # Discord's limit on channel (thread) names
NONCE_LIMIT = 25  # Discord's limit on a message nonce

_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.DOTALL)
_MASKED_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PINGS = re.compile(r"@(everyone|here)\b|<@([!&]?)(\d+)>")
_WHITESPACE = re.compile(r"\s+")
_ZWSP = "\u200b"
_ESCALATION = re.compile(r"^\s*(?:<(@&|@!?|#)(\d+)>|(role|user|channel):(\d+)|(\d{15,21}))\s*$", re.IGNORECASE)
_SIGILS = {"@&": "role", "@": "user", "@!": "user", "#": "channel"}


def _defuse(match: re.Match[str]) -> str:
    if match.group(1):
        return f"@{_ZWSP}{match.group(1)}"
    return f"<@{_ZWSP}{match.group(2)}{match.group(3)}>"


def neutralise_mentions(text: str) -> str:
    """Break @everyone/@here/<@id>/<@&id> with a zero-width space outside code (allowed_mentions is the real guard)."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else _PINGS.sub(_defuse, part) for i, part in enumerate(parts))


def _unmask(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    return f"{label} (<{url}>)" if link_text_misleads(label, url) else match.group(0)


def show_link_targets(text: str) -> str:
    """Masked links whose text reads as another URL (`[https://good.example](https://evil.example)`) become
    "text (<target>)" outside code, so the reader sees where the link really goes."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else _MASKED_LINK.sub(_unmask, part) for i, part in enumerate(parts))


def answer_chunks(text: str, low_confidence_note: str | None = None) -> list[str]:
    """Message bodies of at most 2,000 characters; the low-confidence note goes under the last one."""
    chunks = split_markdown(neutralise_mentions(show_link_targets(text.strip())) or "…", MESSAGE_LIMIT)
    if low_confidence_note:
        note = msgs.low_confidence(neutralise_mentions(" ".join(low_confidence_note.split())))[:MESSAGE_LIMIT]
        if len(chunks[-1]) + 2 + len(note) <= MESSAGE_LIMIT:
            chunks[-1] = f"{chunks[-1]}\n\n{note}"
        else:
            chunks.append(note)
    return chunks


def question_text(content: str, bot_id: int, bot_role_ids: tuple[int, ...] = ()) -> str:
    """The user's text without the bot's own mention (`<@id>`, legacy `<@!id>`, or its managed role `<@&id>`)."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    for role_id in bot_role_ids:
        text = text.replace(f"<@&{role_id}>", " ")
    return text.strip()


def thread_name(question: str, user: str) -> str:
    """A thread title from the question's first words (1-100 chars), else 'Question from <user>'."""
    first = _WHITESPACE.sub(" ", re.sub(r"<[@#][!&]?\d+>|[`*_~|>]", "", question)).strip()
    if not first:
        first = msgs.thread_fallback_name(" ".join(user.split()) or "someone")
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first


def nonce_for(delivery_key: str, index: int) -> str:
    """A stable per-chunk nonce (≤25 chars) so Discord drops a re-post of the same chunk (enforce_nonce)."""
    digest = hashlib.sha256(f"{delivery_key}:{index}".encode()).hexdigest()
    return f"u{digest}"[:NONCE_LIMIT]


def jump_link(guild_id: str | None, channel_id: int, message_id: int) -> str:
    """A discord.com link that opens a message (DMs use '@me')."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def escalation_of(value: str) -> tuple[str, int] | None:
    """Parse an admin's escalation target: <@&role>, <@user>, <#channel>, role:/user:/channel:<id> or a bare id."""
    match = _ESCALATION.match(value)
    if match is None:
        return None
    if match.group(1):
        return _SIGILS[match.group(1)], int(match.group(2))
    if match.group(3):
        return match.group(3).lower(), int(match.group(4))
    return "id", int(match.group(5))
