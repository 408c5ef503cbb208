"""One loop closes idle sessions at a bounded pace, driven by the last-activity index, not per-session timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from cachetools import LRUCache

from core import messages
from core.credentials import UppzyCredentials
from core.errors import UppzyAuthError, UppzyError, UppzyForbidden, UppzyNotFound
from core.health import RateLimitedLog, StoreUnavailable
from core.models import Notice, NoticeKind, SessionRow
from core.ports import RateBudget, Store
from core.ratelimit import LocalBudget, acquire
from core.uppzy_pool import Connections

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
        connections: Connections,
        notify: Notify,
        default_idle: float,
        close_rate: float = 5.0,
        clock: Callable[[], float] = time.time,
        batch: int = 500,
        on_closed: Callable[[SessionRow, str], None] | None = None,
        pace: RateBudget | None = None,
        leading: Callable[[], bool] = lambda: True,
        paces: Callable[[UppzyCredentials], RateBudget] | None = None,
    ) -> None:
        self._store = store
        self._connections = connections
        self._notify = notify
        self._default_idle = default_idle
        self._clock = clock
        self._batch = batch
        self._on_closed = on_closed
        # At most `close_rate` closes in any one-second window: of this process, or of every replica together when
        # the store is shared (the composition root passes the store's budget). Users' /end closes count too.
        self.pace = pace or LocalBudget(close_rate)
        # Each workspace key closes within its own budget (the limit is its tenant's); the deployment key uses `pace`.
        self._make_pace = paces or (lambda creds: LocalBudget(close_rate))
        self._paces: LRUCache[str, RateBudget] = LRUCache(maxsize=256)
        self._refused: set[str] = set()
        self._leading = leading  # several replicas: only the leader reaps (closes are claimed all the same)
        self._store_errors = RateLimitedLog(log, logging.WARNING)
        self.closed = 0
        self._last_prune = 0.0

    async def reap_once(self, now: float | None = None) -> int:
        """Close every session that is idle as of `now`; returns how many were closed."""
        now = self._clock() if now is None else now
        closed = 0
        self._refused.clear()  # keys refused (401/403) during this pass: their other sessions wait for the next
        # Closes claimed a while ago and never confirmed (a crash, a failed call); one in flight now is left alone.
        for row in await self._store.closing_sessions(self._batch, before=now - CLOSE_IN_FLIGHT):
            outcome = await self._finish(row, "idle", None)
            if outcome < 0:
                return closed  # the key is refused: retrying every session now would only hammer Uppzy
            closed += outcome
        for row in await self._store.idle_sessions(now, self._batch):
            if not self._leading():
                return closed  # leadership moved to another replica mid-pass: it carries on
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
        await self._finish(row, reason, None)  # if Uppzy is down the close is finished by a later pass
        return True

    def pace_for(self, creds: UppzyCredentials) -> RateBudget:
        """The close budget of `creds`' key (the deployment key's is `pace`)."""
        default = self._connections.credentials.default
        if default is not None and creds.key_id == default.key_id:
            return self.pace
        found = self._paces.get(creds.key_id)
        if found is None:
            found = self._paces[creds.key_id] = self._make_pace(creds)
        return found

    async def _finish(self, row: SessionRow, reason: str, notice: Notice | None) -> int:
        uppzy = await self._connections.recorded(row.platform, row.workspace_id, row.site_id)
        try:
            if uppzy is None:  # the workspace has no key any more (uninstalled): Uppzy closes it on its side
                log.warning("closing session=%s: no Uppzy key for its workspace now; marking closed", row.id)
            elif uppzy.creds.key_id in self._refused:
                return 0
            else:
                await acquire(self.pace_for(uppzy.creds))
                await uppzy.close_session(row.id, site_id=row.site_id)
        except UppzyNotFound:
            log.warning("closing session=%s: site %s not found; marking closed", row.id, row.site_id)
        except (UppzyAuthError, UppzyForbidden) as exc:
            assert uppzy is not None
            default = self._connections.credentials.default
            if default is None or uppzy.creds.key_id != default.key_id:  # one workspace's key: the others go on
                log.error("closing session=%s refused (%s): workspace %s:%s's own Uppzy key; its closes resume next "
                          "pass", row.id, type(exc).__name__, row.platform, row.workspace_id)
                self._refused.add(uppzy.creds.key_id)
                return 0
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
