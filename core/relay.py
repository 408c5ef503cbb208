"""The relay: record each question durably, submit it in order per session, deliver each answer exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from core import messages
from core.config import Settings
from core.errors import (
    UppzyAuthError,
    UppzyConflict,
    UppzyError,
    UppzyForbidden,
    UppzyNotFound,
    UppzyRateLimited,
    UppzyRejected,
    UppzyTimeout,
    UppzyUnavailable,
)
from core.latency import LatencyModel
from core.metrics import Metrics
from core.models import (
    Accepted,
    Answer,
    FeedbackEvent,
    FeedbackOutcome,
    FeedbackResult,
    InboundMessage,
    Notice,
    NoticeKind,
    Rejected,
    ReplyTarget,
    Turn,
    TurnState,
)
from core.poller import PendingRequest, PollScheduler
from core.ports import ChatPlatform
from core.reaper import IdleReaper
from core.sessions import session_key
from core.store import SessionRow, Store
from core.text import clean_text
from core.uppzy import Confidence, RequestStatus, SessionInfo, UppzyClient
from core.workspace import GENERIC_EMOJI, WorkspaceSettingsService

__all__ = ["EndResult", "Relay", "StatusReport"]

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
RECOVERY_GRACE = 30.0
DELIVERY_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 30.0)


class EndResult(StrEnum):
    """What `/end` did."""

    ENDED = "ended"
    NO_SESSION = "no_session"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What `/uppzy status` shows an admin."""

    settings: list[tuple[str, str, str]]
    uppzy_ok: bool
    uppzy_detail: str
    pending: int
    open_sessions: int


class Relay:
    """Platform-neutral core; adapters call handle_message / handle_feedback and implement ChatPlatform."""

    def __init__(
        self,
        *,
        store: Store,
        uppzy: UppzyClient,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.2,
        submit_concurrency: int = 32,
        max_chars: int = MAX_QUESTION_CHARS,
        delivery_backoff: tuple[float, ...] = DELIVERY_BACKOFF,
        latency: LatencyModel | None = None,
        first_poll_floor: float = 0.25,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        if uppzy.observer is None:
            uppzy.observer = self.metrics.observe_call
        self.uppzy = uppzy
        self.settings = settings
        self.clock = clock
        self.max_chars = max_chars
        self.answer_timeout = settings.uppzy_answer_timeout
        self.workspaces = WorkspaceSettingsService(store, settings, clock=clock)
        self.platforms: dict[str, ChatPlatform] = {}
        self.poller = PollScheduler(uppzy=uppzy, on_done=self._on_status, on_expired=self._on_expired,
                                    rate=settings.uppzy_poll_rate, interval=poll_interval, clock=clock,
                                    latency=latency, first_poll_floor=first_poll_floor)
        self.reaper = IdleReaper(store=store, uppzy=uppzy, notify=self._notify_session,
                                 default_idle=settings.session_idle_timeout, close_rate=settings.session_close_rate,
                                 clock=clock, on_closed=self._session_closed)
        self.metrics.pending.set_function(lambda: len(self.poller))
        self._delivery_backoff = delivery_backoff
        self._submit_slots = asyncio.Semaphore(submit_concurrency)
        self._session_locks: dict[str, list[Any]] = {}  # session -> [lock, holders and waiters]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._submitting = 0  # submits in flight: a graceful stop lets them finish so none is left half-done
        self._submits_done = asyncio.Event()
        self._submits_done.set()
        self._loops: list[asyncio.Task[None]] = []
        self._rejected_keys: dict[str, None] = {}

    def register(self, platform: ChatPlatform) -> None:
        """Attach an adapter; its `platform` name routes answers back to it (late joiners get their backlog)."""
        self.platforms[platform.platform] = platform
        good, bad = getattr(platform, "feedback_emoji", GENERIC_EMOJI)
        self.workspaces.set_platform_emoji(platform.platform, good, bad)
        if self._loops:
            self._spawn(self._deliver_backlog(platform.platform))

    async def _deliver_backlog(self, platform: str) -> None:
        """Answers that waited for this platform to connect are posted now."""
        for turn in await self.store.active_turns():
            if turn.target.platform == platform and turn.state in (TurnState.READY, TurnState.DELIVERING):
                self._spawn(self._deliver(turn.id, recovering=turn.state is TurnState.DELIVERING))

    # ---- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, reaper: bool = True) -> None:
        """Resume everything the store says is unfinished, then start the poller (and idle reaper)."""
        self._stop.clear()
        await self._recover()
        self._loops.append(asyncio.create_task(self.poller.run(self._stop), name="uppzy-poller"))
        if reaper:
            self._loops.append(asyncio.create_task(self.reaper.run(self._stop), name="idle-reaper"))

    async def stop(self, drain: float = 0.0) -> None:
        """Stop loops and in-flight work; every unfinished question stays in the store for the next start.

        With `drain`, submits already on their way to Uppzy get that many seconds to finish first: one cut off
        mid-call may or may not have reached Uppzy, and the next start can only apologise for it. No new submit
        starts once stopping; queued questions wait in the store.
        """
        self._stop.set()
        if drain > 0 and self._submitting:
            try:
                async with asyncio.timeout(drain):
                    await self._submits_done.wait()
            except TimeoutError:
                log.warning("%d submit(s) still in flight at shutdown; they will be reported lost", self._submitting)
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        await self.poller.aclose()
        self._loops.clear()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no question is in flight (tests and graceful shutdown)."""
        async with asyncio.timeout(timeout):
            while True:
                if not self._tasks and len(self.poller) == 0:
                    counts = await self.store.counts()
                    if counts["pending"] == 0:
                        return
                await asyncio.sleep(0.02)

    async def _recover(self) -> None:
        turns = await self.store.active_turns()
        if turns:
            log.info("resuming %d unfinished questions", len(turns))
        heads: set[str] = set()
        for turn in turns:
            if turn.state is TurnState.QUEUED:
                heads.add(turn.session_id)
            elif turn.state is TurnState.SUBMITTING:
                # Uppzy may or may not have taken it; resubmitting could ask twice, so say so instead.
                self._spawn(self._fail(turn, NoticeKind.LOST, messages.LOST_IN_RESTART, kind="lost"))
            elif turn.state is TurnState.PENDING and turn.request_id and turn.submitted_at is not None:
                # After downtime the answer may be waiting at Uppzy: always look at least once before giving up.
                deadline = max(turn.submitted_at + self.answer_timeout, self.clock() + RECOVERY_GRACE)
                self.poller.add(turn.id, turn.request_id, turn.site_id, submitted_at=turn.submitted_at,
                                deadline=deadline)
            elif turn.state in (TurnState.READY, TurnState.DELIVERING):
                self._spawn(self._deliver(turn.id, recovering=turn.state is TurnState.DELIVERING))
            elif turn.state is TurnState.NOTIFYING:
                self._spawn(self._notify_failure(turn))
        for session_id in heads:
            self._spawn(self._advance(session_id))

    # ---- inbound ----------------------------------------------------------------------------------

    async def handle_message(self, msg: InboundMessage) -> Accepted | Rejected:
        """Record a question (de-duplicated by event key) and start work on it; returns at once."""
        target = msg.target
        text = clean_text(msg.text).strip()
        rejection: tuple[NoticeKind, str] | None = None
        if not text:
            rejection = (NoticeKind.EMPTY, messages.EMPTY_MESSAGE)
        elif len(text) > self.max_chars:
            rejection = (NoticeKind.TOO_LONG, messages.too_long(self.max_chars))
        if rejection is not None:
            dedupe = f"{target.platform}:{msg.event_key}"
            if dedupe in self._rejected_keys:
                return Rejected(rejection[0].value, duplicate=True)
            self._rejected_keys[dedupe] = None
            if len(self._rejected_keys) > 10_000:
                self._rejected_keys.pop(next(iter(self._rejected_keys)))
            await self._post_notice(target, Notice(*rejection))
            return Rejected(rejection[0].value)
        ws = await self.workspaces.get(target.platform, target.workspace_id)
        key = session_key(target, ws.session_strategy)
        turn = await self.store.record_question(
            replace(msg, text=text, email=msg.email if ws.send_email else None),
            key=key, site_id=ws.site_id, idle_timeout=ws.idle_timeout, now=self.clock(),
        )
        if turn is None:
            log.info("duplicate event dropped platform=%s event=%s", target.platform, msg.event_key)
            self.metrics.deduplicated.labels(target.platform).inc()
            return Rejected("duplicate", duplicate=True)
        self.metrics.questions.labels(target.platform, target.workspace_id).inc()
        if turn.opened_session:
            self.metrics.sessions_opened.labels(target.platform, target.workspace_id).inc()
        log.info("question turn=%d session=%s platform=%s workspace=%s chars=%d", turn.id, turn.session_id,
                 target.platform, target.workspace_id, len(text))
        self._spawn(self._begin(turn))
        return Accepted(turn.id, turn.session_id)

    async def _begin(self, turn: Turn) -> None:
        # Progress is cosmetic: a slow or rate-limited reaction must never delay the question itself.
        self._spawn(self._call_platform(turn.target, "show_working"))
        await self._advance(turn.session_id)

    async def _advance(self, session_id: str) -> None:
        """Submit the session's oldest waiting question unless an earlier one is still in flight."""
        if self._stop.is_set():
            return  # stopping: the question stays queued in the store and the next start submits it
        entry = self._session_locks.setdefault(session_id, [asyncio.Lock(), 0])
        entry[1] += 1  # holders and waiters: the lock is forgotten only when nobody needs it any more
        try:
            async with entry[0]:
                head = await self.store.head_turn(session_id)
                if head is not None and head.state is TurnState.QUEUED and not self._stop.is_set():
                    self._submitting += 1
                    self._submits_done.clear()
                    try:
                        await self._submit(head)
                    finally:
                        self._submitting -= 1
                        if not self._submitting:
                            self._submits_done.set()
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._session_locks.get(session_id) is entry:
                del self._session_locks[session_id]

    async def _submit(self, turn: Turn) -> None:
        async with self._submit_slots:
            # Claimed only once a slot is free (a stop while waiting leaves it queued, not "lost"), and only
            # if still queued: the compare-and-set makes a second submit of the same question impossible.
            if not await self.store.claim_submit(turn.id):
                return
            await self._submit_claimed(turn)

    async def _submit_claimed(self, turn: Turn) -> None:
        for attempt in range(2):
            try:
                sub = await self.uppzy.submit(turn.session_id, turn.text or "", email=turn.email,
                                              site_id=turn.site_id)
            except UppzyConflict:
                if attempt:
                    break  # a fresh id was refused too: not a closed-session problem
                # Uppzy closed this session (idle on their side, or our DB was restored): move on to a new id.
                turn = replace(turn, session_id=await self.store.rebind_session(turn.id, now=self.clock()))
                log.info("session closed upstream; turn=%d moves to session=%s", turn.id, turn.session_id)
                continue
            except (UppzyTimeout, UppzyRateLimited, UppzyUnavailable) as exc:
                if isinstance(exc, UppzyTimeout) or exc.maybe_processed:
                    # Uppzy may have taken it: asking again could create a second turn, so say sorry instead.
                    log.warning("submit turn=%d outcome unknown (%s); not resubmitting", turn.id,
                                type(exc).__name__)
                    self._spawn(self._fail(turn, NoticeKind.FAILED, None, kind="uncertain"))
                    return
                await self._retry_submit_later(turn, exc)
                return
            except UppzyError as exc:
                self._spawn(self._fail_rejected(turn, exc))
                return
            now = self.clock()
            await self.store.mark_submitted(turn.id, sub.request_id, now=now)
            log.info("submitted turn=%d request_id=%s session=%s", turn.id, sub.request_id, turn.session_id)
            self.poller.add(turn.id, sub.request_id, turn.site_id, submitted_at=now,
                            deadline=now + self.answer_timeout)
            return
        self._spawn(self._fail(turn, NoticeKind.FAILED, None, kind="conflict"))

    async def _retry_submit_later(self, turn: Turn, exc: UppzyError) -> None:
        """Uppzy did not take it (429/5xx after retries): try again later, within the answer budget."""
        waited = self.clock() - turn.created_at
        if waited >= self.answer_timeout:
            self._spawn(self._fail(turn, NoticeKind.FAILED, None, kind="unavailable"))
            return
        await self.store.set_state(turn.id, TurnState.QUEUED)
        delay = getattr(exc, "retry_after", None) or min(20.0, 2.0 + waited / 4)
        log.warning("submit turn=%d deferred %.1fs (%s)", turn.id, delay, type(exc).__name__)

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._advance(turn.session_id)

        self._spawn(later())

    async def _fail_rejected(self, turn: Turn, exc: UppzyError) -> None:
        if isinstance(exc, UppzyAuthError | UppzyForbidden | UppzyNotFound):
            log.error("Uppzy refused turn=%d (%s): check UPPZY_API_KEY, plan and site id", turn.id,
                      type(exc).__name__)
            await self._fail(turn, NoticeKind.UNAVAILABLE, messages.UNAVAILABLE, kind="rejected")
        else:
            log.error("Uppzy rejected turn=%d as %s", turn.id, type(exc).__name__)
            await self._fail(turn, NoticeKind.FAILED, None, kind="rejected")

    # ---- answers ----------------------------------------------------------------------------------

    async def _on_status(self, item: PendingRequest, status: RequestStatus) -> None:
        turn = await self.store.get_turn(item.turn_id)
        if turn is None or turn.state is not TurnState.PENDING:
            return
        if status.status == "completed":
            await self.store.store_answer(turn.id, status.answer or "", status.confidence.score,
                                          status.confidence.level, now=self.clock())
            self._spawn(self._deliver(turn.id))  # posting may be slow: never hold up the poller for it
        else:
            log.warning("Uppzy could not answer turn=%d request_id=%s", turn.id, item.request_id)
            self._spawn(self._fail(turn, NoticeKind.FAILED, None, kind="failed"))

    async def _on_expired(self, item: PendingRequest, why: str) -> None:
        turn = await self.store.get_turn(item.turn_id)
        if turn is None or not turn.state.active:
            return
        if why == "timeout":
            log.warning("no answer within %.0fs turn=%d request_id=%s", self.answer_timeout, turn.id,
                        item.request_id)
            self._spawn(self._fail(turn, NoticeKind.TIMEOUT, messages.TIMED_OUT, kind="timeout"))
        else:
            self._spawn(self._fail(turn, NoticeKind.FAILED, None, kind=why))

    async def _deliver(self, turn_id: int, *, recovering: bool = False) -> None:
        turn = await self.store.get_turn(turn_id)
        if turn is None or turn.state not in (TurnState.READY, TurnState.DELIVERING):
            return
        platform = self.platforms.get(turn.target.platform)
        if platform is None:
            log.warning("turn=%d waits for its platform %s to be connected", turn.id, turn.target.platform)
            return
        ws = await self.workspaces.get(turn.target.platform, turn.target.workspace_id)
        confidence = Confidence(turn.confidence_score, turn.confidence_level)
        answer = Answer(
            text=turn.answer or ws.fallback_text, request_id=turn.request_id or "",
            confidence_score=turn.confidence_score, confidence_level=turn.confidence_level,
            low_confidence_note=ws.low_confidence_note if confidence.is_low else None,
            delivery_key=f"uppzy-turn-{turn.id}",
        )
        await self.store.set_state(turn.id, TurnState.DELIVERING)
        for attempt, pause in enumerate((*self._delivery_backoff, None)):
            try:
                ids = await platform.post_answer(turn.target, answer, recovering=recovering or attempt > 0)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("posting answer turn=%d attempt=%d failed: %s", turn.id, attempt + 1,
                            type(exc).__name__)
                if pause is None:
                    await self.store.mark_failed(turn.id, "delivery", now=self.clock())
                    self.metrics.failed.labels(turn.target.platform, turn.target.workspace_id, "delivery").inc()
                    await self._after(turn)
                    return
                await asyncio.sleep(pause)
        now = self.clock()
        await self.store.mark_answered(turn.id, ids, now=now)
        self.metrics.delivered.labels(turn.target.platform, turn.target.workspace_id).inc()
        self.metrics.answer_seconds.labels(turn.target.platform).observe(max(0.0, now - turn.created_at))
        log.info("answered turn=%d request_id=%s messages=%d", turn.id, turn.request_id, len(ids))
        await self._after(turn)

    async def _fail(self, turn: Turn, notice_kind: NoticeKind, text: str | None, *, kind: str | None = None) -> None:
        """End a question with one clear, friendly line in its thread (`kind` labels it in logs and the store)."""
        label = kind or notice_kind.value
        if text is None:
            text = (await self.workspaces.get(turn.target.platform, turn.target.workspace_id)).fallback_text
        # Recorded before posting: a crash now resumes the notice instead of losing it (or adding a second).
        await self.store.begin_failure(turn.id, label, notice_kind.value, text)
        await self._notify_failure(replace(turn, error_kind=label, notice_kind=notice_kind.value, notice=text))

    async def _notify_failure(self, turn: Turn) -> None:
        """Post the stored failure notice, then close the question."""
        label = turn.error_kind or "failed"
        notice = Notice(NoticeKind(turn.notice_kind or NoticeKind.FAILED.value), turn.notice or "")
        if not await self._post_notice(turn.target, notice, backoff=self._delivery_backoff):
            log.error("could not post the failure notice for turn=%d; giving up", turn.id)
        await self.store.mark_failed(turn.id, label, now=self.clock())
        self.metrics.failed.labels(turn.target.platform, turn.target.workspace_id, label).inc()
        if label == "timeout":
            self.metrics.answer_timeouts.labels(turn.target.platform, turn.target.workspace_id).inc()
        log.info("question failed turn=%d reason=%s", turn.id, label)
        await self._after(turn)

    async def _after(self, turn: Turn) -> None:
        await self._call_platform(turn.target, "clear_working")
        self._spawn(self._advance(turn.session_id))

    async def _post_notice(self, target: ReplyTarget, notice: Notice,
                           backoff: tuple[float, ...] = (1.0, 3.0)) -> bool:
        platform = self.platforms.get(target.platform)
        if platform is None:
            return False
        for attempt, pause in enumerate((*backoff, None)):
            try:
                await platform.post_notice(target, notice)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("posting notice %s attempt=%d failed: %s", notice.kind.value, attempt + 1,
                            type(exc).__name__)
                if pause is None:
                    return False
                await asyncio.sleep(pause)
        return False

    async def _call_platform(self, target: ReplyTarget, method: str) -> None:
        platform = self.platforms.get(target.platform)
        if platform is None:
            return
        try:
            await getattr(platform, method)(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # cosmetic: never let a progress indicator break an answer
            log.debug("%s failed on %s: %s", method, target.platform, type(exc).__name__)

    def _session_closed(self, row: SessionRow, reason: str) -> None:
        self.metrics.sessions_closed.labels(row.platform, reason).inc()

    async def _notify_session(self, row: SessionRow, notice: Notice) -> None:
        if row.last_target is not None:
            await self._post_notice(row.last_target, notice)

    # ---- feedback, sessions, status ---------------------------------------------------------------

    async def handle_feedback(self, event: FeedbackEvent) -> FeedbackResult:
        """Turn a reaction or button on an answer into Uppzy feedback, at most once per answer."""
        if event.removed:
            return FeedbackResult(FeedbackOutcome.IGNORED)  # Uppzy keeps the first rating; nothing to undo
        turn = await self.store.turn_for_message(event.platform, event.message_id, event.channel_id)
        if turn is None:
            return FeedbackResult(FeedbackOutcome.NOT_AN_ANSWER, message=messages.NOT_AN_ANSWER)
        ws = await self.workspaces.get(event.platform, turn.target.workspace_id)
        rating = event.rating or (ws.rating_for(event.emoji) if event.emoji else None)
        if rating not in ("good", "bad"):
            return FeedbackResult(FeedbackOutcome.IGNORED)
        if ws.feedback_raters == "asker" and event.user_id != turn.target.user_id:
            return FeedbackResult(FeedbackOutcome.NOT_ALLOWED, rating, messages.NOT_YOUR_ANSWER, turn)
        earlier = await self.store.claim_feedback(turn.id, rating, event.user_id, event.source, now=self.clock())
        if earlier is not None:
            return FeedbackResult(FeedbackOutcome.ALREADY_RATED, earlier, messages.ALREADY_RATED, turn)  # type: ignore[arg-type]
        try:
            receipt = await self.uppzy.feedback(turn.session_id, turn.request_id or "", rating,  # type: ignore[arg-type]
                                                site_id=turn.site_id)
        except UppzyError as exc:
            await self.store.finish_feedback(turn.id, sent=False)
            log.warning("feedback for turn=%d not recorded: %s", turn.id, type(exc).__name__)
            return FeedbackResult(FeedbackOutcome.FAILED, rating, messages.FEEDBACK_FAILED, turn)  # type: ignore[arg-type]
        await self.store.finish_feedback(turn.id, sent=True)
        self.metrics.feedback.labels(event.platform, turn.target.workspace_id, rating).inc()
        log.info("feedback turn=%d request_id=%s rating=%s source=%s", turn.id, turn.request_id, rating,
                 event.source)
        if not receipt.first:
            return FeedbackResult(FeedbackOutcome.ALREADY_RATED, rating, messages.ALREADY_RATED, turn)  # type: ignore[arg-type]
        if rating == "bad" and ws.escalation_target:
            platform = self.platforms.get(event.platform)
            if platform is not None:
                self._spawn(platform.escalate(turn.target, ws.escalation_target, event.message_id))
        thanks = messages.THANKS_GOOD if rating == "good" else messages.THANKS_BAD
        return FeedbackResult(FeedbackOutcome.RECORDED, rating, thanks, turn)  # type: ignore[arg-type]

    async def is_bot_thread(self, platform: str, channel_id: str, thread_root: str) -> bool:
        """Whether a thread is one the bot answers in, so a follow-up there needs no mention."""
        return await self.store.knows_thread(platform, channel_id, thread_root)

    async def end_conversation(self, target: ReplyTarget) -> EndResult:
        """Close the caller's session for this conversation now (the next message starts a fresh one)."""
        ws = await self.workspaces.get(target.platform, target.workspace_id)
        row = await self.store.live_session(session_key(target, ws.session_strategy))
        if row is None:
            return EndResult.NO_SESSION
        return EndResult.ENDED if await self.reaper.close_now(row, "user") else EndResult.BUSY

    async def list_sessions(self, platform: str, workspace_id: str, email: str | None,
                            user_id: str | None = None) -> list[SessionInfo]:
        """Uppzy's session list for a workspace's site: one user's by email, else by our session-id prefix."""
        ws = await self.workspaces.get(platform, workspace_id)
        sessions = await self.uppzy.list_sessions(email=email, site_id=ws.site_id)
        if email or user_id is None:
            return sessions
        prefix = session_key(ReplyTarget(platform, workspace_id, "", "", "", user_id), "user")
        return [s for s in sessions if s.id == prefix or s.id.startswith(prefix + "-")]

    async def status_report(self, platform: str, workspace_id: str) -> StatusReport:
        """Settings, Uppzy connectivity and counts for one workspace."""
        described = await self.workspaces.describe(platform, workspace_id)
        ws = await self.workspaces.get(platform, workspace_id)
        try:
            await self.uppzy.site(ws.site_id)
            ok, detail = True, "reachable"
        except UppzyAuthError:
            ok, detail = False, "the API key was refused (401)"
        except UppzyForbidden:
            ok, detail = False, "the plan does not allow API access (403)"
        except UppzyNotFound:
            ok, detail = False, f"site {ws.site_id!r} not found (404)"
        except UppzyRejected as exc:
            ok, detail = False, f"refused ({exc.status})"
        except UppzyError as exc:
            ok, detail = False, f"unreachable ({type(exc).__name__})"
        counts = await self.store.counts(platform, workspace_id)
        return StatusReport(described, ok, detail, counts["pending"], counts["open_sessions"])

    # ---- tasks ------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relay task failed", exc_info=task.exception())
