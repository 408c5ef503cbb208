"""What keeps slow or hostile HTTP clients from exhausting the bot: a connection cap, header and body deadlines,
and log lines that a flood of bad requests cannot multiply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionGuard", "LogLimiter", "install_log_limits"]

log = logging.getLogger("bots.web")

# Loggers a flood of bad requests writes to: aiohttp's per-request errors, asyncio's accept() errors, ours.
FLOOD_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio", "bots.web")


class LogLimiter(logging.Filter):
    """At most `burst` records per `window` seconds pass; the rest are counted and reported in one line later.

    With `one_line`, a record's traceback is replaced by the exception's type and first 120 characters, so one
    bad request costs one short line (aiohttp logs a full traceback for each malformed request).
    """

    def __init__(self, *, burst: int = 20, window: float = 60.0, one_line: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.one_line, self.clock = burst, window, one_line, clock
        self._started = clock()
        self._passed = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now - self._started >= self.window:
            if self.suppressed:
                record.msg = f"{record.msg} [{self.suppressed} similar lines suppressed in the last " \
                             f"{self.window:.0f}s]"
            self._started, self._passed, self.suppressed = now, 0, 0
        if self._passed >= self.burst:
            self.suppressed += 1
            return False
        self._passed += 1
        if self.one_line and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {_short(str(exc))}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def _short(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def install_log_limits(**kwargs: Any) -> None:
    """Put one LogLimiter on each flood-prone logger (once per process); asyncio's keep their tracebacks."""
    for name in FLOOD_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, LogLimiter) for f in logger.filters):
            logger.addFilter(LogLimiter(**{"one_line": name != "asyncio", **kwargs}))


class ConnectionGuard:
    """Wraps each connection's aiohttp protocol: caps how many are open, and closes one whose request headers
    do not arrive within `header_timeout` (counted from the connect, and again after each response).

    At the cap, the oldest connection still waiting for headers is closed to make room (a stalled client, most
    likely); if every open connection is busy in a handler, the new one is closed at once instead.
    """

    def __init__(self, *, max_connections: int = 256, header_timeout: float = 10.0) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._open: dict[Any, _Guarded] = {}  # transport -> wrapper, in connect order
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._open)

    def factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server wrapping the one aiohttp would use."""
        return lambda: _Guarded(self, make())

    def headers_received(self, transport: Any) -> None:
        """A request's headers are in (its handler runs): no header deadline while it is handled."""
        conn = self._open.get(transport)
        if conn is not None:
            conn.disarm()

    def request_done(self, transport: Any) -> None:
        """A handler returned: the next request on this connection gets a fresh header deadline."""
        conn = self._open.get(transport)
        if conn is not None:
            conn.arm()

    def _admit(self, conn: _Guarded) -> bool:
        if len(self._open) >= self.max_connections:
            waiting = next((c for c in self._open.values() if c.waiting), None)
            if waiting is None:
                self.refused += 1
                log.warning("http: %d connections open (the limit); refusing a new one", len(self._open))
                return False
            self.evicted += 1
            log.warning("http: %d connections open (the limit); closing the oldest one still sending its request",
                        len(self._open))
            waiting.abort()
        self._open[conn.transport] = conn
        return True

    def _closed(self, conn: _Guarded) -> None:
        self._open.pop(conn.transport, None)


class _Guarded(asyncio.Protocol):
    """One connection: forwards everything to aiohttp's RequestHandler while the guard keeps its deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard, self.inner = guard, inner
        self.transport: Any = None
        self.admitted = False
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> bool:
        """True while no request of this connection is being handled (it owes us headers)."""
        return self._deadline is not None

    def arm(self) -> None:
        self.disarm()
        self._deadline = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expired)

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self.guard.timed_out += 1
        log.info("http: closed a connection that sent no complete request within %.0fs", self.guard.header_timeout)
        self.abort()

    def abort(self) -> None:
        self.disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.guard._admit(self):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.admitted = True
        self.arm()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.admitted:
            self.admitted = False
            self.guard._closed(self)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()
