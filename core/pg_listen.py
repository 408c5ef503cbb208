"""Settings change notices between replicas: LISTEN on one dedicated connection, kept up with backoff.

Writers send `pg_notify` in the same statement as the write (core/postgres_store.py), so a notice means a committed
change. A lost connection may have missed notices: the callback hears (None, None) and caches start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from core.backoff import Backoff
from core.health import RateLimitedLog
from core.pg_schema import SETTINGS_CHANNEL

__all__ = ["SettingsListener"]

log = logging.getLogger(__name__)
CHECK_EVERY = 30.0  # seconds between checks that the listening connection still answers

Changed = Callable[[str | None, str | None], None]
RECONNECT = Backoff(initial=0.2, maximum=10.0, jitter=0.1)  # waits between attempts to listen again


class SettingsListener:
    """One background task holding a LISTEN connection; never raises into its owner, logs at a bounded rate."""

    def __init__(self, url: str, changed: Changed, *, connect_timeout: float,
                 backoff: Backoff = RECONNECT) -> None:
        self._url = url
        self._changed = changed
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._log = RateLimitedLog(log, logging.WARNING)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Start listening; returns once the first connection is up or its first attempt failed."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._keep(ready), name="uppzy-settings-listener")
        await asyncio.wait([ready, self._task], timeout=self._connect_timeout + 1,
                           return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def _tell(self, platform: str | None, workspace: str | None) -> None:
        try:
            self._changed(platform, workspace)
        except Exception:  # a broken callback must not stop the notices
            log.exception("settings change callback failed")

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        platform, _, workspace = payload.partition("\t")
        self._tell(platform, workspace)

    async def _alive(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone: closed (`lost`), or silently dead (a failover, a dropped NAT entry:
        no close ever arrives), found by a trivial query every `CHECK_EVERY` seconds that must answer in time."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_EVERY):
                    await lost.wait()
                    return
            await conn.fetchval("SELECT 1", timeout=self._connect_timeout)

    async def _keep(self, ready: asyncio.Future[None]) -> None:
        attempt = 0
        while not self._stopped:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=self._connect_timeout)
                conn.add_termination_listener(lambda _c, done=lost: done.set())
                await conn.add_listener(SETTINGS_CHANNEL, self._notified)
                if attempt:
                    self._tell(None, None)  # changes may have been missed while not listening
                    log.info("settings change notices are back")
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                await self._alive(conn, lost)
                self._log("settings change notices: the listening connection was lost; reconnecting")
            except Exception as exc:  # whatever ends it, listening starts again (and the caches are dropped)
                self._log("settings change notices stopped (%s); retrying", type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            if not ready.done():
                ready.set_result(None)
            if self._stopped:
                return
            attempt += 1
            self._tell(None, None)
            await asyncio.sleep(self._backoff.delay(attempt))
