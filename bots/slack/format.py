"""Uppzy Markdown to Slack mrkdwn and Block Kit, with every ping sequence defused; pure, no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bots.slack import strings as text
from core.text import close_fence, link_text_misleads, split_markdown, truncate_markdown

__all__ = [
    "ANSWER_EVENT_TYPE",
    "FEEDBACK_ACTIONS",
    "FEEDBACK_BAD",
    "FEEDBACK_GOOD",
    "SlackMessage",
    "answer_messages",
    "defuse",
    "escape",
    "to_mrkdwn",
]

SECTION_LIMIT = 2900  # Slack rejects section text over 3,000 characters
BLOCKS_LIMIT = 11_000  # Slack refuses a message whose blocks hold more than about 12,000 characters in all
PLAIN_LIMIT = 3900  # plain-text messages (when Slack refuses the blocks) stay under Slack's 4,000
MAX_SECTIONS = 10  # Slack allows 50 blocks per message; leave room for the context and actions blocks
FALLBACK_LIMIT = 3000  # the notification text that travels with blocks
FEEDBACK_GOOD = "uppzy_feedback_good"
FEEDBACK_BAD = "uppzy_feedback_bad"
FEEDBACK_ACTIONS = {FEEDBACK_GOOD: "good", FEEDBACK_BAD: "bad"}
ANSWER_EVENT_TYPE = "uppzy_answer"

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_TASK = re.compile(r"^(\s*)[-*+]\s+\[([ xX])\]\s+(.*)$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_TABLE = re.compile(r"^\s*\|.*\|\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]\n]+)\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^<>\s]+)>")
_BROADCAST = re.compile(r"(?<![\w.+-])@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*\\])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_SENTINEL = re.compile(r"\x00(\d+)\x00")
_BULLETS = ("•", "◦", "▪")
_ZWSP = "\u200b"


def escape(raw: str) -> str:
    """Escape Slack's three control characters; this alone defuses <!channel>, <@U…>, <#C…> and <!subteam^…>."""
    return raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def defuse(raw: str) -> str:
    """Escape, and break plain @channel/@here/@everyone with a zero-width space, so text can never ping."""
    return _BROADCAST.sub("@" + _ZWSP, escape(raw))


def _link(label: str, url: str) -> str:
    if not url.lower().startswith(("http://", "https://", "mailto:")):
        return f"{label} ({defuse(url)})"
    if label and link_text_misleads(label, url):  # text that reads as another URL: show where it really goes
        return f"{label} ({_link('', url)})"
    safe_url = escape(url).replace("|", "%7C")
    return f"<{safe_url}|{label.replace('|', '¦')}>" if label else f"<{safe_url}>"


def _styles(segment: str) -> str:
    """Bold, italic and strike-through of escaped text (no code, no links inside)."""
    segment = _BOLD.sub(lambda m: "\x01" + (m.group(1) or m.group(2)) + "\x01", segment)
    segment = _ITALIC.sub(r"_\1_", segment)
    segment = _STRIKE.sub(r"~\1~", segment)
    return segment.replace("\x01", "*")


def _inline(raw: str) -> str:
    """One line of prose: code spans kept verbatim (escaped), links rewritten, emphasis mapped, pings defused."""
    out: list[str] = []
    pos = 0
    for match in _CODE_SPAN.finditer(raw):
        out.append(_prose(raw[pos:match.start()]))
        out.append("`" + escape(match.group(2)) + "`")
        pos = match.end()
    out.append(_prose(raw[pos:]))
    return "".join(out)


def _prose(raw: str) -> str:
    links: list[str] = []

    def keep(rendered: str) -> str:
        links.append(rendered)
        return f"\x00{len(links) - 1}\x00"

    raw = raw.replace("\x00", "").replace("\x01", "")
    raw = _LINK.sub(lambda m: keep(_link(_styles(defuse(m.group(1))), m.group(2))), raw)
    raw = _AUTOLINK.sub(lambda m: keep(_link("", m.group(1))), raw)
    return _SENTINEL.sub(lambda m: links[int(m.group(1))], _styles(defuse(raw)))


def _line(raw: str) -> str:
    heading = _HEADING.match(raw)
    if heading:
        title = heading.group(1).replace("**", "").replace("__", "")
        return f"*{_inline(title)}*" if title.strip() else ""
    if _RULE.match(raw):
        return "──────────"
    task = _TASK.match(raw)
    if task:
        box = "☐" if task.group(2) == " " else "☑"
        return f"{_indent(task.group(1))}{box} {_inline(task.group(3))}"
    bullet = _BULLET.match(raw)
    if bullet:
        level = min(len(bullet.group(1).expandtabs(4)) // 2, len(_BULLETS) - 1)
        return f"{_indent(bullet.group(1))}{_BULLETS[level]} {_inline(bullet.group(2))}"
    return _inline(raw)


def _indent(spaces: str) -> str:
    return "    " * (len(spaces.expandtabs(4)) // 2)


def to_mrkdwn(markdown: str) -> str:
    """Render Uppzy's Markdown as Slack mrkdwn: bold, links, lists, headings, code blocks; nothing can ping."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    in_fence = False
    in_table = False
    for raw in lines:
        if _FENCE.match(raw):
            if in_table:
                out.append("```")
                in_table = False
            out.append("```")  # Slack shows a language tag as code, so drop it
            in_fence = not in_fence
        elif in_fence:
            out.append(escape(raw))
        elif _TABLE.match(raw):
            if not in_table:
                out.append("```")  # Slack has no tables; a code block keeps the columns aligned
                in_table = True
            out.append(escape(raw.strip()))
        else:
            if in_table:
                out.append("```")
                in_table = False
            out.append(_line(raw))
    if in_fence or in_table:
        out.append("```")
    return "\n".join(out).strip("\n")


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One chat.postMessage worth of an answer: notification text, blocks and the delivery metadata.

    `plain` is the same part as plain-text messages (each under Slack's text limit, code fences balanced),
    posted instead when Slack refuses the blocks.
    """

    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any]
    plain: tuple[str, ...] = ()


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _fallback(sections: list[str]) -> str:
    return truncate_markdown("\n\n".join(sections), FALLBACK_LIMIT)


def blocks_size(blocks: list[dict[str, Any]]) -> int:
    """What a message's blocks weigh against Slack's cumulative limit (their JSON: text plus containers)."""
    return len(json.dumps(blocks, ensure_ascii=False))


def plain_pieces(mrkdwn: str) -> tuple[str, ...]:
    """A part as plain-text messages under PLAIN_LIMIT; a piece that opens a code block closes it."""
    return tuple(close_fence(piece) for piece in split_markdown(mrkdwn, PLAIN_LIMIT - 4) if piece.strip())


def feedback_block() -> dict[str, Any]:
    """The 👍/👎 buttons that end every answer."""
    buttons = [(FEEDBACK_GOOD, text.FEEDBACK_GOOD_LABEL, "good"), (FEEDBACK_BAD, text.FEEDBACK_BAD_LABEL, "bad")]
    return {
        "type": "actions",
        "block_id": "uppzy_feedback",
        "elements": [
            {"type": "button", "action_id": action, "value": value,
             "text": {"type": "plain_text", "text": label, "emoji": True}}
            for action, label, value in buttons
        ],
    }


def _group(chunks: list[str], budget: int) -> list[list[str]]:
    """Sections per message, each message's blocks within `budget` (measured like Slack: blocks_size)."""
    groups: list[list[str]] = [[]]
    size = 2
    for chunk in chunks:
        cost = blocks_size([_section(chunk)]) + 1
        if groups[-1] and (size + cost > budget or len(groups[-1]) >= MAX_SECTIONS):
            groups.append([])
            size = 2
        groups[-1].append(chunk)
        size += cost
    return groups


def answer_messages(markdown: str, *, delivery_key: str, low_confidence_note: str | None = None
                    ) -> list[SlackMessage]:
    """The messages that carry one answer; the last gets the low-confidence note and the feedback buttons."""
    rendered = to_mrkdwn(markdown).strip() or "…"
    tail: list[dict[str, Any]] = []
    note = ""
    if low_confidence_note:
        note = truncate_markdown(f"{text.LOW_CONFIDENCE_PREFIX} {to_mrkdwn(low_confidence_note)}", FALLBACK_LIMIT)
        tail.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    tail.append(feedback_block())
    budget = BLOCKS_LIMIT - blocks_size(tail)  # every message keeps room for the note and the buttons
    groups = _group([c for c in split_markdown(rendered, SECTION_LIMIT) if c.strip()] or ["…"], budget)
    messages: list[SlackMessage] = []
    for index, sections in enumerate(groups):
        blocks = [_section(s) for s in sections]
        body = "\n\n".join(sections)
        if index == len(groups) - 1:
            blocks += tail
            body = f"{body}\n\n{note}" if note else body
        metadata = {"event_type": ANSWER_EVENT_TYPE,
                    "event_payload": {"delivery_key": delivery_key, "part": index, "parts": len(groups)}}
        messages.append(SlackMessage(_fallback(sections), blocks, metadata, plain_pieces(body)))
    return messages
