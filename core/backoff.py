"""One backoff schedule, run by stamina: the relay's delivery and notice retries and the poller's re-poll delays."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stamina

__all__ = ["Backoff"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential waits `initial * base**(n-1)` capped at `maximum`, plus up to `jitter` seconds; at most
    `attempts` tries and (when set) `budget` seconds in all."""

    attempts: int = 9
    initial: float = 1.0
    maximum: float = 30.0
    base: float = 2.0
    jitter: float = 0.0
    budget: float | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), the formula stamina uses."""
        wait = min(self.maximum, self.initial * self.base ** max(0, attempt - 1))
        return wait + (random.uniform(0, self.jitter) if self.jitter else 0.0)

    @property
    def total(self) -> float:
        """Longest time spent waiting between the attempts (no jitter), e.g. how long a delivery keeps trying."""
        return sum(min(self.maximum, self.initial * self.base ** n) for n in range(self.attempts - 1))

    def retrying(self, on: Any) -> Any:
        """stamina's retry context on this schedule; `on` is exception types or a backoff hook."""
        return stamina.retry_context(on=on, attempts=self.attempts, timeout=self.budget, wait_initial=self.initial,
                                     wait_max=self.maximum, wait_exp_base=self.base, wait_jitter=self.jitter)

    async def run(self, call: Callable[[], Awaitable[T]], *, what: str,
                  on: type[Exception] | tuple[type[Exception], ...] = Exception) -> T:
        """Await `call()` until it succeeds or attempts run out (then its last error is raised); logs each failure."""
        attempt = 0
        async for retry in self.retrying(on):
            with retry:
                attempt += 1
                try:
                    return await call()
                except on as exc:
                    log.warning("%s attempt=%d failed: %s", what, attempt, type(exc).__name__)
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
