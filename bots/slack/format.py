"""Uppzy's answers as Slack messages: a `markdown` block Slack renders itself, with native feedback buttons and a
"Talk to a human" button; section blocks (Markdown converted to mrkdwn) as the fallback. Nothing can ping; pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bots.slack import strings as text
from core.text import close_fence, link_text_misleads, split_markdown, truncate_markdown

__all__ = [
    "ANSWER_EVENT_TYPE",
    "FEEDBACK_ACTIONS",
    "FEEDBACK_BAD",
    "FEEDBACK_GOOD",
    "HUMAN_ACTION",
    "RATE_ACTION",
    "SlackMessage",
    "answer_messages",
    "defuse",
    "defuse_markdown",
    "defuse_tokens",
    "escape",
    "rated_blocks",
    "rating_of",
    "to_mrkdwn",
]

MARKDOWN_LIMIT = 11_000  # Slack's markdown blocks hold 12,000 characters per message in all; room for the note
SECTION_LIMIT = 2900  # Slack rejects section text over 3,000 characters
BLOCKS_LIMIT = 11_000  # Slack refuses a message whose blocks hold more than about 12,000 characters in all
PLAIN_LIMIT = 3900  # plain-text messages (when Slack refuses the blocks) stay under Slack's 4,000
MAX_SECTIONS = 10  # Slack allows 50 blocks per message; leave room for the context and actions blocks
FALLBACK_LIMIT = 3000  # the notification text that travels with blocks
FEEDBACK_GOOD = "uppzy_feedback_good"
FEEDBACK_BAD = "uppzy_feedback_bad"
FEEDBACK_ACTIONS = {FEEDBACK_GOOD: "good", FEEDBACK_BAD: "bad"}  # the hand-made buttons (fallback, older answers)
RATE_ACTION = "uppzy_rate"  # the native feedback_buttons element; its value says good or bad
HUMAN_ACTION = "uppzy_human"
RATE_BLOCK = "uppzy_rate"
FEEDBACK_BLOCK = "uppzy_feedback"
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
_MARKS = frozenset("#-*_+")  # what a heading, rule, task or bullet line starts with (after spaces)
_SLACK_TOKEN = re.compile(r"<(?=[!@#])")  # <!channel>, <!here>, <!subteam^S…>, <@U…>, <#C…>


def escape(raw: str) -> str:
    """Escape Slack's three control characters; this alone defuses <!channel>, <@U…>, <#C…> and <!subteam^…>."""
    return raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def defuse(raw: str) -> str:
    """Escape, and break plain @channel/@here/@everyone with a zero-width space, so text can never ping."""
    safe = escape(raw)
    return _BROADCAST.sub("@" + _ZWSP, safe) if "@" in safe else safe


def defuse_markdown(raw: str) -> str:
    """Standard Markdown (for the markdown block) that cannot ping or mislead: Slack's <!…>, <@…> and <#…> tokens
    and plain @channel/@here/@everyone are broken with a zero-width space, and a link whose text reads as another
    address (or whose target is no web or mail address) shows where it really goes; otherwise as written."""
    lines = raw.replace("\x00", "").split("\n")
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and "[" in line:  # (each pattern below needs its own character: cheap lines skip it)
            out, pos = [], 0
            for span in _CODE_SPAN.finditer(line) if "`" in line else ():  # code spans stay exactly as written
                out += [_LINK.sub(_honest_link, line[pos:span.start()]), span.group(0)]
                pos = span.end()
            lines[index] = "".join([*out, _LINK.sub(_honest_link, line[pos:])])
    return defuse_tokens("\n".join(lines))


def defuse_tokens(raw: str) -> str:
    """Text as written, except that it cannot ping: Slack's <!…>, <@…>, <#…> and <!subteam^…> tokens and plain
    @channel/@here/@everyone are broken with a zero-width space."""
    if "<" in raw:
        raw = _SLACK_TOKEN.sub("<" + _ZWSP, raw)
    return _BROADCAST.sub("@" + _ZWSP, raw) if "@" in raw else raw


def _honest_link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    if not url.lower().startswith(("http://", "https://", "mailto:")):
        return f"{label} ({url})"
    if link_text_misleads(label, url):
        return f"{label} (<{url}>)"
    return match.group(0)


def _link(label: str, url: str) -> str:
    if not url.lower().startswith(("http://", "https://", "mailto:")):
        return f"{label} ({defuse(url)})"
    if label and link_text_misleads(label, url):  # text that reads as another URL: show where it really goes
        return f"{label} ({_link('', url)})"
    safe_url = escape(url).replace("|", "%7C")
    return f"<{safe_url}|{label.replace('|', '¦')}>" if label else f"<{safe_url}>"


def _styles(segment: str) -> str:
    """Bold, italic and strike-through of escaped text (no code, no links inside)."""
    if "**" in segment or "__" in segment:
        segment = _BOLD.sub(lambda m: "\x01" + (m.group(1) or m.group(2)) + "\x01", segment)
    if "*" in segment:
        segment = _ITALIC.sub(r"_\1_", segment)
    if "~~" in segment:
        segment = _STRIKE.sub(r"~\1~", segment)
    return segment.replace("\x01", "*") if "\x01" in segment else segment


def _inline(raw: str) -> str:
    """One line of prose: code spans kept verbatim (escaped), links rewritten, emphasis mapped, pings defused."""
    if "`" not in raw:
        return _prose(raw)
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
    if "[" in raw:
        raw = _LINK.sub(lambda m: keep(_link(_styles(defuse(m.group(1))), m.group(2))), raw)
    if "<" in raw:
        raw = _AUTOLINK.sub(lambda m: keep(_link("", m.group(1))), raw)
    styled = _styles(defuse(raw))
    return _SENTINEL.sub(lambda m: links[int(m.group(1))], styled) if links else styled


def _line(raw: str) -> str:
    if raw.lstrip()[:1] not in _MARKS:  # no heading, rule, task or bullet can start here
        return _inline(raw)
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

    `blocks` carry the part as a markdown block. `sections` is the same part as mrkdwn section blocks, posted
    when Slack refuses the markdown block (empty when they would not fit one message); `plain` is the part as
    plain-text messages (each under Slack's text limit, code fences balanced), the last resort.
    """

    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any]
    plain: tuple[str, ...] = ()
    sections: list[dict[str, Any]] = field(default_factory=list)


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def blocks_size(blocks: list[dict[str, Any]]) -> int:
    """What a message's blocks weigh against Slack's cumulative limit (their JSON: text plus containers)."""
    return len(json.dumps(blocks, ensure_ascii=False))


def plain_pieces(mrkdwn: str) -> tuple[str, ...]:
    """A part as plain-text messages under PLAIN_LIMIT; a piece that opens a code block closes it."""
    return tuple(close_fence(piece) for piece in split_markdown(mrkdwn, PLAIN_LIMIT - 4) if piece.strip())


def feedback_block() -> dict[str, Any]:
    """Hand-made 👍/👎 buttons: the section fallback's (older answers carry them too, and they keep working)."""
    buttons = [(FEEDBACK_GOOD, text.FEEDBACK_GOOD_LABEL, "good"), (FEEDBACK_BAD, text.FEEDBACK_BAD_LABEL, "bad")]
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {"type": "button", "action_id": action, "value": value,
             "text": {"type": "plain_text", "text": label, "emoji": True}}
            for action, label, value in buttons
        ],
    }


def rate_block() -> dict[str, Any]:
    """Slack's native 👍/👎 (a feedback_buttons element in a context_actions block) under an answer."""
    def button(label: str, value: str, spoken: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": label}, "value": value, "accessibility_label": spoken}

    return {"type": "context_actions", "block_id": RATE_BLOCK, "elements": [{
        "type": "feedback_buttons", "action_id": RATE_ACTION,
        "positive_button": button("👍", "good", text.FEEDBACK_GOOD_LABEL),
        "negative_button": button("👎", "bad", text.FEEDBACK_BAD_LABEL)}]}


def human_block() -> dict[str, Any]:
    """The "Talk to a human" button. Not an icon_button in the context_actions block: Slack offers only a trash
    icon for those, so it is a plain button of its own."""
    return {"type": "actions", "block_id": HUMAN_ACTION, "elements": [{
        "type": "button", "action_id": HUMAN_ACTION, "value": "human",
        "text": {"type": "plain_text", "text": text.HUMAN_LABEL, "emoji": True}}]}


def rating_of(action: Any) -> str | None:
    """'good'/'bad' for a click on either kind of feedback button, else None."""
    if not isinstance(action, dict):
        return None
    action_id = str(action.get("action_id"))
    if action_id == RATE_ACTION:
        value = str(action.get("value"))
        return value if value in ("good", "bad") else None
    return FEEDBACK_ACTIONS.get(action_id)


def rated_blocks(blocks: list[dict[str, Any]], rating: str) -> list[dict[str, Any]] | None:
    """The answer's blocks with its feedback buttons replaced by a line saying the rating was received (the
    "Talk to a human" button stays); None when it carries no feedback buttons (already shown as rated)."""
    line = text.RATED_GOOD if rating == "good" else text.RATED_BAD
    out: list[dict[str, Any]] = []
    found = False
    for block in blocks:
        if isinstance(block, dict) and block.get("block_id") in (RATE_BLOCK, FEEDBACK_BLOCK):
            out.append({"type": "context", "block_id": "uppzy_rated", "elements": [{"type": "mrkdwn", "text": line}]})
            found = True
        else:
            out.append(block)
    return out if found else None


def _sections(mrkdwn: str, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A part as section blocks plus `tail`, or [] when that would not fit one message."""
    blocks = [_section(c) for c in split_markdown(mrkdwn, SECTION_LIMIT) if c.strip()] or [_section("…")]
    if len(blocks) > MAX_SECTIONS or blocks_size(blocks + tail) > BLOCKS_LIMIT:
        return []
    return blocks + tail


def answer_messages(markdown: str, *, delivery_key: str, low_confidence_note: str | None = None
                    ) -> list[SlackMessage]:
    """The messages that carry one answer (a markdown block each); the last gets the low-confidence note, the
    feedback buttons and "Talk to a human"."""
    safe = defuse_markdown(markdown.replace("\r\n", "\n").replace("\r", "\n")).strip() or "…"
    note = ""
    notes: list[dict[str, Any]] = []
    if low_confidence_note:
        note = truncate_markdown(f"{text.LOW_CONFIDENCE_PREFIX} {to_mrkdwn(low_confidence_note)}", FALLBACK_LIMIT)
        notes.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    parts = [close_fence(p) for p in split_markdown(safe, MARKDOWN_LIMIT) if p.strip()] or ["…"]
    messages: list[SlackMessage] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        blocks: list[dict[str, Any]] = [{"type": "markdown", "text": part}]
        rendered = to_mrkdwn(part).strip() or "…"
        body = rendered
        sections_tail: list[dict[str, Any]] = []
        if last:
            blocks += [*notes, rate_block(), human_block()]
            sections_tail = [*notes, feedback_block(), human_block()]
            body = f"{body}\n\n{note}" if note else body
        metadata = {"event_type": ANSWER_EVENT_TYPE,
                    "event_payload": {"delivery_key": delivery_key, "part": index, "parts": len(parts)}}
        messages.append(SlackMessage(truncate_markdown(rendered, FALLBACK_LIMIT), blocks, metadata,
                                     plain_pieces(body), _sections(rendered, sections_tail)))
    return messages
