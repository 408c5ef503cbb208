"""How many ⏳ indicators a workspace may get: Slack rate-limits reactions per workspace, so a burst is not shown."""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import LRUCache

__all__ = ["ProgressBudget"]

# reactions.remove is Tier 2 (20+ per minute per workspace) and reactions.add Tier 3 (50+): each ⏳ shown costs
# one of each, so the pair is held to the lower tier, with its burst.
PER_MINUTE = 20.0
BURST = 20.0


class ProgressBudget:
    """A token bucket per workspace: `take` says whether one more ⏳ (and its removal) fits Slack's limits now."""

    def __init__(self, per_minute: float = PER_MINUTE, burst: float = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._clock = clock
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=10_000)  # workspace -> (tokens, at)

    def take(self, workspace: str) -> bool:
        """Spend one token of `workspace` if it has one."""
        now = self._clock()
        tokens, at = self._buckets.get(workspace, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[workspace] = (tokens, now)
            return False
        self._buckets[workspace] = (tokens - 1.0, now)
        return True
