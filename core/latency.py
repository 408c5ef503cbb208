"""What we have learned about how long Uppzy takes to answer (one model per site), to poll when answers are ready."""

from __future__ import annotations

import bisect
from collections import deque

from cachetools import LRUCache

__all__ = ["LatencyModel"]


class LatencyModel:
    """Empirical distribution of recent answer latencies (seconds), with a prior until enough are seen, and the age
    of a request's first poll.

    Polls follow a fixed grid: the first at `first_poll_offset()`, then every `gap` seconds. An answer ready before
    `first - gap` waits longer than one gap; the first poll is placed so that about `SLACK` of answers do (the rest
    wait less than a gap: with gap 0.95 s, p95 of the delay after ready stays under a second with the fewest polls).
    That share cannot be seen (a first poll that finds the answer says only "ready by now"), so it is estimated by
    mirroring: answers found by the first poll minus answers found one gap later (by the second poll) is about the
    share ready before `first - gap` where the density is smooth. The controller moves the first poll earlier when
    that estimate is above SLACK, later when below; it starts one gap after the prior's Q(SLACK), never goes below
    the floor, and never past Q(0.95) of the latencies seen (see _bounds).
    """

    SLACK = 0.03  # share of answers allowed to wait longer than one re-poll gap after they are ready
    STEP = 0.025  # seconds the first poll moves per first-poll outcome (scaled by the gap)

    def __init__(self, *, window: int = 500, prior: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 9.0),
                 floor: float = 0.25, gap: float = 0.95) -> None:
        self._window = window
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._prior = sorted(prior)
        self._floor = floor
        self.gap = gap
        self._first = self.quantile(self.SLACK) + gap  # where the controller starts: one gap after the earliest
        self._groups: LRUCache[float, float] = LRUCache(maxsize=1024)  # planned first poll -> its outcomes' push

    def fresh(self, *, gap: float | None = None) -> LatencyModel:
        """A new model with this one's prior and settings and nothing learned (one per site)."""
        return LatencyModel(window=self._window, prior=tuple(self._prior), floor=self._floor,
                            gap=self.gap if gap is None else gap)

    def observe(self, seconds: float) -> None:
        """Record one latency (the midpoint of the last 'not ready' and the first 'ready' poll)."""
        seconds = max(0.0, seconds)
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)
        if len(self._recent) > self._window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        if len(self._sorted) == 20 and len(self._recent) == 20:  # the prior gives way: start again from what is seen
            self._first = max(self._first, self.quantile(self.SLACK) + self.gap)

    def first_poll_offset(self) -> float:
        """How long after submit to poll a request the first time (see the class docstring)."""
        low, high = self._bounds()
        return min(high, max(low, self._first))

    def _bounds(self) -> tuple[float, float]:
        """Where the first poll may be: from the floor to where 95% of the latencies seen are ready.

        Only latencies bracketed by a miss and a hit one gap apart are seen: a first poll's hit says only "ready by
        now". Recording hits too (at one gap earlier) let a burst larger than the window fill it with one value, so
        that its quantiles collapsed onto it and dragged the first poll along; and the seen latencies, all above
        some first poll, cannot bound it from below (a lower bound from them would ratchet it later)."""
        return self._floor, max(self._floor, self.quantile(0.95))

    def first_poll_result(self, ready: bool, age: float | None = None, planned: float | None = None) -> None:
        """A first poll made on time (at about `first_poll_offset()`, `age` seconds after submit) found the answer
        ready or not. A hit is not recorded as a latency: it says only "ready by now" (see _bounds)."""
        if ready:
            self._move(-(1.0 - self.SLACK), planned)

    def second_poll_result(self, ready: bool, planned: float | None = None) -> None:
        """The poll one gap after a first poll made on time (which missed) found the answer ready or not."""
        self._move(1.0 + self.SLACK if ready else self.SLACK, planned)

    def _move(self, units: float, planned: float | None) -> None:
        step = self.STEP * max(0.2, self.gap)
        low, high = self._bounds()
        delta = units * step
        if planned is not None:
            # Requests planned alike (a burst polled at once) move the first poll a quarter gap at most, whatever the
            # order their outcomes come in: the group's running total is clamped, and only the change of the clamped
            # total is applied. (Clamping the running position instead let a burst's second polls, which always
            # come after its first polls, win every time: the first poll drifted a quarter gap later per burst.)
            edge = 0.15 * self.gap
            key = round(planned, 3)
            before = self._groups.get(key, 0.0)
            self._groups[key] = before + delta
            delta = min(edge, max(-edge, before + delta)) - min(edge, max(-edge, before))
        moved = min(high, max(low, self._first + delta))
        if moved != self._first:
            # Requests planned from now on at this value are a new group: an older one planned here (the first poll
            # came back to where it was) must not hold their outcomes at its clamp.
            self._groups.pop(round(moved, 3), None)
        self._first = moved

    @property
    def samples(self) -> int:
        """How many real observations back the model."""
        return len(self._sorted)

    def _data(self) -> list[float]:
        return self._sorted if len(self._sorted) >= 20 else sorted(self._sorted + self._prior)

    def cdf(self, age: float) -> float:
        """Share of answers ready by `age` seconds after submit."""
        data = self._data()
        return bisect.bisect_right(data, age) / len(data)

    def quantile(self, q: float) -> float:
        """The age by which a share q of answers is ready."""
        data = self._data()
        index = min(len(data) - 1, max(0, int(q * len(data))))
        return data[index]

    def hazard(self, last_age: float, age: float) -> float:
        """Chance that an answer not ready at `last_age` is ready at `age` (how well a poll now would pay)."""
        before = self.cdf(last_age)
        if before >= 1.0:
            return 1.0
        return max(0.0, (self.cdf(age) - before) / (1.0 - before))
