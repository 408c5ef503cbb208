"""Submitter: hand a session's head question to Uppzy's async chat exactly once, then start polling for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from core import messages
from core.backoff import Backoff
from core.credentials import UppzyCredentials
from core.errors import (
    UppzyAuthError,
    UppzyConflict,
    UppzyError,
    UppzyForbidden,
    UppzyNotFound,
    UppzyRateLimited,
    UppzyTimeout,
    UppzyUnavailable,
)
from core.health import RateLimitedLog
from core.models import NoticeKind, Turn, TurnState
from core.poll_lanes import PollLanes
from core.ports import Store
from core.supervisor import TaskSupervisor
from core.uppzy_pool import Connections

__all__ = ["Submitter"]

log = logging.getLogger(__name__)

Fail = Callable[..., Awaitable[None]]  # Delivery.fail(turn, notice_kind, text, kind=...)
Later = Callable[[str, float], None]  # Intake.advance_later(session_id, delay)


class Submitter:
    """Submits within a bounded number of slots; a submit that may have reached Uppzy is never sent again."""

    def __init__(self, *, store: Store, connections: Connections, poller: PollLanes, fail: Fail, later: Later,
                 tasks: TaskSupervisor, answer_timeout: float, concurrency: int,
                 store_writes: Backoff | None = None, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._store_writes = store_writes or Backoff(attempts=0, initial=0.5, maximum=10.0)
        self._connections = connections
        self._poller = poller
        self._fail = fail
        self._later = later
        self._tasks = tasks
        self._answer_timeout = answer_timeout
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight = 0  # a graceful stop lets these finish, so none is left half-done
        self.stopping = False
        self._done = asyncio.Event()
        self._done.set()
        self._store_log = RateLimitedLog(log, logging.ERROR)  # a full disk must not log once per question

    async def submit(self, turn: Turn) -> None:
        """Claim the question (compare-and-set: only once) when a slot is free, and send it to Uppzy."""
        self._in_flight += 1
        self._done.clear()
        try:
            async with self._slots:
                # Claimed only once a slot is free, and not once stopping: a submit started during the shutdown
                # drain would be cut off and come back as "lost"; left queued, the next start sends it.
                if not self.stopping and await self._claim(turn):
                    try:
                        await self._send(turn)
                    except Exception as exc:  # a store write failed (rebind, requeue): claimed, so end it
                        self._store_log("submit turn=%d: the store failed (%s: %s); the asker gets an apology",
                                        turn.id, type(exc).__name__, exc)
                        self._tasks.spawn(self._fail(turn, NoticeKind.FAILED, None, kind="store"), name="fail")
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._done.set()

    async def _claim(self, turn: Turn) -> bool:
        """claim_submit; if the store cannot be written the question stays queued and is looked at again later."""
        try:
            return await self._store.claim_submit(turn.id)
        except Exception as exc:
            waited = self._clock() - turn.created_at
            self._store_log("claiming turn=%d failed (%s: %s); trying again later", turn.id, type(exc).__name__, exc)
            if waited >= self._answer_timeout:
                self._tasks.spawn(self._fail(turn, NoticeKind.FAILED, None, kind="store"), name="fail")
            else:
                self._later(turn.session_id, min(20.0, 1.0 + waited / 4))
            return False

    @property
    def in_flight(self) -> int:
        """Submits waiting for a slot or on their way to Uppzy."""
        return self._in_flight

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for submits already on their way: one cut off mid-call could only be apologised for."""
        if not self._in_flight:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            log.warning("%d submit(s) still in flight at shutdown; they will be reported lost", self._in_flight)

    async def _send(self, turn: Turn) -> None:
        # The key is chosen now, from the workspace's connection and the site the question was recorded on; its polls
        # keep that key (the poller lane of the key) until the answer comes, whatever the workspace connects meanwhile.
        uppzy = await self._connections.recorded(turn.target.platform, turn.target.workspace_id, turn.site_id)
        if uppzy is None:  # disconnected (uninstalled) since it was asked, and no deployment key
            self._tasks.spawn(self._fail(turn, NoticeKind.NOT_CONNECTED, messages.NOT_CONNECTED,
                                         kind="not_connected"), name="fail")
            return
        for attempt in range(3):
            try:
                sub = await uppzy.submit(turn.session_id, turn.text or "", email=turn.email,
                                               site_id=turn.site_id)
            except UppzyConflict:
                if attempt == 2:
                    break  # an id that cannot have been used was refused too: not a closed-session problem
                # Uppzy closed this session (idle on their side, our DB was restored, or the key's closed sessions
                # were pruned so the next generation is one Uppzy had): move on to a new id; the second time to
                # a time-stamped one that cannot have been used.
                new_id = await self._store.rebind_session(turn.id, now=self._clock(), stamped=attempt == 1)
                turn = replace(turn, session_id=new_id)
                log.info("session closed upstream; turn=%d moves to session=%s", turn.id, turn.session_id)
                continue
            except (UppzyTimeout, UppzyRateLimited, UppzyUnavailable) as exc:
                if isinstance(exc, UppzyTimeout) or exc.maybe_processed:
                    # Uppzy may have taken it: asking again could create a second turn, so say sorry instead.
                    log.warning("submit turn=%d outcome unknown (%s); not resubmitting", turn.id,
                                type(exc).__name__)
                    self._tasks.spawn(self._fail(turn, NoticeKind.FAILED, None, kind="uncertain"))
                    return
                await self._defer(turn, exc)
                return
            except UppzyError as exc:
                self._tasks.spawn(self._rejected(turn, exc))
                return
            now = self._clock()
            try:
                await self._store.mark_submitted(turn.id, sub.request_id, now=now)
            except Exception as exc:  # Uppzy has it: keep trying to record it, then poll as usual
                self._store_log("recording request_id=%s of turn=%d failed (%s: %s); retrying", sub.request_id,
                                turn.id, type(exc).__name__, exc)
                self._tasks.spawn(self._keep(turn, sub.request_id, now, uppzy.creds), name="keep-request")
                return
            self._track(turn, sub.request_id, now, uppzy.creds)
            return
        self._tasks.spawn(self._fail(turn, NoticeKind.FAILED, None, kind="conflict"))

    def _track(self, turn: Turn, request_id: str, submitted_at: float, creds: UppzyCredentials) -> None:
        log.info("submitted turn=%d request_id=%s session=%s", turn.id, request_id, turn.session_id)
        self._poller.add(turn.id, request_id, turn.site_id, submitted_at=submitted_at,
                         deadline=submitted_at + self._answer_timeout, creds=creds)

    async def _keep(self, turn: Turn, request_id: str, submitted_at: float, creds: UppzyCredentials) -> None:
        """Retry recording Uppzy's request id (the only way to fetch the answer) until the answer budget ends."""
        attempt = 0
        while self._clock() < submitted_at + self._answer_timeout:
            attempt += 1
            await asyncio.sleep(self._store_writes.delay(attempt))
            try:
                await self._store.mark_submitted(turn.id, request_id, now=submitted_at)
            except Exception:
                continue
            self._track(turn, request_id, submitted_at, creds)
            return
        await self._fail(turn, NoticeKind.FAILED, None, kind="store")

    async def _defer(self, turn: Turn, exc: UppzyError) -> None:
        """Uppzy did not take it (429/5xx after retries): try again later, within the answer budget."""
        waited = self._clock() - turn.created_at
        if waited >= self._answer_timeout:
            self._tasks.spawn(self._fail(turn, NoticeKind.FAILED, None, kind="unavailable"))
            return
        await self._store.set_state(turn.id, TurnState.QUEUED)
        delay = getattr(exc, "retry_after", None) or min(20.0, 2.0 + waited / 4)
        log.warning("submit turn=%d deferred %.1fs (%s)", turn.id, delay, type(exc).__name__)
        self._later(turn.session_id, delay)

    async def _rejected(self, turn: Turn, exc: UppzyError) -> None:
        if isinstance(exc, UppzyAuthError | UppzyForbidden | UppzyNotFound):
            log.error("Uppzy refused turn=%d (%s): check UPPZY_API_KEY, plan and site id", turn.id,
                      type(exc).__name__)
            await self._fail(turn, NoticeKind.UNAVAILABLE, messages.UNAVAILABLE, kind="rejected")
        else:
            log.error("Uppzy rejected turn=%d as %s", turn.id, type(exc).__name__)
            await self._fail(turn, NoticeKind.FAILED, None, kind="rejected")
