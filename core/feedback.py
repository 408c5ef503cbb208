"""Feedback: a reaction or button on an answer becomes Uppzy feedback, once per answer, from whoever may rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cachetools import LRUCache

from core import messages
from core.errors import UppzyError
from core.metrics import Metrics
from core.models import (
    FeedbackEvent,
    FeedbackOutcome,
    FeedbackResult,
    HumanOutcome,
    HumanRequest,
    HumanResult,
    Rating,
    Turn,
)
from core.platforms import Platforms
from core.ports import Store
from core.supervisor import TaskSupervisor
from core.uppzy_pool import Connections
from core.workspace import WorkspaceSettingsService

__all__ = ["Feedback"]

log = logging.getLogger(__name__)


class Feedback:
    """The first rating of an answer wins (Uppzy keeps the first too); a claim stuck by a crash can be retaken."""

    def __init__(self, *, store: Store, connections: Connections, workspaces: WorkspaceSettingsService,
                 platforms: Platforms, metrics: Metrics, tasks: TaskSupervisor, takeover_after: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._connections = connections
        self._workspaces = workspaces
        self._platforms = platforms
        self._metrics = metrics
        self._tasks = tasks
        self._takeover_after = takeover_after
        self._clock = clock
        self._humans_asked: LRUCache[int, bool] = LRUCache(maxsize=10_000)  # answers escalated on request

    async def _turn_of(self, event: FeedbackEvent | HumanRequest) -> Turn | None:
        """The question whose answer the clicked or reacted-to message is."""
        turn = await self._store.turn_for_message(event.platform, event.message_id, event.channel_id)
        if turn is None and event.channel_id is not None:
            # An answer the adapter had to post elsewhere (the asker's DM, the parent channel) is stored under the
            # question's channel; its message id alone still names it.
            turn = await self._store.turn_for_message(event.platform, event.message_id)
        return turn

    async def handle(self, event: FeedbackEvent) -> FeedbackResult:
        """Rate the answer the event points at; the result tells the adapter what to say to the rater."""
        if event.removed:
            return FeedbackResult(FeedbackOutcome.IGNORED)  # Uppzy keeps the first rating; nothing to undo
        turn = await self._turn_of(event)
        if turn is None:
            return FeedbackResult(FeedbackOutcome.NOT_AN_ANSWER, message=messages.NOT_AN_ANSWER)
        ws = await self._workspaces.get(event.platform, turn.target.workspace_id)
        rating = event.rating or (ws.rating_for(event.emoji) if event.emoji else None)
        if rating not in ("good", "bad"):
            return FeedbackResult(FeedbackOutcome.IGNORED)
        if ws.feedback_raters == "asker" and event.user_id != turn.target.user_id:
            return FeedbackResult(FeedbackOutcome.NOT_ALLOWED, rating, messages.NOT_YOUR_ANSWER, turn)
        earlier = await self._claim(turn, rating, event)
        if earlier is not None:
            return FeedbackResult(FeedbackOutcome.ALREADY_RATED, earlier, messages.ALREADY_RATED, turn)
        try:
            # The key of the site the question was asked on (core.credentials.WorkspaceCredentials.for_site).
            uppzy = await self._connections.recorded(turn.target.platform, turn.target.workspace_id, turn.site_id)
            if uppzy is None:
                raise UppzyError("this workspace has no Uppzy connection now", endpoint="chat_feedback")
            receipt = await uppzy.feedback(turn.session_id, turn.request_id or "", rating, site_id=turn.site_id)
        except UppzyError as exc:
            await self._store.finish_feedback(turn.id, sent=False)
            log.warning("feedback for turn=%d not recorded: %s", turn.id, type(exc).__name__)
            return FeedbackResult(FeedbackOutcome.FAILED, rating, messages.FEEDBACK_FAILED, turn)
        await self._store.finish_feedback(turn.id, sent=True)
        self._metrics.feedback.labels(event.platform, turn.target.workspace_id, rating).inc()
        log.info("feedback turn=%d request_id=%s rating=%s source=%s", turn.id, turn.request_id, rating,
                 event.source)
        if not receipt.first:
            return FeedbackResult(FeedbackOutcome.ALREADY_RATED, rating, messages.ALREADY_RATED, turn)
        if rating == "bad" and ws.escalation_target:
            platform = self._platforms.get(event.platform)
            if platform is not None:
                self._tasks.spawn(platform.escalate(turn.target, ws.escalation_target, event.message_id),
                                  name="escalate")
        thanks = messages.THANKS_GOOD if rating == "good" else messages.THANKS_BAD
        return FeedbackResult(FeedbackOutcome.RECORDED, rating, thanks, turn)

    async def request_human(self, request: HumanRequest) -> HumanResult:
        """"Talk to a human": the workspace's escalation target gets the thread link (once per answer here)."""
        result = await self._human(request)
        self._metrics.human_requests.labels(request.platform, result.outcome.value).inc()
        log.info("human request on message=%s outcome=%s", request.message_id, result.outcome.value)
        return result

    async def _human(self, request: HumanRequest) -> HumanResult:
        turn = await self._turn_of(request)
        if turn is None:
            return HumanResult(HumanOutcome.NOT_AN_ANSWER)
        ws = await self._workspaces.get(request.platform, turn.target.workspace_id)
        if not ws.escalation_target:
            return HumanResult(HumanOutcome.NOT_CONFIGURED, None, turn)
        if turn.id in self._humans_asked:
            return HumanResult(HumanOutcome.ALREADY_SENT, ws.escalation_target, turn)
        platform = self._platforms.get(request.platform)
        if platform is None:
            return HumanResult(HumanOutcome.FAILED, ws.escalation_target, turn)
        self._humans_asked[turn.id] = True
        try:
            await platform.escalate(turn.target, ws.escalation_target, request.message_id,
                                    requested_by=request.user_id)
        except Exception as exc:  # a platform error becomes an outcome the asker is told
            self._humans_asked.pop(turn.id, None)
            log.warning("human request for turn=%d not passed on: %s", turn.id, type(exc).__name__)
            return HumanResult(HumanOutcome.FAILED, ws.escalation_target, turn)
        return HumanResult(HumanOutcome.SENT, ws.escalation_target, turn)

    async def _claim(self, turn: Turn, rating: Rating, event: FeedbackEvent) -> Rating | None:
        """Reserve the rating; None if ours, else the rating already there.

        A claim still `sending` after `takeover_after` seconds was left by a crash mid-call: it is taken over
        rather than refusing the user forever (compare-and-set, so two takers cannot both win).
        """
        now = self._clock()
        claim = await self._store.claim_feedback(turn.id, rating, event.user_id, event.source, now=now)
        if claim is None:
            return None
        if claim.state == "sending" and claim.at < now - self._takeover_after and \
                await self._store.take_over_feedback(turn.id, seen_at=claim.at, rating=rating,
                                                     user_id=event.user_id, source=event.source, now=now):
            return None
        return claim.rating
