"""Which Uppzy failures are worth another attempt, per the retry matrix of uppzy-m2m-api.md §12."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

from core.backoff import Backoff
from core.errors import UppzyError, UppzyRateLimited, UppzyTimeout, UppzyUnavailable

__all__ = ["Repeatable", "RetryPolicy", "backoff_hook", "parse_retry_after"]


class Repeatable(Enum):
    """How safe an operation is to send again."""

    SAFE = "safe"  # reads, feedback, session close: retry 429, 5xx, timeouts and network errors
    ONCE = "once"  # chat submit: retry 429/5xx and unsent requests, never a request that may have landed
    NEVER = "never"  # caller handles it (the poll scheduler re-polls on its own schedule)


@dataclass(frozen=True, slots=True)
class RetryPolicy(Backoff):
    """The backoff of Uppzy calls: jittered, capped in attempts and in total seconds (`budget`)."""

    attempts: int = 4
    initial: float = 0.5
    maximum: float = 8.0
    jitter: float = 0.5
    budget: float | None = 30.0

    @classmethod
    def no_wait(cls, attempts: int = 4) -> RetryPolicy:
        """A policy for tests: same decisions, (almost) no sleeping."""
        return cls(attempts=attempts, budget=5.0, initial=0.001, maximum=0.002, jitter=0.0)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a Retry-After header given as delta-seconds or an HTTP date; None when absent or junk."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_hook(repeatable: Repeatable, deadline: float) -> Callable[[Exception], bool | float]:
    """Build stamina's backoff hook: False = give up, True = default backoff, float = wait exactly that."""

    def decide(exc: Exception) -> bool | float:
        if repeatable is Repeatable.NEVER or not isinstance(exc, UppzyError):
            return False
        if isinstance(exc, UppzyTimeout) or (isinstance(exc, UppzyUnavailable) and exc.maybe_processed):
            return repeatable is Repeatable.SAFE
        if isinstance(exc, UppzyRateLimited):
            if exc.retry_after is None:
                return True
            # A Retry-After that outlives the budget means: stop now and tell the caller.
            return exc.retry_after if time.monotonic() + exc.retry_after < deadline else False
        return isinstance(exc, UppzyUnavailable)

    return decide
