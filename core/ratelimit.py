"""Call budgets of one process: a token bucket, and the strict per-second budget the poller and reaper spend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.ports import RateBudget

__all__ = ["LocalBudget", "TokenBucket", "acquire"]


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; a 429 can push it into debt."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> int:
        """Whole tokens that may be spent right now."""
        self._refill()
        return max(0, int(self._tokens))

    def take(self, count: int = 1) -> bool:
        """Spend tokens if there are enough; never blocks."""
        self._refill()
        if self._tokens >= count:
            self._tokens -= count
            return True
        return False

    def wait_time(self, count: int = 1) -> float:
        """Seconds until `count` tokens will be there."""
        self._refill()
        return max(0.0, (count - self._tokens) / self.rate)

    def retune(self, rate: float, *, burst: float) -> None:
        """Refill at `rate` from now on, saving up `burst` at most (tokens saved so far are kept up to it)."""
        self._refill()  # what was saved so far was earned at the old rate
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, burst)

    def penalize(self, seconds: float) -> None:
        """Stop spending for about `seconds` (the server said slow down)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate


class LocalBudget:
    """core.ports.RateBudget of one process: a bucket refilling at 90% of `rate` that saves up 10% at most, so no
    one-second window holds more than `rate` calls (a full bucket's burst plus a second of refill)."""

    valid = 0.25  # a granted call starts within this, or not at all (the window arithmetic assumes it starts now)

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self.bucket = TokenBucket(rate * 0.9, burst=max(1.0, rate * 0.1), clock=clock)
        self._batch = max(1, int(rate * 0.1))

    @property
    def rate(self) -> float:
        """Calls per second at most (core.adaptive_budget changes it as it learns the server's limit)."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if rate == self._rate:
            return
        self._rate = rate
        self.bucket.retune(rate * 0.9, burst=max(1.0, rate * 0.1))
        self._batch = max(1, int(rate * 0.1))

    async def grant(self, want: int) -> int:
        """Up to `want` tokens available now, spent."""
        count = min(want, self.bucket.available())
        if count > 0:
            self.bucket.take(count)
        return max(0, count)

    def wait_time(self) -> float:
        """Seconds until tokens are there: none now means waiting for about a tenth of a second's worth."""
        return 0.0 if self.bucket.available() > 0 else self.bucket.wait_time(self._batch)

    async def pause(self, seconds: float) -> None:
        """No tokens for about `seconds`."""
        self.bucket.penalize(seconds)


async def acquire(budget: RateBudget) -> None:
    """Wait for one call of `budget` and spend it."""
    while not await budget.grant(1):  # noqa: ASYNC110 - the wait is computed, not polled blindly
        await asyncio.sleep(max(0.005, budget.wait_time()))
