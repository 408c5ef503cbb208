"""This process among replicas: its lease, the singleton jobs it leads, and adopting the work of replicas that died."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from core.health import RateLimitedLog
from core.models import Turn
from core.ports import Store

__all__ = ["REAPER_JOB", "Membership"]

log = logging.getLogger(__name__)
REAPER_JOB = "idle-reaper"
Resume = Callable[[list[Turn]], None]


class Membership:
    """Keeps this process's lease in a shared store, leads the jobs only one replica may run, and resumes the
    unfinished questions of replicas whose lease lapsed (SIGKILL, node lost) or that stopped cleanly.

    Questions are taken from others only after this process has renewed without a gap for one whole lease: after a
    database outage every replica's lease looks lapsed, and the live ones must get the chance to renew first.
    """

    def __init__(self, *, store: Store, lease: float, clock: Callable[[], float] = time.time,
                 batch: int = 500) -> None:
        self._store = store
        self.lease = lease
        self._clock = clock
        self._batch = batch
        self._alive_since: float | None = None
        self._lead_until: dict[str, float] = {}
        self._errors = RateLimitedLog(log, logging.WARNING, every=60.0)
        self.adopted = 0

    @property
    def every(self) -> float:
        """How often the lease is renewed: four times per lease, so one slow round trip never lets it lapse."""
        return self.lease / 4

    def leading(self, job: str = REAPER_JOB) -> bool:
        """True while this process holds the job's lease, with a margin: it stops before another may start."""
        if not self._store.shared:
            return True
        return self._clock() < self._lead_until.get(job, float("-inf"))

    async def join(self) -> list[Turn]:
        """At start (and when rejoining after a lapse): take the lease and what is this process's own (with one
        process: everything unfinished). Other replicas' questions wait for `beat`, after a whole lease."""
        now = self._clock()
        if self._store.shared:
            await self._store.renew(now=now, lease=self.lease)
            self._alive_since = now
        return await self._store.adopt(now=now, mine=True, orphans=False)

    async def beat(self, resume: Resume, lapsed: Callable[[], None]) -> None:
        """One renewal: keep the lease, lead what is free, adopt what dead replicas left (handed to `resume`).
        `lapsed` is called when the lease had lapsed: the caller drops its work and joins again."""
        now = self._clock()
        try:
            kept = await self._store.renew(now=now, lease=self.lease)
        except Exception as exc:  # the database is away: nothing to adopt or lead until it is back
            self._alive_since = None
            self._lead_until.clear()
            self._errors("renewing this replica's lease failed (%s); retrying every %.1fs", type(exc).__name__,
                         self.every)
            return
        if not kept:
            log.warning("this replica's lease lapsed (stalled or cut off for over %.0fs): other replicas may have "
                        "taken its questions; resuming only what is still its own", self.lease)
            self._alive_since = now
            lapsed()
            return
        if self._alive_since is None:
            self._alive_since = now
        if await self._store.lead(REAPER_JOB, now=now, lease=self.lease):
            self._lead_until[REAPER_JOB] = now + self.lease * 0.75
        else:
            self._lead_until.pop(REAPER_JOB, None)
        if now - self._alive_since >= self.lease:
            await self._adopt(now, resume)

    async def _adopt(self, now: float, resume: Resume) -> None:
        while True:
            turns = await self._store.adopt(now=now, limit=self._batch)
            if turns:
                self.adopted += len(turns)
                log.info("adopted %d unfinished questions of replicas that stopped or died", len(turns))
                resume(turns)
            if len(turns) < self._batch:
                return

    async def run(self, stop: asyncio.Event, *, resume: Resume, lapsed: Callable[[], None]) -> None:
        """Renew until `stop` (only a shared store needs it); see `beat`."""
        if not self._store.shared:
            return
        while not stop.is_set():
            try:
                await self.beat(resume, lapsed)
            except Exception as exc:  # adopting or leading failed: the next round tries again
                self._errors("replica lease round failed: %s: %s", type(exc).__name__, exc)
            try:
                async with asyncio.timeout(self.every):
                    await stop.wait()
            except TimeoutError:
                pass
