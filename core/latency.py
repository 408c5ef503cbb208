"""What we have learned about how long Uppzy takes to answer, to poll when answers are likely ready."""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["LatencyModel"]


class LatencyModel:
    """Empirical distribution of recent answer latencies (seconds), with a prior until enough are seen."""

    # First-poll controller: a miss pushes the first poll later a little, a hit pulls it earlier more, so about
    # a quarter of first polls find the answer ready (ln(1.01) * misses = -ln(0.97) * hits at equilibrium).
    MISS_STEP = 1.01
    HIT_STEP = 0.97

    def __init__(self, *, window: int = 500, prior: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 9.0),
                 floor: float = 0.25) -> None:
        self._window = window
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._prior = sorted(prior)
        self._floor = floor
        self._first = max(floor, self._prior[0])

    def observe(self, seconds: float) -> None:
        """Record one latency (the midpoint of the last 'not ready' and the first 'ready' poll)."""
        seconds = max(0.0, seconds)
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)
        if len(self._recent) > self._window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def first_poll_offset(self) -> float:
        """How long after submit to poll a request the first time: tuned by how often first polls hit."""
        return self._first

    def first_poll_result(self, ready: bool) -> None:
        """Tell the controller whether a first poll found the answer ready."""
        ceiling = max(self._floor, self.quantile(0.5))
        step = self.HIT_STEP if ready else self.MISS_STEP
        self._first = min(ceiling, max(self._floor, self._first * step))

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
