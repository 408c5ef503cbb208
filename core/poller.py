"""One scheduler polls every pending request, within a global status-call budget, when answers are likely ready.

Each site has its own latency model (core/latency.py): a request is polled first when its answer is likely ready,
then every `interval` (0.95 s) while answers usually arrive, so p95 of the delay after ready stays under a second.
A 429 slows the whole budget down when it adapts (core/adaptive_budget.py).

A request is declared late only by a poll at or after its deadline that says "not done": under a burst above the
budget, requests nearing (or past) their deadline are polled first, and none expires without being looked at.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from core.adaptive_budget import AdaptiveBudget
from core.backoff import Backoff
from core.errors import UppzyError, UppzyRateLimited, UppzyRejected
from core.health import RateLimitedLog
from core.latency import LatencyModel
from core.ports import RateBudget
from core.ratelimit import LocalBudget
from core.supervisor import TaskSupervisor
from core.uppzy import UppzyClient
from core.uppzy_types import RequestStatus

__all__ = ["PendingRequest", "PollScheduler"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PendingRequest:
    """A request Uppzy accepted and we are waiting on."""

    turn_id: int
    request_id: str
    site_id: str
    submitted_at: float
    deadline: float
    due: float = 0.0
    last_age: float = 0.0
    polls: int = 0
    errors: int = 0
    late_polls: int = 0
    failing: int = 0  # polls in a row that learned nothing (errors)
    granted: float = 0.0  # monotonic time its call was granted by the budget
    planned: float = 0.0  # the age its first poll was planned for
    first_age: float = -1.0  # the age of its first poll, when that poll was on time and missed (else -1)


Done = Callable[[PendingRequest, RequestStatus], Awaitable[None]]
Expired = Callable[[PendingRequest, str], Awaitable[None]]


class PollScheduler:
    """Polls due requests oldest-likeliest first; never exceeds `rate` status calls per second."""

    def __init__(
        self,
        *,
        uppzy: UppzyClient,
        on_done: Done,
        on_expired: Expired,
        rate: float = 20.0,
        interval: float = 0.95,
        latency: LatencyModel | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 128,  # polls in flight at once (64 left a 5,000-burst's answers waiting: p95 +0.6 s)
        first_poll_floor: float = 0.25,
        error_backoff: Backoff | None = None,
        throttled_grace: float = 60.0,
        budget: RateBudget | None = None,
        batch: float = 0.0,
    ) -> None:
        self._uppzy = uppzy
        self._floor = first_poll_floor
        self._on_done = on_done
        self._on_expired = on_expired
        self.interval = interval
        # A template: every site learns its own latencies (a model of its own, from this one's prior).
        self.latency = latency or LatencyModel(floor=first_poll_floor, gap=interval)
        self._models: dict[str, LatencyModel] = {}
        self._clock = clock
        # No one-second window holds more than `rate` polls: of this process (LocalBudget), or of every replica
        # together when the store is shared (the composition root passes the store's budget).
        # An injected clock drives a local budget too (tests on virtual time); the real one uses monotonic time.
        self.budget = budget or LocalBudget(rate, clock=time.monotonic if clock is time.time else clock)
        self._items: dict[int, PendingRequest] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._concurrency = concurrency
        # Polls due within `batch` of a pass go in it, and passes come at most that often: under load one pass (and
        # one grant, a database round trip when the budget is shared) serves many polls instead of one each.
        self._batch = batch
        self._in_flight = 0
        self._tasks = TaskSupervisor("poller")
        self._errors = error_backoff or Backoff(attempts=0, initial=1.0, maximum=30.0)
        self._throttled_grace = throttled_grace  # past the deadline, 429s are waited out this long at most
        self._recent_429: deque[bool] = deque(maxlen=50)
        self._budget_errors = RateLimitedLog(log, logging.WARNING)
        self.status_calls = 0
        self.late_grants = 0  # granted polls that could not start in time and waited for a fresh grant
        self.rate_limited = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def rate(self) -> float:
        """Status calls per second the budget allows now (it may adapt)."""
        return self.budget.rate

    def model(self, site_id: str) -> LatencyModel:
        """What this process has learned about `site_id`'s answer latencies."""
        found = self._models.get(site_id)
        if found is None:
            found = self._models[site_id] = self.latency.fresh(gap=self.interval)
        return found

    def _first_offset(self, site_id: str) -> float:
        return max(self._floor, self.model(site_id).first_poll_offset())

    def add(self, turn_id: int, request_id: str, site_id: str, *, submitted_at: float, deadline: float) -> None:
        """Start watching a request; its first poll waits until an answer could plausibly be ready."""
        item = PendingRequest(turn_id, request_id, site_id, submitted_at, deadline)
        item.planned = self._first_offset(site_id)
        item.due = submitted_at + item.planned
        self._items[turn_id] = item
        self._push(item)
        self._wake.set()

    def _push(self, item: PendingRequest) -> None:
        heapq.heappush(self._heap, (item.due, next(self._seq), item.turn_id))

    def _next_gap(self, age: float, item: PendingRequest) -> float:
        """Poll every `interval` while answers usually arrive; back off past the slowest seen."""
        if age <= self.model(item.site_id).quantile(0.98) * 1.25:
            return self.interval
        item.late_polls += 1
        return min(5.0, self.interval * 1.5 ** item.late_polls)

    def _due_items(self, now: float, limit: int) -> list[PendingRequest]:
        """Up to `limit` requests due by `now`, earliest due first: a pass never walks a backlog of tens of
        thousands."""
        due: list[PendingRequest] = []
        first: dict[str, float] = {}  # each site's first-poll offset, worked out once per pass
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            when, _, turn_id = heapq.heappop(self._heap)
            item = self._items.get(turn_id)
            if item is None or item.due != when:
                continue
            if item.polls == 0:
                offset = first.get(item.site_id)
                if offset is None:
                    offset = first[item.site_id] = self._first_offset(item.site_id)
                if item.submitted_at + offset > now + 0.01:  # learned since it was added: its first poll moves later
                    item.planned = offset
                    item.due = item.submitted_at + offset
                    self._push(item)
                    continue
            due.append(item)
        return due

    async def step(self) -> float:
        """Poll what is due and affordable now; returns seconds until the next thing to do."""
        now = self._clock()
        horizon = now + self._batch  # due within the batch window: polled in this pass, a little early
        free = self._concurrency - self._in_flight
        if self._heap and self._heap[0][0] <= horizon and (free <= 0 or self.budget.wait_time() > 0):
            if free > 0 and isinstance(self.budget, AdaptiveBudget):
                self.budget.backlog()  # due polls wait for budget: it may grow
            return max(0.01, self.budget.wait_time()) if free > 0 else 0.02  # nothing can start now
        # Choose among the earliest-due requests only (a window twice what can start): under a binding budget or a
        # full set of polls in flight, with a backlog of thousands, a pass costs O(free · log n), not O(n log n), and
        # the window still puts deadlines (and likely answers) first within it.
        due = self._due_items(horizon, limit=max(16, 2 * free))
        # A call is granted only when a poll can start now (the budget counts it from the grant).
        try:
            affordable = await self.budget.grant(min(len(due), free)) if due else 0
        except Exception as exc:  # a shared budget lives in the database: while it is away, nobody polls
            for item in due:
                self._push(item)
            self._budget_errors("the status-poll budget cannot be granted (%s: %s); polls wait for it",
                                type(exc).__name__, exc)
            return 1.0
        over_budget = len(due) > affordable
        if over_budget:
            # Deadlines first (a request past or near its deadline is looked at before it could be declared late),
            # then where an answer is most likely waiting; the rest stay due for the next pass.
            horizon = max(10.0, len(due) / self.rate + self.interval)
            chosen = heapq.nlargest(affordable, due, key=lambda i: self._priority(i, now, horizon))
            picked = {id(i) for i in chosen}
            for item in due:
                if id(item) not in picked:
                    self._push(item)
            due = chosen
        granted = time.monotonic()
        for item in due:
            item.granted = granted
            item.due = float("inf")  # in flight
            self._in_flight += 1
            self._spawn(self._poll(item))
        if over_budget:
            return max(0.01, self.budget.wait_time())
        return max(0.01, min(1.0, (self._heap[0][0] - now) if self._heap else 1.0))

    def _priority(self, item: PendingRequest, now: float, horizon: float) -> tuple[float, float, float]:
        """Bigger is sooner: within `horizon` of the deadline, earliest deadline first; else likeliest answer."""
        if item.deadline - now < horizon:
            return (1.0, -item.deadline, 0.0)
        return (0.0, self.model(item.site_id).hazard(item.last_age, now - item.submitted_at), now - item.submitted_at)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; in-flight polls are left to finish or be resumed after restart."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                delay = await self.step()
            except Exception:  # never let one bad step end polling for everyone
                log.exception("poll scheduler step failed")
                delay = 1.0
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            rest = self._batch - (time.monotonic() - started)
            if rest > 0:  # woken sooner (a poll ended, a request added): let more gather for the next pass
                await asyncio.sleep(rest)

    async def _poll(self, item: PendingRequest) -> None:
        if time.monotonic() - item.granted > self.budget.valid:  # started too late for the window it was granted in
            self._in_flight -= 1
            self.late_grants += 1
            self._reschedule(item, self._clock())
            return
        try:
            outcome = await self._poll_once(item)
        except Exception:  # a poll must never lose its request: look again a little later
            log.exception("polling request_id=%s failed unexpectedly", item.request_id)
            outcome = self._failed_poll(item, self._errors.delay(item.errors + 1))
        finally:
            self._in_flight -= 1
            self._wake.set()
        if outcome is not None:
            await self._report(*outcome)

    async def _report(self, callback: Done | Expired, item: PendingRequest, result: object) -> None:
        """Hand a result to the relay outside any poll slot; if the relay fails, poll the request again."""
        try:
            await callback(item, result)  # type: ignore[arg-type]
        except Exception:
            log.exception("handling the result of request_id=%s failed; polling it again", item.request_id)
            self._items[item.turn_id] = item
            self._reschedule(item, self._clock() + 2.0)

    async def _poll_once(self, item: PendingRequest) -> tuple[Done | Expired, PendingRequest, object] | None:
        now = self._clock()
        age = now - item.submitted_at
        self.status_calls += 1
        item.polls += 1
        try:
            status = await self._uppzy.status(item.request_id, site_id=item.site_id, retry=False)
        except UppzyRateLimited as exc:
            # This request honours Retry-After; everyone pauses only when 429s are sustained, not stray.
            wait = exc.retry_after if exc.retry_after is not None else 2.0
            self.rate_limited += 1
            self._recent_429.append(True)
            if isinstance(self.budget, AdaptiveBudget):  # it slows down at once (once per holdoff) and pauses
                await self.budget.pause(wait)
            elif len(self._recent_429) >= 10 and sum(self._recent_429) / len(self._recent_429) >= 0.2:
                log.warning("sustained 429s from Uppzy status polls; pausing polling %.1fs", wait)
                await self.budget.pause(wait)
                self._recent_429.clear()
            return self._failed_poll(item, wait, throttled=True)
        except UppzyRejected as exc:  # 404 request unknown, 401/403 key trouble: it will not get better
            log.error("polling request_id=%s turn=%s rejected: %s", item.request_id, item.turn_id, exc)
            self._items.pop(item.turn_id, None)
            return self._on_expired, item, "rejected"
        except UppzyError:
            return self._failed_poll(item, self._errors.delay(item.errors + 1))
        self._recent_429.append(False)
        item.failing = 0
        self._learn(item, age, status.done)
        if status.done:
            self._items.pop(item.turn_id, None)
            return self._on_done, item, status
        item.last_age = age
        if now >= item.deadline:  # this poll was the last look: not done by the deadline
            self._items.pop(item.turn_id, None)
            return self._on_expired, item, "timeout"
        self._reschedule(item, min(now + self._next_gap(age, item), item.deadline))  # the last look at the deadline
        return None

    def _learn(self, item: PendingRequest, age: float, ready: bool) -> None:
        """Tell the site's model what this poll found; first and second polls only when made on schedule."""
        model = self.model(item.site_id)
        if item.polls == 1:
            on_time = age - item.planned <= max(0.25, 0.25 * self.interval)
            if on_time:
                model.first_poll_result(ready, age, item.planned)
            item.first_age = age if on_time and not ready else -1.0
        elif item.polls == 2 and item.first_age >= 0:  # (a late second poll is counted too: dropping it would
            # count only the first polls' hits, which pull the first poll earlier and earlier)
            model.second_poll_result(ready, item.planned)
        if ready and item.polls > 1:
            model.observe((item.last_age + age) / 2)

    def _failed_poll(self, item: PendingRequest, wait: float, *, throttled: bool = False
                     ) -> tuple[Expired, PendingRequest, str] | None:
        """A poll that learned nothing: look again after `wait`. Past the deadline, a second failure in a row
        (Uppzy down or stalled, not one stray 5xx) ends the wait; 429s (Uppzy throttles) are waited out a while."""
        item.errors += int(not throttled)
        item.failing += int(not throttled)
        now = self._clock()
        late = item.failing >= 2 if not throttled else now >= item.deadline + self._throttled_grace
        if now >= item.deadline and late:
            log.warning("request_id=%s: status polls fail past its deadline; giving up", item.request_id)
            self._items.pop(item.turn_id, None)
            return self._on_expired, item, "timeout"
        self._reschedule(item, now + wait)
        return None

    def _reschedule(self, item: PendingRequest, when: float) -> None:
        if item.turn_id not in self._items:
            return
        # Before the deadline nothing waits past it (a last look is due then); after it, failures wait their turn.
        item.due = min(when, item.deadline) if self._clock() < item.deadline else when
        self._push(item)
        self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro, name="poll")

    async def aclose(self) -> None:
        """Cancel in-flight polls and forget every request (they stay pending in the store; a start adds back what
        is still this process's)."""
        await self._tasks.cancel_all()
        self._items.clear()
        self._heap.clear()
        self._in_flight = 0
