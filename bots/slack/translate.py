"""Slack payloads as core's neutral types: pure functions, no I/O."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from bots.slack.format import rating_of
from core.models import FeedbackEvent, InboundMessage, MessagePlace, ReplyTarget
from core.text import is_blank

__all__ = [
    "USER_SUBTYPES",
    "button_feedback",
    "escalation_ids",
    "event_key",
    "forwarded_text",
    "is_user_message",
    "mentions_bot",
    "plain_text",
    "reaction_feedback",
    "strip_mention",
    "to_inbound",
    "workspace_of",
]

USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})  # edits, deletions, joins, bots: ignored
_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_ID = re.compile(r"\b([CGSUW](?=[A-Z0-9]*\d)[A-Z0-9]{2,})\b")

def workspace_of(body: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Settings key (team id; enterprise id for org-level payloads without one) and routing extras.

    An Events API body names the installation that received it in `authorizations`, which wins over `team_id` as
    it does in bolt: in a Slack Connect channel the envelope's team may be the other organisation's, while the
    question belongs to (and is answered with the token of) the workspace whose installation got it.
    """
    installed = _installation_of(body)
    team = installed[0] or body.get("team_id") or (body.get("team") or {}).get("id") \
        or (body.get("user") or {}).get("team_id") or (body.get("event") or {}).get("team")
    enterprise = installed[1] or body.get("enterprise_id") or (body.get("enterprise") or {}).get("id")
    extras: list[tuple[str, str]] = []
    if team:
        extras.append(("team_id", str(team)))
    if enterprise:
        extras.append(("enterprise_id", str(enterprise)))
    return str(team or enterprise or "unknown"), tuple(extras)


def _installation_of(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(team, enterprise) of the first authorization of an Events API body, when it names a team (an org-wide
    install's authorization has none: the event's own team then keys the workspace's settings)."""
    found = body.get("authorizations")
    first = found[0] if isinstance(found, list) and found and isinstance(found[0], Mapping) else None
    if first is None or not isinstance(first.get("team_id"), str) or not first.get("team_id"):
        return None, None
    enterprise = first.get("enterprise_id")
    return str(first["team_id"]), str(enterprise) if isinstance(enterprise, str) and enterprise else None


def is_user_message(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """A person's new message: not a bot (or us), not an edit, deletion, join or other subtype.

    user, channel and ts must be non-empty strings and text a string (or absent): anything else is malformed.
    """
    ids = (event.get("user"), event.get("channel"), event.get("ts"))
    return (
        event.get("type") in ("message", "app_mention")
        and event.get("subtype") in USER_SUBTYPES
        and not event.get("bot_id")
        and all(isinstance(value, str) and value for value in ids)
        and event.get("user") != bot_user_id
        and isinstance(event.get("text") or "", str)
    )


def mentions_bot(raw: str, bot_user_id: str | None) -> bool:
    """True when the text mentions the bot (Slack writes <@U…> or <@U…|name>)."""
    return bool(bot_user_id) and (f"<@{bot_user_id}>" in raw or f"<@{bot_user_id}|" in raw)


def strip_mention(raw: str, bot_user_id: str | None) -> str:
    """The message without the bot's own mention, which means nothing to Uppzy."""
    if bot_user_id:
        raw = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[,:]?", " ", raw)
    return raw.strip()


def plain_text(raw: str) -> str:
    """Slack's escaped text as a person reads it: <@U|name> → @name, <url|label> → label (url), &lt; → <."""

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return f"@{label}" if label else target
        if target.startswith("#"):
            return f"#{label}" if label else target
        if target.startswith("!"):
            name = target[1:].split("^")[0]
            return label or f"@{name}"
        return f"{label} ({target})" if label and label != target else target

    return html.unescape(_SLACK_LINK.sub(readable, raw)).replace("\xa0", " ")


def _shared(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The forwarded (shared) messages a message carries: Slack puts each in `attachments` with `is_share` (or
    `is_msg_unfurl`), leaving `text` empty or holding the forwarder's comment."""
    found = event.get("attachments")
    if not isinstance(found, list):
        return []
    return [a for a in found if isinstance(a, Mapping) and (a.get("is_share") or a.get("is_msg_unfurl"))]


def forwarded_text(event: Mapping[str, Any]) -> str:
    """The text of the messages forwarded in this one (Slack-escaped, like `text`), blank when there is none."""
    parts = []
    for shared in _shared(event):
        body = shared["text"] if "text" in shared else shared.get("fallback")  # fallback: a summary when no text
        if isinstance(body, str) and not is_blank(body):
            parts.append(body.strip())
    return "\n\n".join(parts)


def event_key(event: Mapping[str, Any]) -> str:
    """channel:ts names the message itself, so redeliveries and app_mention+message copies collapse."""
    return f"{event.get('channel')}:{event.get('ts')}"


def to_inbound(body: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str | None) -> InboundMessage:
    """A user message event as core's InboundMessage: mention stripped, with where it was written (core's router
    decides whether it is a question)."""
    workspace, extras = workspace_of(body)
    ts = str(event["ts"])
    thread_ts = event.get("thread_ts")
    thread = str(thread_ts) if thread_ts and thread_ts != ts else None
    is_dm = event.get("channel_type") == "im"
    if is_dm and thread:  # Slack's AI assistant threads live in the app's DM; bolt uses the same test
        extras = (*extras, ("assistant", "1"))
    target = ReplyTarget(
        platform="slack", workspace_id=workspace, channel_id=str(event["channel"]),
        message_channel_id=str(event["channel"]), message_id=ts, user_id=str(event["user"]), thread_id=thread,
        is_dm=is_dm, extras=extras,
    )
    raw = str(event.get("text") or "")
    question = plain_text(strip_mention(raw, bot_user_id))
    forwarded = plain_text(strip_mention(forwarded_text(event), bot_user_id))
    if forwarded:  # a forwarded message is asked about: its text, after the forwarder's own words if any
        question = f"{question}\n\n{forwarded}" if not is_blank(question) else forwarded
    files = bool(event.get("files")) or any(shared.get("files") for shared in _shared(event))
    place = MessagePlace.DIRECT if is_dm else MessagePlace.THREAD if thread else MessagePlace.CHANNEL
    return InboundMessage(target=target, text=question, event_key=event_key(event), place=place,
                          mentioned=event.get("type") == "app_mention" or mentions_bot(raw, bot_user_id),
                          attachments_only=is_blank(question) and (files or bool(_shared(event))))


def reaction_feedback(body: Mapping[str, Any], event: Mapping[str, Any]) -> FeedbackEvent | None:
    """A reaction on a message as feedback (core decides whether the emoji and message count)."""
    item = event.get("item") or {}
    if item.get("type") != "message" or not item.get("ts") or not event.get("user"):
        return None
    return FeedbackEvent(platform="slack", workspace_id=workspace_of(body)[0], message_id=str(item["ts"]),
                         user_id=str(event["user"]), source="reaction", emoji=str(event.get("reaction") or ""),
                         removed=event.get("type") == "reaction_removed",
                         channel_id=str(item["channel"]) if item.get("channel") else None)


def button_feedback(body: Mapping[str, Any]) -> FeedbackEvent | None:
    """A 👍/👎 press (Slack's feedback_buttons or the hand-made buttons) as feedback on the message carrying it."""
    actions = body.get("actions") or [{}]
    rating = rating_of(actions[0])
    container = body.get("container") or {}
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    user = (body.get("user") or {}).get("id")
    if rating is None or not message_ts or not user:
        return None
    return FeedbackEvent(platform="slack", workspace_id=workspace_of(body)[0], message_id=str(message_ts),
                         user_id=str(user), source="button", rating=rating,  # type: ignore[arg-type]
                         channel_id=str(channel) if channel else None)


def escalation_ids(setting: str) -> dict[str, str]:
    """The first channel (C/G), user group (S) and user (U/W) id in an escalation setting."""
    found: dict[str, str] = {}
    for match in _ID.finditer(setting):
        kind = {"C": "channel", "G": "channel", "S": "group", "U": "user", "W": "user"}[match.group(1)[0]]
        found.setdefault(kind, match.group(1))
    return found
