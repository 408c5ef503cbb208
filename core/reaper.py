"""One loop closes idle sessions at a bounded pace, driven by the last-activity index, not per-session timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from core import messages
from core.errors import UppzyAuthError, UppzyError, UppzyForbidden, UppzyNotFound
from core.health import RateLimitedLog, StoreUnavailable
from core.models import Notice, NoticeKind, SessionRow
from core.ports import RateBudget, Store
from core.ratelimit import LocalBudget, acquire
from core.uppzy import UppzyClient

__all__ = ["IdleReaper"]

log = logging.getLogger(__name__)

Notify = Callable[[SessionRow, Notice], Awaitable[None]]
CLOSE_IN_FLIGHT = 120.0  # a claimed close not confirmed after this long is taken to have failed (or crashed)
RETENTION = 30 * 86400.0  # finished questions and closed sessions are forgotten this long after they ended


class IdleReaper:
    """Closes sessions idle past their workspace's timeout, then tells the conversation."""

    def __init__(
        self,
        *,
        store: Store,
        uppzy: UppzyClient,
        notify: Notify,
        default_idle: float,
        close_rate: float = 5.0,
        clock: Callable[[], float] = time.time,
        batch: int = 500,
        on_closed: Callable[[SessionRow, str], None] | None = None,
        pace: RateBudget | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._uppzy = uppzy
        self._notify = notify
        self._default_idle = default_idle
        self._clock = clock
        self._batch = batch
        self._on_closed = on_closed
        # At most `close_rate` closes in any one-second window: of this process, or of every replica together when
        # the store is shared (the composition root passes the store's budget). Users' /end closes count too.
        self.pace = pace or LocalBudget(close_rate)
        self._leading = leading  # several replicas: only the leader reaps (closes are claimed all the same)
        self._store_errors = RateLimitedLog(log, logging.WARNING)
        self.closed = 0
        self._last_prune = 0.0

    async def reap_once(self, now: float | None = None) -> int:
        """Close every session that is idle as of `now`; returns how many were closed."""
        now = self._clock() if now is None else now
        closed = 0
        # Closes claimed a while ago and never confirmed (a crash, a failed call); one in flight now is left alone.
        for row in await self._store.closing_sessions(self._batch, before=now - CLOSE_IN_FLIGHT):
            await acquire(self.pace)
            outcome = await self._finish(row, "idle", None)
            if outcome < 0:
                return closed  # the key is refused: retrying every session now would only hammer Uppzy
            closed += outcome
        for row in await self._store.idle_sessions(now, self._batch):
            if not self._leading():
                return closed  # leadership moved to another replica mid-pass: it carries on
            await acquire(self.pace)
            if not await self._store.claim_for_close(row.id, idle_at=now, now=self._clock()):
                continue  # became active or has a question in flight
            direct = row.last_target is not None and row.last_target.is_dm
            notice = Notice(NoticeKind.IDLE_CLOSED, messages.idle_closed(row.idle_timeout, direct=direct))
            outcome = await self._finish(row, "idle", notice)
            if outcome < 0:
                return closed
            closed += outcome
        if now - self._last_prune > 3600:
            self._last_prune = now
            pruned = await self._store.prune(now - RETENTION)
            if pruned:
                log.info("pruned %d finished questions (and sessions closed) over 30 days ago", pruned)
        return closed

    async def close_now(self, row: SessionRow, reason: str) -> bool:
        """Close one session at once (a user ended it); False if a question is still in flight."""
        if not await self._store.claim_for_close(row.id, idle_at=None, now=self._clock()):
            return False
        await acquire(self.pace)
        await self._finish(row, reason, None)  # if Uppzy is down the close is finished by a later pass
        return True

    async def _finish(self, row: SessionRow, reason: str, notice: Notice | None) -> int:
        try:
            await self._uppzy.close_session(row.id, site_id=row.site_id)
        except UppzyNotFound:
            log.warning("closing session=%s: site %s not found; marking closed", row.id, row.site_id)
        except (UppzyAuthError, UppzyForbidden) as exc:
            log.error("closing session=%s refused (%s): check UPPZY_API_KEY; closes resume next pass", row.id,
                      type(exc).__name__)
            return -1
        except UppzyError as exc:
            log.warning("closing session=%s failed (%s); will retry", row.id, type(exc).__name__)
            return 0
        await self._store.mark_closed(row.id, reason, now=self._clock())
        self.closed += 1
        if self._on_closed is not None:
            self._on_closed(row, reason)
        log.info("session closed session=%s reason=%s", row.id, reason)
        if notice is not None and row.last_target is not None:
            try:
                await self._notify(row, notice)
            except Exception:
                log.warning("idle notice for session=%s could not be posted", row.id, exc_info=True)
        return 1

    async def run(self, stop: asyncio.Event, *, every: float | None = None) -> None:
        """Reap periodically until `stop` is set."""
        every = every or max(5.0, min(60.0, self._default_idle / 10))
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a failing probe sets the store's health and logs it (bounded)
                await self._store.probe()  # also between readiness checks: a deleted database file is noticed
            try:
                if self._leading():
                    await self.reap_once()
            except StoreUnavailable as exc:  # the database is away: said once a minute, tried every pass
                self._store_errors("idle reaper pass skipped: %s", exc)
            except Exception:
                log.exception("idle reaper pass failed")
            try:
                async with asyncio.timeout(every):
                    await stop.wait()
            except TimeoutError:
                pass
