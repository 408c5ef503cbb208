"""Delivery: post each fetched answer (or the one failure notice) exactly once, then let the session move on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from core import messages
from core.backoff import Backoff
from core.health import StoreUnavailable
from core.metrics import Metrics
from core.models import Answer, Notice, NoticeKind, Turn, TurnState
from core.platforms import Platforms
from core.poller import PendingRequest
from core.ports import Store
from core.supervisor import TaskSupervisor
from core.text import clean_text, shorten_answer
from core.uppzy_types import Confidence, RequestStatus
from core.workspace import WorkspaceSettingsService

__all__ = ["Delivery"]

log = logging.getLogger(__name__)


class Delivery:
    """Takes the poller's results; `finished(session_id)` is called once per question that ended, either way.

    An answer the platform keeps refusing after `backoff` is not given up: it is postponed by `retry_every` and
    the sweep (`run_sweeps`) posts it again, until `retry_for` after the question; then one failure notice goes.
    """

    def __init__(self, *, store: Store, platforms: Platforms, workspaces: WorkspaceSettingsService,
                 metrics: Metrics, tasks: TaskSupervisor, backoff: Backoff, answer_timeout: float,
                 finished: Callable[[str], None], clock: Callable[[], float] = time.time,
                 answer_max_chars: int = 12000, retry_every: float = 300.0, retry_for: float = 86400.0,
                 sweep_every: float = 60.0, redelivery: Backoff | None = None,
                 store_writes: Backoff | None = None) -> None:
        self._store = store
        self._store_writes = store_writes or Backoff(attempts=0, initial=0.5, maximum=30.0)
        self._platforms = platforms
        self._workspaces = workspaces
        self._metrics = metrics
        self._tasks = tasks
        self._backoff = backoff
        self._answer_timeout = answer_timeout
        self._finished = finished
        self._clock = clock
        self._max_chars = answer_max_chars
        self._retry_every = retry_every
        self._retry_for = retry_for
        self._sweep_every = sweep_every
        self._redelivery = redelivery or backoff
        self._posting: set[int] = set()  # turns being posted now: the sweep and the backlog skip them
        self._held: set[int] = set()  # posted, their record still to be written: never posted again meanwhile
        self._pending_writes: dict[str, Callable[[], Awaitable[None]]] = {}  # one retry loop per record

    # ---- from the poller ----

    async def on_status(self, item: PendingRequest, status: RequestStatus) -> None:
        """Uppzy finished a request: keep the answer durably, then post it (off the poll path)."""
        if status.status != "completed":
            turn = await self._store.get_turn(item.turn_id)
            if turn is not None and turn.state is TurnState.PENDING:
                log.warning("Uppzy could not answer turn=%d request_id=%s", turn.id, item.request_id)
                self._tasks.spawn(self.fail(turn, NoticeKind.FAILED, None, kind="failed"), name="fail")
            return
        text = self._fit(clean_text(status.answer or ""), item.turn_id)  # storable, postable and of sane size
        score, level = status.confidence.score, status.confidence.level
        try:
            # Stored, claimed for posting and read back in one step: the question is posted from what was stored,
            # never read a second time, and needs no separate claim (store_answer fenced it by holder).
            ready = await self._store.store_answer(item.turn_id, text, score, level, now=self._clock())
        except StoreUnavailable:  # the answer is in hand: post it now rather than lose it to a broken disk
            turn = await self._store.get_turn(item.turn_id)  # reads still work on a full disk
            if turn is None or turn.state is not TurnState.PENDING:
                return
            unstored = replace(turn, state=TurnState.READY, answer=text, confidence_score=score,
                               confidence_level=level)
            # Kept trying in the background too: once stored, a refused answer can be kept for the sweep.
            self._later(f"turn={turn.id} answer",
                        lambda: self._kept(turn.id, text, score, level),
                        deliver=turn.id)
            self._tasks.spawn(self._deliver_now(unstored), name="deliver-unstored")
            return
        if ready is None:  # no longer waiting for this answer: finished, or another replica adopted it (it posts)
            log.info("turn=%d not stored: no longer pending here (taken over by another replica, or finished)",
                     item.turn_id)
            return
        self._tasks.spawn(self.deliver(ready.id, known=ready, claimed=True), name="deliver")

    async def _kept(self, turn_id: int, text: str, score: float | None, level: str | None) -> None:
        await self._store.store_answer(turn_id, text, score, level, now=self._clock())

    async def on_expired(self, item: PendingRequest, why: str) -> None:
        """No answer in time (or the request is unknown to Uppzy): one clear notice."""
        turn = await self._store.get_turn(item.turn_id)
        if turn is None or not turn.state.active:
            return
        if why == "timeout":
            log.warning("no answer within %.0fs turn=%d request_id=%s", self._answer_timeout, turn.id,
                        item.request_id)
            self._tasks.spawn(self.fail(turn, NoticeKind.TIMEOUT, messages.TIMED_OUT, kind="timeout"), name="fail")
        else:
            self._tasks.spawn(self.fail(turn, NoticeKind.FAILED, None, kind=why), name="fail")

    # ---- answers ----

    def _fit(self, text: str, turn_id: int) -> str:
        if len(text) <= self._max_chars:
            return text
        log.warning("answer for turn=%d has %d characters; shortened to %d", turn_id, len(text), self._max_chars)
        return shorten_answer(text, self._max_chars, messages.ANSWER_SHORTENED)

    async def deliver(self, turn_id: int, *, recovering: bool = False, backoff: Backoff | None = None,
                      known: Turn | None = None, claimed: bool = False) -> None:
        """Post a READY or DELIVERING answer on the delivery schedule; if the platform still refuses, postpone it
        for the sweep (or, a day after the question, end it with one notice). `known`: the turn as just stored, so
        it need not be read again; `claimed`: store_answer claimed it for this process just now."""
        if turn_id in self._posting or turn_id in self._held:
            return  # already on its way (the sweep or the backlog met a post in progress), or already posted
        self._posting.add(turn_id)
        try:
            await self._deliver(turn_id, recovering, backoff or self._backoff, known, claimed)
        finally:
            self._posting.discard(turn_id)

    async def _deliver_now(self, turn: Turn) -> None:
        """Post an answer the store could not keep (its turn held in memory only)."""
        if turn.id in self._posting:
            return
        self._posting.add(turn.id)
        try:
            await self._post(turn, False, self._backoff, stored=False)
        finally:
            self._posting.discard(turn.id)

    async def _deliver(self, turn_id: int, recovering: bool, backoff: Backoff, known: Turn | None,
                       claimed: bool) -> None:
        turn = known or await self._store.get_turn(turn_id)
        if turn is None or turn.state not in (TurnState.READY, TurnState.DELIVERING):
            return
        await self._post(turn, recovering, backoff, claimed=claimed and known is not None)

    async def _post(self, turn: Turn, recovering: bool, backoff: Backoff, *, stored: bool = True,
                    claimed: bool = False) -> None:
        platform = self._platforms.get(turn.target.platform)
        if platform is None:
            log.warning("turn=%d waits for its platform %s to be connected", turn.id, turn.target.platform)
            return
        ws = await self._workspaces.get(turn.target.platform, turn.target.workspace_id)
        answer = Answer(
            text=turn.answer or ws.fallback_text, request_id=turn.request_id or "",
            confidence_score=turn.confidence_score, confidence_level=turn.confidence_level,
            low_confidence_note=ws.low_confidence_note
            if Confidence(turn.confidence_score, turn.confidence_level).is_low else None,
            delivery_key=f"uppzy-turn-{turn.id}",
        )
        # Only a hint for recovery after a crash (an earlier copy may exist): not worth retrying if it cannot land,
        # and never written for an answer the store does not hold (the row must not look deliverable without it).
        if stored and not claimed and not await self._claim(turn):
            return
        attempts = 0

        async def post() -> list[str]:
            nonlocal attempts
            attempts += 1
            return await platform.post_answer(turn.target, answer, recovering=recovering or attempts > 1)

        try:
            ids = await backoff.run(post, what=f"posting answer turn={turn.id}")
        except Exception:
            if stored:
                await self._undeliverable(turn, attempts)
            else:  # once the answer is stored (retried in the background) it is delivered, or kept, from there
                log.warning("answer for turn=%d could not be posted (%d attempts); retried once it is stored",
                            turn.id, attempts)
            return
        now = self._clock()
        if not await self._write(f"turn={turn.id} answered", lambda: self._store.mark_answered(turn.id, ids, now=now),
                                 then=turn.session_id, hold=turn.id):
            log.warning("answered turn=%d but the store cannot record it yet; its session waits for that", turn.id)
        self._metrics.delivered.labels(turn.target.platform, turn.target.workspace_id).inc()
        self._metrics.answer_seconds.labels(turn.target.platform).observe(max(0.0, now - turn.created_at))
        log.info("answered turn=%d request_id=%s messages=%d%s", turn.id, turn.request_id, len(ids),
                 " (recovering)" if recovering else "")
        await self._after(turn)

    async def _claim(self, turn: Turn) -> bool:
        """Mark the answer as being posted, fenced: False when another replica adopted the question (it posts it).
        Also a hint for recovery after a crash (an earlier copy may exist); if the store cannot be written now the
        answer is posted all the same."""
        try:
            if await self._store.claim_delivery(turn.id):
                return True
        except StoreUnavailable:
            return True
        log.info("turn=%d is no longer this replica's to post (taken over, or already posted)", turn.id)
        return False

    async def _undeliverable(self, turn: Turn, attempts: int) -> None:
        """The platform refused every attempt: try again later, or after `retry_for` end with one notice."""
        now = self._clock()
        if now - turn.created_at < self._retry_for:
            # If even this cannot be recorded the turn stays due, so the next sweep simply tries again.
            until = now + self._retry_every
            await self._write(f"turn={turn.id} kept", lambda: self._store.postpone(turn.id, until=until), retry=False)
            self._metrics.kept.labels(turn.target.platform, turn.target.workspace_id).inc()
            log.warning("answer for turn=%d could not be posted (%d attempts); kept, next try in %.0fs",
                        turn.id, attempts, self._retry_every)
            return  # still unfinished: its session's later questions wait behind it, in order
        log.error("answer for turn=%d could not be posted for %.0fs; giving up with a notice", turn.id,
                  now - turn.created_at)
        await self.fail(turn, NoticeKind.FAILED, None, kind="undeliverable")

    async def sweep(self) -> int:
        """Post again every kept answer whose next try has come; returns how many posts were started."""
        started, now = 0, self._clock()
        for turn in await self._store.undelivered(now, limit=500):
            if turn.id in self._posting or turn.id in self._held:
                continue
            if self._platforms.get(turn.target.platform) is None:  # not connected (yet): wait, but not forever
                if now - turn.created_at >= self._retry_for:
                    self._tasks.spawn(self.fail(turn, NoticeKind.FAILED, None, kind="undeliverable"), name="fail")
                continue
            self._tasks.spawn(self.deliver(turn.id, recovering=True, backoff=self._redelivery), name="redeliver")
            started += 1
        if started:
            log.info("redelivery sweep: retrying %d kept answer(s)", started)
        return started

    async def run_sweeps(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_every` seconds until `stop` is set (what is kept survives restarts in the store)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sweep_every):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await self.sweep()
            except Exception:  # a failed sweep (store busy) must not end the loop: the next one tries again
                log.exception("redelivery sweep failed")

    async def backlog(self, platform: str) -> None:
        """Answers of this process that waited for this platform to connect are posted now."""
        for turn in await self._store.adopt(now=self._clock(), mine=True, orphans=False):
            if turn.target.platform == platform and turn.state in (TurnState.READY, TurnState.DELIVERING):
                self._tasks.spawn(self.deliver(turn.id, recovering=turn.state is TurnState.DELIVERING),
                                  name="deliver")

    # ---- failures ----

    async def fail(self, turn: Turn, notice_kind: NoticeKind, text: str | None, *, kind: str | None = None) -> None:
        """End a question with one clear, friendly line in its thread (`kind` labels it in logs and the store)."""
        label = kind or notice_kind.value
        if text is None:
            text = (await self._workspaces.get(turn.target.platform, turn.target.workspace_id)).fallback_text
        # Recorded before posting: a crash now resumes the notice instead of losing it (or adding a second). If the
        # store cannot record it, the notice is posted all the same; if another replica holds it now, it tells.
        try:
            if not await self._store.begin_failure(turn.id, label, notice_kind.value, text):
                log.info("turn=%d is no longer this replica's to end (taken over, or finished)", turn.id)
                return
        except StoreUnavailable:
            self._later(f"turn={turn.id} notifying", lambda: self._noted(turn.id, label, notice_kind.value, text))
        await self.notify_failure(replace(turn, error_kind=label, notice_kind=notice_kind.value, notice=text))

    async def notify_failure(self, turn: Turn) -> None:
        """Post the stored failure notice, then close the question."""
        label = turn.error_kind or "failed"
        notice = Notice(NoticeKind(turn.notice_kind or NoticeKind.FAILED.value), turn.notice or "")
        if not await self._platforms.post_notice(turn.target, notice, self._backoff):
            log.error("could not post the failure notice for turn=%d; giving up", turn.id)
        now = self._clock()
        await self._write(f"turn={turn.id} failed", lambda: self._store.mark_failed(turn.id, label, now=now),
                          then=turn.session_id)
        self._metrics.failed.labels(turn.target.platform, turn.target.workspace_id, label).inc()
        if label == "timeout":
            self._metrics.answer_timeouts.labels(turn.target.platform, turn.target.workspace_id).inc()
        log.info("question failed turn=%d reason=%s", turn.id, label)
        await self._after(turn)

    async def _write(self, what: str, write: Callable[[], Awaitable[None]], *, then: str | None = None,
                     retry: bool = True, hold: int | None = None) -> bool:
        """A state write; if the store cannot be written now, the caller carries on (the user is answered or told
        all the same) and, with `retry`, the write is retried in the background until it lands."""
        try:
            await write()
            return True
        except StoreUnavailable:
            if retry:
                self._later(what, write, then=then, hold=hold)
            return False

    def _later(self, what: str, write: Callable[[], Awaitable[None]], *, then: str | None = None,
               hold: int | None = None, deliver: int | None = None) -> None:
        """Retry `write` until it lands: one loop per record (a newer write for it replaces the older). `hold`
        keeps a posted turn away from the sweep meanwhile; afterwards session `then` moves on and turn `deliver`
        is delivered from the store."""
        fresh = what not in self._pending_writes
        self._pending_writes[what] = write
        if hold is not None:
            self._held.add(hold)
        if fresh:
            self._tasks.spawn(self._write_later(what, then, hold, deliver), name="write-later")

    async def _write_later(self, what: str, then: str | None, hold: int | None, deliver: int | None) -> None:
        attempt = 0
        try:
            while True:
                attempt += 1
                await asyncio.sleep(self._store_writes.delay(attempt))
                try:
                    await self._pending_writes[what]()
                except StoreUnavailable:
                    continue
                log.info("%s recorded once the store could be written again", what)
                break
        finally:
            self._pending_writes.pop(what, None)
            if hold is not None:
                self._held.discard(hold)
        if then is not None:
            self._finished(then)  # the session's next question was waiting for this record
        if deliver is not None:
            self._tasks.spawn(self.deliver(deliver), name="deliver")

    async def _noted(self, turn_id: int, kind: str, notice_kind: str, notice: str) -> None:
        await self._store.begin_failure(turn_id, kind, notice_kind, notice)

    async def flush(self, within: float) -> bool:
        """Land every store write still waiting (an answer posted but not recorded…), retrying for up to `within`
        seconds: a rejoin drops the tasks that retry them, and must not find those answers unposted. Writes are
        idempotent, so one its retry loop also lands does no harm. True when none is left."""
        waiting, attempt = dict(self._pending_writes), 0
        deadline = time.monotonic() + within
        while waiting:
            for what, write in list(waiting.items()):
                try:
                    await write()
                except StoreUnavailable:
                    continue
                del waiting[what]
                log.info("%s recorded before rejoining", what)
            attempt += 1
            if not waiting or time.monotonic() + self._store_writes.delay(attempt) > deadline:
                break
            await asyncio.sleep(self._store_writes.delay(attempt))
        return not waiting

    async def _after(self, turn: Turn) -> None:
        await self._platforms.clear_working(turn.target)
        self._finished(turn.session_id)
