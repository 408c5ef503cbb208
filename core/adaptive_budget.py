"""A status-call budget that learns Uppzy's undocumented limit: AIMD between a floor and UPPZY_POLL_RATE (a ceiling).

Wraps any core.ports.RateBudget and sets the inner budget's `rate` before each call: LocalBudget retunes its bucket,
PostgresBudget sends the rate with every grant, so on a shared database each replica's ledger call is bounded by
the rate it has learned (replicas see the same 429s and backlog, so they learn about the same rate; the ledger
never lets the total exceed the rate of whichever replica asks).

Growth happens only while there is a backlog (a grant gave less than was asked: due polls wait for budget) and no
429 came in the last `holdoff` seconds:
- Slow start (as TCP's), until the first 429: the rate doubles every `DOUBLING` (0.25) seconds of backlog, so a
  sudden burst gets the budget it needs within about a second (20/s to 200/s in 0.83 s) instead of waiting for an
  additive ramp; doubling from below the limit overshoots it at most twofold, for the moment the first 429 takes.
- Additive after it: quickly (50% of the rate per second) up to 90% of the rate at which the last 429 came (the
  last known limit), slowly (0.5% per second) above it, probing.
- Multiplicative decrease on a 429: the calls granted in the last second (between half the rate and the rate) times
  `decrease`, once per `holdoff` (the 429s of calls already granted at the old rate count once), and the whole
  budget pauses for Retry-After. The first 429 (ending slow start) starts from what was granted in the last second
  alone: a rate that just doubled has not been spent for a whole second, and what was spent is what the limit let
  through.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from core.ports import RateBudget

__all__ = ["AdaptiveBudget"]


class AdaptiveBudget:
    """core.ports.RateBudget whose rate adapts (see the module docstring); `rate` is the current one."""

    FAST = 0.5  # share of the rate added per second of backlog below the last known limit
    SLOW = 0.005  # ... above it
    KNOWN = 0.9  # the last known limit: this share of the rate at which the last 429 came
    DOUBLING = 0.25  # slow start (before any 429): the rate doubles every this many seconds of backlog

    def __init__(self, inner: RateBudget, *, ceiling: float, floor: float | None = None, start: float | None = None,
                 decrease: float = 0.7, holdoff: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling <= 0:
            raise ValueError("ceiling must be positive")
        self.inner = inner
        self.ceiling = ceiling
        self.floor = min(ceiling, floor if floor is not None else 1.0)
        self._rate = min(ceiling, max(self.floor, start if start is not None else 20.0))
        self._start = self._rate
        self.decrease = decrease
        self.holdoff = holdoff
        self._clock = clock
        self._known = ceiling  # below this the rate grows fast
        self.slow_start = True  # until the first 429: grow multiplicatively
        self._at = clock()
        self._backlog = False
        self._granted: deque[tuple[float, int]] = deque()  # the grants of the last second
        self._calm_from = float("-inf")  # no increase (nor a second decrease) before this
        self.decreases = 0
        inner.rate = self._rate

    @property
    def rate(self) -> float:
        """The status calls per second currently allowed (the `uppzy_bot_poll_rate` gauge)."""
        return self._rate

    @property
    def valid(self) -> float:
        """As the inner budget's."""
        return self.inner.valid

    def _advance(self) -> None:
        now = self._clock()
        elapsed = min(1.0, max(0.0, now - max(self._at, self._calm_from)))
        self._at = now
        if self._backlog and now >= self._calm_from and self._rate < self.ceiling:
            if self.slow_start:
                grown = self._rate * 2.0 ** (min(elapsed, self.DOUBLING) / self.DOUBLING)  # one doubling a step
            elif self._rate < self._known:  # fast, but not past the last known limit
                grown = min(self._known, self._rate + max(0.1, self.FAST * self._rate) * elapsed)
            else:
                grown = self._rate + max(0.1, self.SLOW * self._rate) * elapsed
            self._rate = min(self.ceiling, grown)
            if self._rate >= self._known * 1.2:
                self._known = self.ceiling  # the limit went up: grow fast again
        self.inner.rate = self._rate

    async def grant(self, want: int) -> int:
        """The inner budget's grant at the current rate; a shortfall means a backlog (grow while it lasts)."""
        self._advance()
        granted = await self.inner.grant(want)
        self._backlog = granted < want
        if granted > 0:
            self._granted.append((self._clock(), granted))
        return granted

    def _last_second(self, now: float) -> int:
        while self._granted and self._granted[0][0] <= now - 1.0:
            self._granted.popleft()
        return sum(count for _, count in self._granted)

    def wait_time(self) -> float:
        """As the inner budget's."""
        return self.inner.wait_time()

    def backlog(self) -> None:
        """Due polls are waiting for budget (told by the poller when it does not even ask: none is there)."""
        self._advance()
        self._backlog = True

    async def pause(self, seconds: float) -> None:
        """Uppzy said slow down (a 429 with Retry-After `seconds`): decrease and pause, once per holdoff."""
        now = self._clock()
        self._advance()
        if now < self._calm_from:
            return
        # The limit is about what was really spent when the 429 came (a budget need not spend its whole rate), but a
        # 429 while little is spent (a stray one, or another client's load) takes the rate down by half at most.
        spent = float(self._last_second(now))
        # Ending slow start the rate may just have doubled past what was ever spent: what was spent is the limit,
        # unless that is below the starting rate (a stray 429 at low load, not a limit found).
        stray = not self.slow_start or spent < self._start
        base = min(self._rate, max(self.floor, spent, 0.5 * self._rate if stray else 0.0))
        self.slow_start = False
        self._known = max(self.floor, base * self.KNOWN)
        self._rate = max(self.floor, base * self.decrease)
        self._calm_from = now + max(self.holdoff, seconds)
        self.decreases += 1
        self.inner.rate = self._rate
        if seconds > 0:
            await self.inner.pause(seconds)
