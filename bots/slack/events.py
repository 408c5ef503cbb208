"""Slack events for core: which listener gets what, translated to neutral messages and feedback."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bots.slack import strings as text
from bots.slack.format import HUMAN_ACTION, RATE_ACTION
from bots.slack.outbound import SlackAdapter
from bots.slack.teams import TeamClient
from bots.slack.translate import (
    button_feedback,
    is_user_message,
    mentions_bot,
    reaction_feedback,
    to_inbound,
    workspace_of,
)
from core.models import Accepted, FeedbackOutcome, HumanOutcome, HumanRequest, ReplyTarget
from core.ports import Inbound
from core.supervisor import TaskSupervisor

__all__ = ["QUESTION_EVENTS", "SlackEvents"]

log = logging.getLogger(__name__)
QUESTION_EVENTS = frozenset({"app_mention", "message"})


class SlackEvents:
    """The bolt listeners: messages and mentions to core's router, reactions and buttons to feedback."""

    def __init__(self, relay: Inbound, adapter: SlackAdapter) -> None:
        self.relay = relay
        self.adapter = adapter
        self._handlers = TaskSupervisor("slack-events")
        self.on_question: Callable[[ReplyTarget, str], None] | None = None  # told of each accepted DM question

    def register(self, app: AsyncApp) -> None:
        """Attach the other listeners to the bolt app (the admin surfaces attach their own, detached the same way).

        Messages and mentions never reach bolt: `receive` takes them first (see there). Everything else is slower
        (feedback calls Uppzy) and runs detached: acked first, finished in the background.
        """
        app.event("reaction_added")(self.detached(self._on_reaction))
        app.action(re.compile(rf"^(uppzy_feedback_(good|bad)|{RATE_ACTION})$"))(self.detached(self._on_feedback_button))
        app.action(HUMAN_ACTION)(self.detached(self._on_human_button))

    @staticmethod
    def is_question(body: Mapping[str, Any]) -> bool:
        """True for an Events API body carrying a message or mention: the events `receive` takes before bolt."""
        event = body.get("event")
        return body.get("type") == "event_callback" and isinstance(event, Mapping) \
            and event.get("type") in QUESTION_EVENTS

    async def receive(self, body: dict[str, Any]) -> None:
        """Record a message or mention (one short store write, shared with others in a burst); the caller acks after.

        This runs before bolt's middleware and listener matching, which cost more than the write itself: under a
        burst every envelope would otherwise wait behind the parsing of all the others before its ack. The ack still
        never precedes the write, so a replica killed before it leaves the event unacked and Slack delivers it again.
        """
        event = body["event"]
        with self._handlers.track():
            team = await self._team(body)
            if team is None:
                return
            with self.adapter.teams.bound(team):
                bot_user_id = team.bot_user_id or self.adapter.bot_user_id
                if event["type"] == "app_mention":
                    await self._on_mention(body, event, bot_user_id)
                else:
                    await self._on_message(body, event, bot_user_id)

    async def _team(self, body: dict[str, Any]) -> TeamClient | None:
        """The clients and bot user of the event's team; None (the event dropped, one line) for a team without an
        installation. Single workspace: always the one bot."""
        teams = self.adapter.teams
        if not teams.many:
            return teams.current()
        _, extras = workspace_of(body)
        ids = dict(extras)
        team = await teams.lookup(ids.get("team_id"), ids.get("enterprise_id"))
        if team is None:
            log.info("Slack event=%s of team=%s dropped: the app is not installed there", body.get("event_id"),
                     ids.get("team_id"))
            return None
        if team.bot_user_id is None:  # an installation without it: the body names the bot it was sent to
            authorized = [a for a in body.get("authorizations") or [] if isinstance(a, dict) and a.get("is_bot")]
            if authorized and authorized[0].get("user_id"):
                team = TeamClient(team.team_id, team.web, team.cosmetic, str(authorized[0]["user_id"]), team.bot_id)
        return team

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for listeners still running: an acked event must reach the store before it closes."""
        await self._handlers.drain(timeout)

    def detached(self, handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Run a listener in the background, returning to bolt (which then answers Slack) as soon as it acked:
        the ack, and what it carries (a modal's errors), goes out at once; the rest is tracked for stop()."""

        @functools.wraps(handler)  # bolt injects arguments by the wrapped handler's parameter names
        async def run(**kwargs: Any) -> None:
            acked = asyncio.Event()
            ack = kwargs.get("ack")
            if ack is not None:
                async def ack_then_go_on(*args: Any, **ack_kwargs: Any) -> None:
                    try:
                        await ack(*args, **ack_kwargs)
                    finally:
                        acked.set()

                kwargs["ack"] = ack_then_go_on
            else:
                acked.set()  # an event: bolt acks it itself
            task = self._handlers.spawn(handler(**kwargs), name=f"slack-{handler.__name__}")
            waiter = asyncio.ensure_future(acked.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

        return run

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None) -> None:
        """A mention in a channel (or a thread): core's router decides, e.g. nothing in a channel switched off."""
        if not is_user_message(event, bot_user_id):
            if not event.get("bot_id") and event.get("user") != bot_user_id:
                log.warning("app_mention event=%s dropped: no usable user, channel, ts or text", body.get("event_id"))
            return
        await self.relay.handle_message(to_inbound(body, event, bot_user_id))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None) -> None:
        """Every person's message goes to core's router, except the copy of a mention (app_mention carries it)."""
        if not is_user_message(event, bot_user_id):
            return
        if event.get("channel_type") != "im" and mentions_bot(str(event.get("text") or ""), bot_user_id):
            return  # the app_mention copy of this message is the one we answer
        inbound = to_inbound(body, event, bot_user_id)
        if isinstance(await self.relay.handle_message(inbound), Accepted) and self.on_question and inbound.target.is_dm:
            self.on_question(inbound.target, inbound.text)

    # ---- feedback ---------------------------------------------------------------------------------------

    async def _on_reaction(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A reaction on one of our answers rates it; anything else is silently ignored."""
        if event.get("item_user") not in (None, self.adapter.teams.current().bot_user_id or self.adapter.bot_user_id):
            return  # not the bot's message, so not an answer: skip the store lookup
        feedback = reaction_feedback(body, event)
        if feedback is None:
            return
        result = await self.relay.handle_feedback(feedback)
        if result.outcome in (FeedbackOutcome.RECORDED, FeedbackOutcome.ALREADY_RATED) and result.message:
            thread = result.turn.target.thread_root if result.turn else None
            await self.adapter.ephemeral(event["item"]["channel"], feedback.user_id, result.message,
                                         thread_ts=thread)

    async def _on_feedback_button(self, ack: Any, body: dict[str, Any]) -> None:
        """👍/👎 (Slack's feedback buttons, or the hand-made ones of older answers): ack at once, rate, show the
        rating as received on the answer, and tell the rater privately what happened."""
        await ack()
        feedback = button_feedback(body)
        if feedback is None:
            return
        result = await self.relay.handle_feedback(feedback)
        if not result.message:
            return
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        message = body.get("message") or {}
        thread = message.get("thread_ts") or (result.turn.target.thread_root if result.turn else None)
        if not channel:
            return
        _, extras = workspace_of(body)
        ids = dict(extras)
        async with self.adapter.teams.using(ids.get("team_id"), ids.get("enterprise_id")):
            if result.outcome is FeedbackOutcome.RECORDED and result.rating:
                await self.adapter.show_rated(str(channel), feedback.message_id, message.get("blocks"),
                                              str(message.get("text") or ""), result.rating)
            await self.adapter.ephemeral(str(channel), feedback.user_id, result.message, thread_ts=thread)

    async def _on_human_button(self, ack: Any, body: dict[str, Any]) -> None:
        """"Talk to a human": ack at once, have core notify the escalation target, tell the clicker who it was."""
        await ack()
        container = body.get("container") or {}
        message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        if not message_ts or not channel or not user:
            return
        workspace, extras = workspace_of(body)
        result = await self.relay.request_human(HumanRequest(
            platform="slack", workspace_id=workspace, message_id=str(message_ts), user_id=str(user),
            channel_id=str(channel)))
        if result.outcome in (HumanOutcome.SENT, HumanOutcome.ALREADY_SENT) and result.escalation_target:
            line = text.human_notified(self.adapter.who(result.escalation_target))
        else:
            line = {HumanOutcome.NOT_CONFIGURED: text.HUMAN_NOBODY,
                    HumanOutcome.NOT_AN_ANSWER: text.HUMAN_NOT_AN_ANSWER}.get(result.outcome, text.HUMAN_FAILED)
        thread = (body.get("message") or {}).get("thread_ts") or (result.turn.target.thread_root
                                                                  if result.turn else None)
        ids = dict(extras)
        async with self.adapter.teams.using(ids.get("team_id"), ids.get("enterprise_id")):
            await self.adapter.ephemeral(str(channel), str(user), line, thread_ts=thread)
