"""Private answers: `/uppzy ask <question>` answers the asker alone, in their DM with the bot (a thread of its own,
in a session of its own), with an ephemeral pointer in the channel; "Share with the channel" posts it there later.

Why the DM and not an ephemeral answer: an ephemeral message cannot be updated, threaded or linked to, so the
native 👍/👎 could not show the rating, "Talk to a human" would have no permalink to send, and the answer would
vanish on reload. A DM answer is an ordinary answer (rating, escalation, recovery after a restart all work) that
only the asker can see.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from slack_sdk.errors import SlackApiError

from bots.slack.format import SlackMessage, defuse, defuse_markdown, defuse_tokens
from bots.slack.translate import plain_text, workspace_of
from core.models import PRIVATE, Accepted, InboundMessage, MessagePlace, ReplyTarget
from core.ports import Inbound

if TYPE_CHECKING:
    from bots.slack.outbound import SlackAdapter

__all__ = ["ASK_USAGE", "SHARE_ACTION", "SlackPrivate", "shared_message", "with_share"]

log = logging.getLogger(__name__)

SHARE_ACTION = "uppzy_share"
SHARE_BLOCK = "uppzy_share"
SHARED_BLOCK = "uppzy_shared"
ASK_USAGE = "Usage: `/uppzy ask <question>`: I answer you privately, in our direct messages."
SHARE_LABEL = "Share with the channel"
_HEADER = "You asked privately in <#{channel}>:\n>{question}"
_POINTER = "I'm answering you privately, in <{link}|our direct messages>. Only you can see it."
_POINTER_NO_LINK = "I'm answering you privately, in our direct messages (the Messages tab of the app)."
_NO_DM = "I couldn't message you privately, so I can't answer this one privately. Ask me with a mention instead."
_OFF = "I'm switched off in this channel, so I can't answer questions asked here."
_ALREADY = "This answer has already been shared."
_SHARED_LINE = "Shared in <#{channel}>."
_CANT_SHARE = "I couldn't post in <#{channel}> (invite me there first: `/invite @Uppzy`)."
_ATTRIBUTION = "<@{user}> shared an answer"

Handler = Callable[..., Awaitable[None]]


def _share_block(channel: str) -> dict[str, Any]:
    return {"type": "actions", "block_id": SHARE_BLOCK, "elements": [{
        "type": "button", "action_id": SHARE_ACTION, "value": channel,
        "text": {"type": "plain_text", "text": SHARE_LABEL, "emoji": True}}]}


def with_share(message: SlackMessage, channel: str) -> SlackMessage:
    """A private answer's message with "Share with the channel" (for `channel`, where it was asked) under it."""
    block = _share_block(channel)
    return replace(message, blocks=[*message.blocks, block],
                   sections=[*message.sections, block] if message.sections else [])


def _mrkdwn_safe(raw: str) -> str:
    """mrkdwn from a payload that cannot ping (format.defuse_tokens, shared with the answers' own defusing)."""
    return defuse_tokens(raw)


def shared_message(message: Mapping[str, Any], user: str) -> tuple[str, list[dict[str, Any]]] | None:
    """What sharing the clicked answer posts: (notification text, blocks) attributed to `user`, the answer's text
    taken from its own blocks (markdown, else sections) and neutralised again; None when it carries none."""
    content: list[dict[str, Any]] = []
    for block in message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "markdown" and isinstance(block.get("text"), str):
            content.append({"type": "markdown", "text": defuse_markdown(block["text"])})
        elif block.get("type") == "section" and isinstance((block.get("text") or {}).get("text"), str):
            content.append({"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn_safe(block["text"]["text"])}})
    if not content:
        return None
    attribution = _ATTRIBUTION.format(user=user)
    head = {"type": "context", "elements": [{"type": "mrkdwn", "text": attribution + ":"}]}
    body = _mrkdwn_safe(str(message.get("text") or ""))[:2500]
    return f"{attribution}: {body}" if body else attribution, [head, *content]


def _shared_blocks(blocks: Any, channel: str) -> list[dict[str, Any]] | None:
    """The answer's blocks with the share button replaced by "Shared in #channel"; None without the button."""
    if not isinstance(blocks, list) or not any(isinstance(b, dict) and b.get("block_id") == SHARE_BLOCK
                                               for b in blocks):
        return None
    line = {"type": "context", "block_id": SHARED_BLOCK,
            "elements": [{"type": "mrkdwn", "text": _SHARED_LINE.format(channel=channel)}]}
    return [line if isinstance(b, dict) and b.get("block_id") == SHARE_BLOCK else b for b in blocks]


class SlackPrivate:
    """`/uppzy ask` (the question goes to core as a DM question marked private) and the share button."""

    def __init__(self, relay: Inbound, adapter: SlackAdapter) -> None:
        self.relay = relay
        self.adapter = adapter
        self._shared: LRUCache[tuple[str, str], None] = LRUCache(maxsize=10_000)  # (dm channel, ts) shared

    def register(self, app: Any, wrap: Callable[[Handler], Handler] = lambda h: h) -> None:
        """Attach the share button's listener to the bolt app (passed through `wrap`)."""
        app.action(SHARE_ACTION)(wrap(self._on_share))

    async def ask(self, command: Mapping[str, Any], question: str) -> str:
        """Take one `/uppzy ask`: open its private thread in the asker's DM, hand the question to core, and return
        the line only the asker sees in the channel."""
        question = plain_text(question).strip()
        if not question:
            return ASK_USAGE
        workspace, extras = workspace_of(command)
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        if not user or not channel:
            return ASK_USAGE
        if not channel.startswith("D") and await self.relay.channel_mode("slack", workspace, channel) == "off":
            return _OFF
        ids = dict(extras)
        async with self.adapter.teams.using(ids.get("team_id"), ids.get("enterprise_id")):
            client = self.adapter.client
            header = _HEADER.format(channel=channel, question=defuse(question[:300]).replace("\n", "\n>"))
            try:
                opened = await client.chat_postMessage(channel=user, text=header, unfurl_links=False,
                                                       unfurl_media=False)
            except SlackApiError as exc:
                log.info("private answer: cannot message user=%s: %s", user, exc.response.get("error"))
                return _NO_DM
            dm, ts = str(opened["channel"]), str(opened["ts"])
            target = ReplyTarget(platform="slack", workspace_id=workspace, channel_id=dm, message_channel_id=dm,
                                 message_id=ts, user_id=user, is_dm=True, extras=(*extras, (PRIVATE, channel)))
            result = await self.relay.handle_message(InboundMessage(
                target=target, text=question, event_key=f"{dm}:{ts}", place=MessagePlace.DIRECT, mentioned=True))
            if not isinstance(result, Accepted):  # core has told the asker why, in that thread
                log.info("private question not taken user=%s: %s", user, getattr(result, "reason", "?"))
            try:
                link = (await client.chat_getPermalink(channel=dm, message_ts=ts)).get("permalink")
            except SlackApiError:
                link = None
        return _POINTER.format(link=link) if link else _POINTER_NO_LINK

    async def _on_share(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Post the clicked private answer in the channel it was asked in, attributed, once; then mark it shared."""
        await ack()
        container = body.get("container") or {}
        message = body.get("message") or {}
        dm = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        ts = str(container.get("message_ts") or message.get("ts") or "")
        user = str((body.get("user") or {}).get("id") or "")
        origin = str(action.get("value") or "")
        if not (dm and ts and user and re.fullmatch(r"[CGD][A-Z0-9]+", origin)):
            return
        _, extras = workspace_of(body)
        ids = dict(extras)
        thread = message.get("thread_ts")
        async with self.adapter.teams.using(ids.get("team_id"), ids.get("enterprise_id")):
            shared = shared_message(message, user)
            updated = _shared_blocks(message.get("blocks"), origin)  # the DM's answer, marked shared
            if (dm, ts) in self._shared or updated is None or shared is None:
                await self.adapter.ephemeral(dm, user, _ALREADY, thread_ts=thread)
                return
            self._shared[(dm, ts)] = None  # before the post: a second click while it is in flight shares nothing
            fallback, blocks = shared
            try:
                await self.adapter.client.chat_postMessage(channel=origin, text=fallback, blocks=blocks,
                                                           unfurl_links=False, unfurl_media=False)
            except SlackApiError as exc:
                del self._shared[(dm, ts)]
                log.info("share to channel=%s failed: %s", origin, exc.response.get("error"))
                await self.adapter.ephemeral(dm, user, _CANT_SHARE.format(channel=origin), thread_ts=thread)
                return
            log.info("private answer shared user=%s channel=%s", user, origin)
            try:
                await self.adapter.client.chat_update(channel=dm, ts=ts, blocks=updated,
                                                      text=str(message.get("text") or ""))
            except SlackApiError as exc:
                log.info("could not mark the private answer shared: %s", exc.response.get("error"))
