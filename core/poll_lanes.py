"""Status polls per Uppzy key: one PollScheduler (a lane) per key, each with its own budget and its own loop.

An Uppzy tenant's rate limit belongs to its key, so each key has its own adaptive status budget (with replicas, its
own shared ledger): a 429 on one key slows that key's polls only, and one key's backlog never holds up another's.
The deployment key's lane is the `default` one (the scheduler single-workspace mode has always had); lanes for
workspaces' own keys are made by `make_lane` (the composition root) on first use. Empty lanes beyond `max_lanes`
are dropped (their budget starts afresh next time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from core.credentials import UppzyCredentials
from core.poller import PollScheduler
from core.ports import RateBudget

__all__ = ["MAX_LANES", "PollLanes"]

log = logging.getLogger(__name__)
MAX_LANES = 256


class PollLanes:
    """Looks like one PollScheduler to the relay; `add(..., creds=)` picks the lane of the request's key."""

    def __init__(self, default: PollScheduler, make_lane: Callable[[UppzyCredentials], PollScheduler], *,
                 default_key: str | None, max_lanes: int = MAX_LANES) -> None:
        self.default = default
        self._make = make_lane
        self._default_key = default_key
        self._max = max_lanes
        self._lanes: dict[str, PollScheduler] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None

    # The default lane's view, as PollScheduler's (gauges, benchmarks and tests read these).
    @property
    def budget(self) -> RateBudget:
        """The deployment key's status budget."""
        return self.default.budget

    @property
    def rate(self) -> float:
        """The deployment key's status calls per second now."""
        return self.default.rate

    @property
    def status_calls(self) -> int:
        """Status calls made, every key together."""
        return self.default.status_calls + sum(lane.status_calls for lane in self._lanes.values())

    def __len__(self) -> int:
        return len(self.default) + sum(len(lane) for lane in self._lanes.values())

    def lane(self, creds: UppzyCredentials | None) -> PollScheduler:
        """The scheduler of `creds`' key (made, and started when running, on first use)."""
        if creds is None:
            return self.default
        kid = creds.key_id
        if kid == self._default_key:
            return self.default
        found = self._lanes.get(kid)
        if found is None:
            self._trim()
            found = self._lanes[kid] = self._make(creds)
            if self._stop is not None:
                self._start(kid, found)
        return found

    def lanes(self) -> dict[str, PollScheduler]:
        """Every key's lane by key fingerprint, besides the default."""
        return dict(self._lanes)

    def add(self, turn_id: int, request_id: str, site_id: str, *, submitted_at: float, deadline: float,
            creds: UppzyCredentials | None = None) -> None:
        """PollScheduler.add on the lane of the key the request was submitted with."""
        self.lane(creds).add(turn_id, request_id, site_id, submitted_at=submitted_at, deadline=deadline)

    def _trim(self) -> None:
        if len(self._lanes) < self._max:
            return
        for kid in [k for k, lane in self._lanes.items() if not len(lane)][: len(self._lanes) - self._max + 1]:
            del self._lanes[kid]
            task = self._loops.pop(kid, None)
            if task is not None:
                task.cancel()

    def _start(self, kid: str, lane: PollScheduler) -> None:
        assert self._stop is not None
        self._loops[kid] = asyncio.create_task(lane.run(self._stop), name="uppzy-poller-lane")

    async def run(self, stop: asyncio.Event) -> None:
        """Run every lane's loop until `stop` is set (lanes made meanwhile start at once)."""
        self._stop = stop
        for kid, lane in self._lanes.items():
            self._start(kid, lane)
        try:
            await self.default.run(stop)
        finally:
            self._stop = None
            loops = list(self._loops.values())
            self._loops.clear()
            for task in loops:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*loops, return_exceptions=True)

    async def aclose(self) -> None:
        """PollScheduler.aclose of every lane."""
        await asyncio.gather(self.default.aclose(), *(lane.aclose() for lane in self._lanes.values()))
