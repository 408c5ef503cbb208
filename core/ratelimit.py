"""A token bucket: the poller's global status-call budget and the reaper's session-close pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


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

    async def acquire(self) -> None:
        """Wait for a token and spend it."""
        while not self.take():  # noqa: ASYNC110 - the wait is computed, not polled blindly
            await asyncio.sleep(max(0.005, self.wait_time()))

    def penalize(self, seconds: float) -> None:
        """Stop spending for about `seconds` (the server said slow down)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate
