"""Slack as a ChatPlatform, plus pure translators from Slack payloads to core's neutral types."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots import slack_messages as text
from bots.slack_format import ANSWER_EVENT_TYPE, FEEDBACK_ACTIONS, SlackMessage, answer_messages, to_mrkdwn
from core.models import Answer, FeedbackEvent, InboundMessage, Notice, ReplyTarget

__all__ = [
    "SlackAdapter",
    "button_feedback",
    "escalation_ids",
    "event_key",
    "is_user_message",
    "mentions_bot",
    "plain_text",
    "reaction_feedback",
    "strip_mention",
    "to_inbound",
    "workspace_of",
]

log = logging.getLogger(__name__)

WORKING_REACTION = "hourglass_flowing_sand"
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})  # edits, deletions, joins, bots: ignored
_BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "too_many_blocks"})
_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_ID = re.compile(r"\b([CGSUW](?=[A-Z0-9]*\d)[A-Z0-9]{2,})\b")


# ---- pure translators ------------------------------------------------------------------------------

def workspace_of(body: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Settings key (team id; enterprise id for org-level payloads without one) and routing extras."""
    team = body.get("team_id") or (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") \
        or (body.get("event") or {}).get("team")
    enterprise = body.get("enterprise_id") or (body.get("enterprise") or {}).get("id")
    extras: list[tuple[str, str]] = []
    if team:
        extras.append(("team_id", str(team)))
    if enterprise:
        extras.append(("enterprise_id", str(enterprise)))
    return str(team or enterprise or "unknown"), tuple(extras)


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


def event_key(event: Mapping[str, Any]) -> str:
    """channel:ts names the message itself, so redeliveries and app_mention+message copies collapse."""
    return f"{event.get('channel')}:{event.get('ts')}"


def to_inbound(body: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str | None, *,
               email: str | None = None) -> InboundMessage:
    """A user message event as core's InboundMessage, mention stripped."""
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
    question = plain_text(strip_mention(str(event.get("text") or ""), bot_user_id))
    return InboundMessage(target=target, text=question, event_key=event_key(event), email=email)


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
    """A 👍/👎 button press as feedback on the message that carries the buttons."""
    actions = body.get("actions") or [{}]
    rating = FEEDBACK_ACTIONS.get(str(actions[0].get("action_id")))
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


# ---- the platform ----------------------------------------------------------------------------------

class SlackAdapter:
    """Posts answers, notices and progress to Slack through one Web API client."""

    platform = "slack"
    feedback_emoji = (("+1", "thumbsup"), ("-1", "thumbsdown"))  # Slack's names; skin tones are matched too

    def __init__(self, client: AsyncWebClient, *, cosmetic_client: AsyncWebClient | None = None,
                 cosmetic_timeout: float = 3.0) -> None:
        self.client = client
        self.cosmetic_client = cosmetic_client or client
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._cosmetic_timeout = cosmetic_timeout

    async def _cosmetic(self, method: str, ignore: tuple[str, ...] = (), **kwargs: Any) -> None:
        """A progress call that must never delay an answer: no 429 waits, bounded in time, errors only logged.

        core submits the question only after show_working returns, so a rate-limited reaction is skipped.
        """
        try:
            async with asyncio.timeout(self._cosmetic_timeout):
                await getattr(self.cosmetic_client, method)(**kwargs)
        except SlackApiError as exc:
            if exc.response.get("error") not in ignore:
                log.debug("%s failed: %s", method, exc.response.get("error"))
        except (TimeoutError, OSError) as exc:
            log.debug("%s failed: %s", method, type(exc).__name__)

    async def show_working(self, target: ReplyTarget) -> None:
        """An hourglass on the question; the 'is thinking…' status in AI assistant threads."""
        await self._cosmetic("reactions_add", ("already_reacted",), channel=target.message_channel_id,
                             timestamp=target.message_id, name=WORKING_REACTION)
        if target.extra("assistant"):
            await self._cosmetic("assistant_threads_setStatus", channel_id=target.channel_id,
                                 thread_ts=target.thread_root, status=text.THINKING_STATUS)

    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the hourglass (and assistant status) away again."""
        await self._cosmetic("reactions_remove", ("no_reaction",), channel=target.message_channel_id,
                             timestamp=target.message_id, name=WORKING_REACTION)
        if target.extra("assistant"):
            await self._cosmetic("assistant_threads_setStatus", channel_id=target.channel_id,
                                 thread_ts=target.thread_root, status="")

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Post the answer in the thread (split if long); after a failed attempt, reuse parts already posted."""
        messages = answer_messages(answer.text, delivery_key=answer.delivery_key,
                                   low_confidence_note=answer.low_confidence_note)
        posted = await self._posted_parts(target, answer.delivery_key) if recovering else {}
        ids: list[str] = []
        for part, message in enumerate(messages):
            ids.append(posted.get(part) or await self._post(target, message))
        return ids

    async def _post(self, target: ReplyTarget, message: SlackMessage) -> str:
        kwargs: dict[str, Any] = {"channel": target.channel_id, "thread_ts": target.thread_root,
                                  "text": message.text, "metadata": message.metadata,
                                  "unfurl_links": False, "unfurl_media": False}
        try:
            response = await self.client.chat_postMessage(blocks=message.blocks, **kwargs)
        except SlackApiError as exc:
            if exc.response.get("error") not in _BLOCK_ERRORS:
                raise
            log.warning("Slack refused the answer blocks (%s); posting plain text", exc.response.get("error"))
            response = await self.client.chat_postMessage(**kwargs)
        return str(response["ts"])

    async def _posted_parts(self, target: ReplyTarget, delivery_key: str) -> dict[int, str]:
        """Parts of this answer already in the thread (found by their message metadata)."""
        parts: dict[int, str] = {}
        cursor = None
        for _ in range(5):  # answers follow their question, so a few pages from it are plenty
            try:
                response = await self.client.conversations_replies(
                    channel=target.channel_id, ts=target.thread_root, oldest=target.message_id,
                    include_all_metadata=True, limit=200, cursor=cursor)
            except SlackApiError as exc:  # better a rare second copy than a lost answer
                log.warning("could not look for an earlier copy of %s: %s", delivery_key, exc.response.get("error"))
                return parts
            for message in response.get("messages") or []:
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == ANSWER_EVENT_TYPE and payload.get("delivery_key") == delivery_key \
                        and (message.get("bot_id") == self.bot_id or self.bot_id is None):
                    parts.setdefault(int(payload.get("part", 0)), str(message["ts"]))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        if parts:
            log.info("found %d part(s) of %s already posted; not posting them again", len(parts), delivery_key)
        return parts

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """A short line in the conversation's thread."""
        await self.client.chat_postMessage(channel=target.channel_id, thread_ts=target.thread_root,
                                           text=to_mrkdwn(notice.text), unfurl_links=False, unfurl_media=False)

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str) -> None:
        """Ping the configured channel, user group or person with a link to the badly rated answer.

        A channel id gets the message there (pinging a user group too if one is named); a user group alone
        is pinged in the conversation's own thread (not in DMs, where it cannot see it); a user gets a DM.
        """
        ids = escalation_ids(escalation_target)
        link = await self.client.chat_getPermalink(channel=target.channel_id, message_ts=answer_message_id)
        ping = f"<!subteam^{ids['group']}> " if "group" in ids else f"<@{ids['user']}> " if "user" in ids else ""
        body = text.ESCALATION.format(ping=ping, link=link["permalink"])
        if "channel" in ids:
            await self.client.chat_postMessage(channel=ids["channel"], text=body, unfurl_links=False)
        elif "group" in ids and not target.is_dm:
            await self.client.chat_postMessage(channel=target.channel_id, thread_ts=target.thread_root, text=body,
                                               unfurl_links=False)
        elif "user" in ids:
            await self.client.chat_postMessage(channel=ids["user"], text=body, unfurl_links=False)
        else:
            log.warning("escalation target %r names no channel, user group or user Slack can reach",
                        escalation_target[:60])

    async def ephemeral(self, channel: str, user: str, message: str, *, thread_ts: str | None = None) -> None:
        """A line only `user` sees (feedback thanks, 'text only'); failures are logged, never raised."""
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=message, thread_ts=thread_ts)
        except SlackApiError as exc:
            log.info("ephemeral reply failed: %s", exc.response.get("error"))
        except OSError as exc:
            log.info("ephemeral reply failed: %s", type(exc).__name__)
