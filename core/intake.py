"""Intake: take a message, decide it is a question, record it durably, and keep each session's questions in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from cachetools import LRUCache

from core import messages
from core.health import RateLimitedLog
from core.metrics import Metrics
from core.models import Accepted, Ignored, InboundMessage, Notice, NoticeKind, Rejected, Turn, TurnState
from core.platforms import Platforms
from core.ports import Store
from core.routing import Route, Router
from core.supervisor import TaskSupervisor
from core.text import clean_text

__all__ = ["Intake"]

log = logging.getLogger(__name__)

Submit = Callable[[Turn], Awaitable[None]]


class Intake:
    """handle_message records a question; advance() hands a session's oldest waiting question to submission."""

    def __init__(self, *, store: Store, router: Router, platforms: Platforms, submit: Submit, metrics: Metrics,
                 tasks: TaskSupervisor, max_chars: int, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._router = router
        self._platforms = platforms
        self._submit = submit
        self._metrics = metrics
        self._tasks = tasks
        self._max_chars = max_chars
        self._clock = clock
        self._refused: LRUCache[str, None] = LRUCache(maxsize=10_000)  # rejected events: one notice per event
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # session -> (lock, [holders and waiters])
        self._unrecorded = RateLimitedLog(log, logging.ERROR)  # a full disk must not log one line per message
        self.stopping = False

    async def handle_message(self, msg: InboundMessage) -> Accepted | Rejected | Ignored:
        """Route, validate and record one message; returns at once (the answer follows in the background)."""
        route = await self._router.route(msg)
        if isinstance(route, str):
            log.debug("message ignored platform=%s event=%s: %s", msg.target.platform, msg.event_key, route)
            return Ignored(route)
        if not route.connected:  # nothing reaches Uppzy: the workspace has no key and the deployment none either
            return await self._refuse(msg, NoticeKind.NOT_CONNECTED, messages.NOT_CONNECTED)
        text = clean_text(msg.text).strip()
        if msg.attachments_only and not text:
            return await self._refuse(msg, NoticeKind.TEXT_ONLY, messages.TEXT_ONLY)
        if not text:
            return await self._refuse(msg, NoticeKind.EMPTY, messages.EMPTY_MESSAGE)
        if len(text) > self._max_chars:
            return await self._refuse(msg, NoticeKind.TOO_LONG, messages.too_long(self._max_chars))
        return await self._record(replace(msg, text=text), route)

    async def _refuse(self, msg: InboundMessage, kind: NoticeKind, text: str) -> Rejected:
        """One clear notice per refused event: a redelivery of the same event is not answered twice."""
        dedupe = f"{msg.target.platform}:{msg.event_key}"
        if dedupe in self._refused:
            return Rejected(kind.value, duplicate=True)
        self._refused[dedupe] = None
        # Posted after the event is acked: a slow post must not hold the ack until Slack delivers the event again.
        self._tasks.spawn(self._platforms.post_notice(msg.target, Notice(kind, text)), name="refusal-notice")
        return Rejected(kind.value)

    async def _record(self, msg: InboundMessage, route: Route) -> Accepted | Rejected:
        target, ws = msg.target, route.settings
        if f"{target.platform}:{msg.event_key}" in self._refused:  # already told to send it again: not now
            return Rejected(NoticeKind.NOT_RECORDED.value, duplicate=True)
        email = (msg.email or await self._platforms.user_email(target)) if ws.send_email else None
        try:
            turn = await self._store.record_question(
                replace(msg, email=email), key=route.key, site_id=ws.site_id, idle_timeout=ws.idle_timeout,
                now=self._clock(),
            )
        except Exception as exc:  # whatever the cause, the asker must not be left in silence
            # Socket Mode and Discord do not redeliver an acked event: say so once instead of dropping it.
            self._unrecorded("a question could not be recorded (%s: %s); the asker was asked to send it again",
                             type(exc).__name__, exc)
            return await self._refuse(msg, NoticeKind.NOT_RECORDED, messages.NOT_RECORDED)
        if turn is None:
            log.info("duplicate event dropped platform=%s event=%s", target.platform, msg.event_key)
            self._metrics.deduplicated.labels(target.platform).inc()
            return Rejected("duplicate", duplicate=True)
        self._metrics.questions.labels(target.platform, target.workspace_id).inc()
        if turn.opened_session:
            self._metrics.sessions_opened.labels(target.platform, target.workspace_id).inc()
        log.info("question turn=%d session=%s platform=%s workspace=%s chars=%d", turn.id, turn.session_id,
                 target.platform, target.workspace_id, len(msg.text))
        # Progress is cosmetic: a slow or rate-limited reaction must never delay the question itself.
        self._tasks.spawn(self._platforms.show_working(turn.target), name="show-working")
        # The first question of a new session is its head: no need to read the store to find it.
        self._tasks.spawn(self.advance(turn.session_id, turn if turn.opened_session else None), name="advance")
        return Accepted(turn.id, turn.session_id)

    async def advance(self, session_id: str, head: Turn | None = None) -> None:
        """Submit the session's oldest waiting question unless an earlier one is still in flight (`head`: that
        question, when the caller knows it)."""
        if self.stopping:
            return  # the question stays queued in the store and the next start submits it
        lock, users = self._locks.setdefault(session_id, (asyncio.Lock(), [0]))
        users[0] += 1  # the lock is forgotten only when nobody holds or waits for it
        try:
            async with lock:
                if head is None:
                    head = await self._store.head_turn(session_id)
                if head is not None and head.state is TurnState.QUEUED and not self.stopping:
                    await self._submit(head)
        finally:
            users[0] -= 1
            if users[0] == 0 and self._locks.get(session_id, (None,))[0] is lock:
                del self._locks[session_id]

    def advance_later(self, session_id: str, delay: float) -> None:
        """Look at a session again after `delay` seconds (a submit Uppzy did not take yet)."""

        async def later() -> None:
            await asyncio.sleep(delay)
            await self.advance(session_id)

        self._tasks.spawn(later(), name="advance-later")

    def finished(self, session_id: str) -> None:
        """A question ended (answered or failed): its session's next question may go."""
        self._tasks.spawn(self.advance(session_id), name="advance")
