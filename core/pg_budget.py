"""A call budget shared by every process on one PostgreSQL database: a ledger of grants on the database's clock.

`grant(want)` is one round trip to `uppzy_budget_grant` (core/pg_schema.py), which under an advisory lock per
budget counts the tokens of grants whose calls may still fall in the current sliding window and grants what is left.
A grant is valid for `VALID` seconds (its calls start at once), so it counts until `VALID + 1` s after it was
made: at most `rate` calls start in any one-second window across processes (for rate < 1: one call per 1/rate s).
Demand-driven: an idle replica takes nothing, a busy one may take the whole budget.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["VALID", "PostgresBudget"]

VALID = 0.25  # seconds in which the calls of one grant start (later: not at all); ~1/(1 + VALID) of the rate is
# usable at saturation
_GRANT = "SELECT granted, wait FROM uppzy_budget_grant($1, $2, $3, $4, $5)"


class PostgresBudget:
    """core.ports.RateBudget of every process sharing the database (see the module docstring)."""

    def __init__(self, name: str, rate: float, fetchrow: Callable[..., Awaitable[Any]], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.name = name
        self.rate = rate
        self.valid = VALID
        self._fetchrow = fetchrow  # the store's health-reporting fetchrow
        self._clock = clock
        self._hint = 0.0
        self._hint_at = clock()
        self._hint_rate = rate  # the rate the hint was worked out at

    async def _ask(self, want: int, pause: float | None) -> int:
        rate = float(self.rate)
        row = await self._fetchrow(_GRANT, self.name, want, rate, VALID, pause)
        self._hint, self._hint_at, self._hint_rate = float(row[1]), self._clock(), rate
        return int(row[0])

    async def grant(self, want: int) -> int:
        """Up to `want` calls that may start now, spent in the shared ledger (0 when the window is full)."""
        return await self._ask(max(0, int(want)), None)

    def wait_time(self) -> float:
        """What the last grant said about when tokens come back, less the time since (0: ask now). A rate raised
        since (the adaptive budget growing through a burst) may have room now: ask again rather than wait out a hint
        worked out at the old rate (it can be a whole window, 1.25 s, while the rate doubles every 0.25 s)."""
        if self.rate > self._hint_rate:
            return 0.0
        return max(0.0, self._hint - (self._clock() - self._hint_at))

    async def pause(self, seconds: float) -> None:
        """Fill the window for about `seconds` in every process (the ledger gets a full window's grant)."""
        await self._ask(0, max(0.0, float(seconds)))
