"""Slack as a ChatPlatform: posts answers, notices and progress through one Web API client."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import strings as text
from bots.slack.assistant import LOADING_MESSAGES, AssistantStatus
from bots.slack.format import ANSWER_EVENT_TYPE, SlackMessage, answer_messages, rated_blocks, to_mrkdwn
from bots.slack.private import with_share
from bots.slack.progress import ProgressBudget
from bots.slack.teams import TeamClient, TeamClients
from bots.slack.translate import escalation_ids
from bots.slack.users import SlackUsers
from core.models import PRIVATE, Answer, Notice, NoticeKind, ReplyTarget

__all__ = ["WORKING_REACTION", "SlackAdapter"]

log = logging.getLogger(__name__)

WORKING_REACTION = "hourglass_flowing_sand"
_BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long",
                           "too_many_blocks", "invalid_arguments"})
_MARKDOWN_REFUSED_FOR = 3600.0  # a workspace that refused a markdown block gets section blocks for an hour
# The question's thread (or its parent message) is gone. Slack has been seen to say channel_not_found then too:
# posting in the channel itself tells the two apart.
_THREAD_GONE = frozenset({"thread_not_found", "cannot_reply_to_message", "message_not_found", "channel_not_found"})
# The channel is gone, archived or closed to the bot: only a DM reaches the asker.
_CHANNEL_GONE = frozenset({"is_archived", "not_in_channel", "channel_not_found", "restricted_action",
                           "restricted_action_read_only_channel"})


@dataclass(slots=True)
class _Place:
    """Where an answer goes: the question's thread, else the channel top-level, else a DM with the asker."""

    channel: str
    thread_ts: str | None
    kind: str = "thread"
    lead: str | None = None  # the first line when the answer moved, saying what it answers
    lead_posted: bool = False
    posted: dict[tuple[int, int | None], str] = field(default_factory=dict)  # (part, piece) -> ts already here


def _for_team(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run an adapter method with the clients of its target's team (each installed team has its own token)."""

    @functools.wraps(method)
    async def run(self: SlackAdapter, target: ReplyTarget, *args: Any, **kwargs: Any) -> Any:
        async with self.teams.using(target.workspace_id, target.extra("enterprise_id")):
            return await method(self, target, *args, **kwargs)

    return run


class SlackAdapter:
    """Posts answers, notices and progress to Slack through one Web API client."""

    platform = "slack"
    feedback_emoji = (("+1", "thumbsup"), ("-1", "thumbsdown"))  # Slack's names; skin tones are matched too

    def __init__(self, client: AsyncWebClient, *, cosmetic_client: AsyncWebClient | None = None,
                 cosmetic_timeout: float = 3.0, users: SlackUsers | None = None,
                 teams: TeamClients | None = None) -> None:
        self.teams = teams or TeamClients(TeamClient(None, client, cosmetic_client or client))
        self.users = users
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._cosmetic_timeout = cosmetic_timeout
        self._moved: LRUCache[str, _Place] = LRUCache(maxsize=10_000)  # delivery_key -> place it moved to
        self._progress = ProgressBudget()
        self.status = AssistantStatus()  # assistant-thread statuses kept alive while answers are pending
        self._no_markdown: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=_MARKDOWN_REFUSED_FOR)  # team ids

    @property
    def client(self) -> AsyncWebClient:
        """The Web API client of the team being served (single workspace: the one bot token's)."""
        return self.teams.current().web

    @property
    def cosmetic_client(self) -> AsyncWebClient:
        """Its twin that never waits out a 429 (progress, email lookups)."""
        return self.teams.current().cosmetic

    async def _cosmetic(self, method: str, ignore: tuple[str, ...] = (), **kwargs: Any) -> None:
        """A progress call that must never delay an answer: no 429 waits, bounded in time, errors only logged.

        Core asks for progress only once an answer is late, so a rate-limited reaction is skipped: late is useless.
        """
        try:
            async with asyncio.timeout(self._cosmetic_timeout):
                await getattr(self.cosmetic_client, method)(**kwargs)
        except SlackApiError as exc:
            if exc.response.get("error") not in ignore:
                log.debug("%s failed: %s", method, exc.response.get("error"))
        except (TimeoutError, OSError) as exc:
            log.debug("%s failed: %s", method, type(exc).__name__)

    @_for_team
    async def show_working(self, target: ReplyTarget) -> bool:
        """An hourglass on the question; in an assistant thread (any thread of the app's DM, the Messages tab) also
        the status with loading messages, kept alive until clear_working (core calls this only for an answer not
        there within Tuning.working_after). False, showing nothing, beyond the workspace's progress budget: Slack
        would refuse those calls (429) anyway, and every answer still comes."""
        if not self._progress.take(target.workspace_id):
            return False
        await self._cosmetic("reactions_add", ("already_reacted",), channel=target.message_channel_id,
                             timestamp=target.message_id, name=WORKING_REACTION)
        if target.is_dm or target.extra("assistant"):
            await self.status.show(target, self._status_sender(target))
        return True

    @_for_team
    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the hourglass (and assistant status, with its refresher) away again."""
        await self._cosmetic("reactions_remove", ("no_reaction",), channel=target.message_channel_id,
                             timestamp=target.message_id, name=WORKING_REACTION)
        if target.is_dm or target.extra("assistant"):
            await self.status.clear(target, self._status_sender(target))

    def _status_sender(self, target: ReplyTarget) -> Callable[[str], Awaitable[None]]:
        """setStatus for one assistant thread, on its team's client ('' clears; anything else shows the status)."""

        async def send(status: str) -> None:
            async with self.teams.using(target.workspace_id, target.extra("enterprise_id")):
                loading = {"loading_messages": list(LOADING_MESSAGES)} if status else {}
                await self._cosmetic("assistant_threads_setStatus", channel_id=target.channel_id,
                                     thread_ts=target.thread_root, status=text.THINKING_STATUS if status else "",
                                     **loading)

        return send

    @_for_team
    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Post the answer in the thread (split if long); after a failed attempt, reuse parts already posted.

        A thread that is gone moves the answer top-level into the channel; a channel that is gone, archived or
        closed to the bot moves it to a DM with the asker. The place an answer moved to is kept, so a retry
        posts there (and skips the parts already there) instead of trying the thread again.
        """
        messages = answer_messages(answer.text, delivery_key=answer.delivery_key,
                                   low_confidence_note=answer.low_confidence_note)
        private = target.extra(PRIVATE)
        if private:  # only the asker sees it (their DM): they may share it in the channel they asked in
            messages = [with_share(message, private) for message in messages]
        place = self._moved.get(answer.delivery_key)
        if place is None:
            place = _Place(target.channel_id, target.thread_root)
            if recovering:
                place.posted = await self._posted_parts(target, answer.delivery_key)
        while True:
            try:
                if place.lead and not place.lead_posted:
                    await self._send(place, text=place.lead)
                    place.lead_posted = True
                return [await self._post_part(place, message, target.workspace_id) for message in messages]
            except SlackApiError as exc:
                place = await self._move(target, place, exc)
                self._moved[answer.delivery_key] = place

    async def _move(self, target: ReplyTarget, place: _Place, exc: SlackApiError) -> _Place:
        """The next place to try after `place` was refused (each tried at most once), or raise `exc`."""
        error = exc.response.get("error")
        if place.kind == "thread" and error in _THREAD_GONE:
            log.warning("cannot reply in thread %s (%s); answering in the channel", place.thread_ts, error)
            lead = None if target.is_dm else text.ANSWER_IN_CHANNEL.format(user=target.user_id)
            return _Place(target.channel_id, None, kind="channel", lead=lead)
        if place.kind != "dm" and not target.is_dm and error in _CHANNEL_GONE | _THREAD_GONE:
            log.warning("cannot post in channel %s (%s); answering the asker by DM", place.channel, error)
            return _Place(target.user_id, None, kind="dm", lead=text.answer_in_dm(await self._permalink(target)))
        raise exc

    async def _permalink(self, target: ReplyTarget) -> str | None:
        try:
            response = await self.client.chat_getPermalink(channel=target.message_channel_id,
                                                           message_ts=target.message_id)
        except SlackApiError:
            return None
        return str(response.get("permalink") or "") or None

    async def _post_part(self, place: _Place, message: SlackMessage, team: str) -> str:
        """One part: as a markdown block; else (Slack refused it) as section blocks; else as plain-text pieces.
        Parts already there are kept. A team that refused the markdown block gets sections for a while."""
        part = int(message.metadata["event_payload"]["part"])
        if (part, None) in place.posted:
            return place.posted[(part, None)]
        if not any(p == part for p, _ in place.posted):
            tries = [message.sections] if team in self._no_markdown else [message.blocks, message.sections]
            for blocks in (b for b in tries if b):
                try:
                    return await self._send(place, text=message.text, blocks=blocks, metadata=message.metadata,
                                            key=(part, None))
                except SlackApiError as exc:
                    if exc.response.get("error") not in _BLOCK_ERRORS:
                        raise
                    kind = "markdown" if blocks is message.blocks else "section"
                    log.warning("Slack refused the answer's %s blocks (%s)", kind, exc.response.get("error"))
                    if blocks is message.blocks:
                        self._no_markdown[team] = True
        ids = []
        for piece, body in enumerate(message.plain):
            payload = {**message.metadata["event_payload"], "piece": piece, "pieces": len(message.plain)}
            ids.append(place.posted.get((part, piece)) or await self._send(
                place, text=body, metadata={**message.metadata, "event_payload": payload}, key=(part, piece)))
        return ids[0]

    async def _send(self, place: _Place, *, text: str, blocks: list[dict[str, Any]] | None = None,
                    metadata: dict[str, Any] | None = None, key: tuple[int, int | None] | None = None) -> str:
        kwargs: dict[str, Any] = {"channel": place.channel, "text": text, "unfurl_links": False,
                                  "unfurl_media": False}
        if place.thread_ts:
            kwargs["thread_ts"] = place.thread_ts
        if blocks:
            kwargs["blocks"] = blocks
        if metadata:
            kwargs["metadata"] = metadata
        ts = str((await self.client.chat_postMessage(**kwargs))["ts"])
        if key is not None:
            place.posted[key] = ts
        return ts

    async def _posted_parts(self, target: ReplyTarget, delivery_key: str) -> dict[tuple[int, int | None], str]:
        """Parts (and plain-text pieces) of this answer already in the thread, found by their message metadata."""
        parts: dict[tuple[int, int | None], str] = {}
        bot_id = self.teams.current().bot_id or self.bot_id
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
                        and (message.get("bot_id") == bot_id or bot_id is None):
                    piece = payload.get("piece")
                    key = (int(payload.get("part", 0)), None if piece is None else int(piece))
                    parts.setdefault(key, str(message["ts"]))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        if parts:
            log.info("found %d part(s) of %s already posted; not posting them again", len(parts), delivery_key)
        return parts

    @_for_team
    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """A short line in the conversation's thread; "text only" is shown to the sender alone.

        Like answers, a notice whose thread is gone goes to the channel, and one whose channel is gone to a DM.
        """
        if notice.kind is NoticeKind.TEXT_ONLY:
            await self.ephemeral(target.message_channel_id, target.user_id, text.TEXT_ONLY,
                                 thread_ts=target.thread_id)
            return
        place = _Place(target.channel_id, target.thread_root)
        while True:
            body = to_mrkdwn(notice.text)
            try:
                await self._send(place, text=f"{place.lead}\n{body}" if place.lead else body)
                return
            except SlackApiError as exc:
                place = await self._move(target, place, exc)

    @_for_team
    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str, *,
                       requested_by: str | None = None) -> None:
        """Ping the configured channel, user group or person with a link to the answer: rated 👎, or `requested_by`
        asked to talk to a human about it.

        A channel id gets the message there (pinging a user group too if one is named); a user group alone
        is pinged in the conversation's own thread (not in DMs, where it cannot see it); a user gets a DM.
        """
        ids = escalation_ids(escalation_target)
        link = await self.client.chat_getPermalink(channel=target.channel_id, message_ts=answer_message_id)
        ping = f"<!subteam^{ids['group']}> " if "group" in ids else f"<@{ids['user']}> " if "user" in ids else ""
        body = text.ESCALATION.format(ping=ping, link=link["permalink"]) if requested_by is None \
            else text.human_escalation(ping, requested_by, str(link["permalink"]))
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

    async def user_email(self, workspace_id: str, user_id: str) -> str | None:
        """The asker's email from users.info (needs users:read.email), for workspaces that send it to Uppzy."""
        if self.users is None:
            return None
        if self.teams.current().team_id == workspace_id:  # already bound (the question's path): an org-wide
            return await self.users.email(user_id)  # install is found by its enterprise there, not by the team alone
        async with self.teams.using(workspace_id):
            return await self.users.email(user_id)

    async def show_rated(self, channel: str, ts: str, blocks: Any, fallback: str, rating: str) -> None:
        """Update an answer so its feedback buttons read "rating received"; failures are logged, never raised."""
        updated = rated_blocks(blocks, rating) if isinstance(blocks, list) else None
        if updated is None:
            return
        await _best_effort(self.client.chat_update(channel=channel, ts=ts, blocks=updated, text=fallback),
                           "could not show the rating on the answer")

    @staticmethod
    def who(escalation_target: str) -> str:
        """The escalation target as the asker reads it (mentions render as names; only they see the line)."""
        ids = escalation_ids(escalation_target)
        named = [f"<#{ids['channel']}>" if "channel" in ids else "", f"<!subteam^{ids['group']}>"
                 if "group" in ids else "", f"<@{ids['user']}>" if "user" in ids else ""]
        shown = [n for n in named if n]
        if not shown:
            return "the people who help here"
        return " in ".join(reversed(shown[:2])) if "channel" in ids and len(shown) > 1 else shown[0]

    async def ephemeral(self, channel: str, user: str, message: str, *, thread_ts: str | None = None) -> None:
        """A line only `user` sees (feedback thanks, 'text only'); failures are logged, never raised."""
        await _best_effort(self.client.chat_postEphemeral(channel=channel, user=user, text=message,
                                                          thread_ts=thread_ts), "ephemeral reply failed")


async def _best_effort(call: Awaitable[Any], what: str) -> None:
    """A Web API call whose failure only deserves a log line (`what`: the line, before Slack's error)."""
    try:
        await call
    except SlackApiError as exc:
        log.info("%s: %s", what, exc.response.get("error"))
    except OSError as exc:
        log.info("%s: %s", what, type(exc).__name__)
