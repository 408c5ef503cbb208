"""Whether the store can be written right now: failed writes set it, successful ones clear it, and it is logged
loudly but at a bounded rate (a full disk must not become one traceback per message)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog", "StoreHealth", "StoreUnavailable"]

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store cannot record anything right now (disk full, read-only, file gone); the text says why."""


class RateLimitedLog:
    """One log line at most every `every` seconds; the next one says how many were held back in between."""

    def __init__(self, logger: logging.Logger, level: int, *, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._level = level
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def __call__(self, message: str, *args: object) -> bool:
        """Log `message % args` unless a line went out less than `every` seconds ago; True if it was logged."""
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._held += 1
            return False
        held, self._held, self._last = self._held, 0, now
        if held:
            message += f" ({held} more since the last report)"
        self._logger.log(self._level, message, *args)
        return True


class StoreHealth:
    """Readiness of the store: a write failed and none succeeded since, or the database file is not the one opened.

    A missing or replaced file is sticky: writes still succeed on the old (deleted) file, so only a later identity
    check that finds the original file again clears it.
    """

    def __init__(self, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.problem: str | None = None  # the last failed write, until a write succeeds
        self.moved: str | None = None  # the database file was deleted or replaced while open
        self.failures = 0
        self._write_log = RateLimitedLog(log, logging.ERROR, every=every, clock=clock)
        self._file_log = RateLimitedLog(log, logging.ERROR, every=every, clock=clock)

    @property
    def ok(self) -> bool:
        """True when the last write succeeded and the file is still the one opened."""
        return self.problem is None and self.moved is None

    @property
    def reason(self) -> str | None:
        """Why the store is not ok, in one line (None when it is)."""
        return self.moved or self.problem

    def failed(self, problem: str) -> None:
        """A write failed: readiness fails until one succeeds; logged at ERROR at most once a minute."""
        self.failures += 1
        self.problem = problem
        self._write_log("the database cannot be written (%s): questions are refused with an apology and /readyz "
                        "fails until it can; %d failed write(s) so far", problem, self.failures)

    def succeeded(self) -> None:
        """A write went through: the store is writable again."""
        if self.problem is not None:
            log.warning("the database can be written again (after %d failed write(s))", self.failures)
        self.problem = None
        self.failures = 0

    def file_check(self, problem: str | None) -> None:
        """The outcome of comparing the open database with the file at its path now (None: still the same)."""
        if problem is None:
            if self.moved is not None:
                log.warning("the database file is back in place")
            self.moved = None
            return
        self.moved = problem
        self._file_log("%s: restore it and restart the bot; until then /readyz fails and what is recorded now "
                       "is lost at the next start", problem)
