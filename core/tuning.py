"""Knobs of the relay that are not operator settings: paces, limits and retry schedules (tests shrink them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.backoff import Backoff
from core.latency import LatencyModel
from core.platforms import WORKING_AFTER

__all__ = ["Tuning"]


@dataclass(frozen=True)
class Tuning:
    """Defaults are the production values; the composition root passes one Tuning to every component."""

    poll_interval: float = 0.95  # re-poll gap while answers usually arrive (p95 of the delay after ready < 1 s)
    poll_rate_start: float = 20.0  # the adaptive status budget starts here (at most UPPZY_POLL_RATE, its ceiling)
    poll_rate_floor: float = 1.0  # ... and never goes below this
    first_poll_floor: float = 0.25  # never poll a request sooner than this after submitting it
    poll_batch: float = 0.05  # polls due within this go in one pass (one budget grant); passes at most this often
    # Async submits in flight at once: as many as the Uppzy client's pooled connections (a 5,000-mention burst
    # reached Uppzy 0.3 s sooner at p50 than with 32, bench/perf.py).
    submit_concurrency: int = 100
    max_chars: int = 4000  # longest question taken
    recovery_grace: float = 30.0  # after downtime, look at a pending request at least once within this
    feedback_takeover: float = 120.0  # a rating claim left `sending` this long (a crash mid-call) may be retaken
    delivery: Backoff = field(default_factory=lambda: Backoff(attempts=9, initial=1.0, maximum=30.0))  # ~2 min
    redeliver_every: float = 300.0  # an answer still refused after `delivery` is posted again this much later
    redeliver_for: float = 86400.0  # ... until this long after the question, then one failure notice
    sweep_every: float = 60.0  # how often kept answers are looked at (and after a restart)
    redelivery: Backoff = field(default_factory=lambda: Backoff(attempts=3, initial=2.0, maximum=10.0))  # per sweep
    notice: Backoff = field(default_factory=lambda: Backoff(attempts=3, initial=1.0, maximum=3.0, base=3.0))
    poll_errors: Backoff = field(default_factory=lambda: Backoff(attempts=0, initial=1.0, maximum=30.0))
    # A state write the store refused (disk full) is tried again on this schedule until it lands.
    store_writes: Backoff = field(default_factory=lambda: Backoff(attempts=0, initial=0.5, maximum=10.0))
    # The ⏳ (Slack) / typing (Discord) only for an answer not posted this long after its question was recorded:
    # a fast answer is its own sign of life and saves the two calls that show and clear the indicator.
    working_after: float = WORKING_AFTER  # 2 s: see README, "How it behaves"
    latency: LatencyModel | None = None  # prior answer latencies; None learns from the production prior
