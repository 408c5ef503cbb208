"""Bringing the platform connections up: an operator's mistake ends start-up (exit 2), an outage is retried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.backoff import Backoff
from core.config import ConfigError
from core.supervisor import TaskSupervisor

if TYPE_CHECKING:
    from bots.runner import PlatformBot

__all__ = ["Connector"]

log = logging.getLogger(__name__)

RETRY = Backoff(attempts=1_000_000, initial=2.0, maximum=60.0, jitter=1.0)


class Connector:
    """Starts each platform once in the foreground; one that cannot connect for a reason that is not a
    ConfigError (network down, 5xx, a gateway that never says READY) is retried in the background with backoff
    while /readyz reports it not ready. A ConfigError, at once or on a later attempt, is kept in `fatal` and
    `stop` is set, so the process exits 2 with that one line."""

    def __init__(self, bots: Sequence[PlatformBot], *, tasks: TaskSupervisor, stop: asyncio.Event,
                 backoff: Backoff = RETRY) -> None:
        self.bots = list(bots)
        self.tasks = tasks
        self.stop = stop
        self.backoff = backoff
        self.fatal: ConfigError | None = None

    async def start(self) -> None:
        """First attempt for every platform; a ConfigError is raised here, an outage goes on retrying."""
        for bot in self.bots:
            if not await self._attempt(bot, 1):
                self.tasks.spawn(self._retry(bot), name=f"{bot.name}-connect")

    async def aclose(self) -> None:
        """Stop retrying (the bots themselves are stopped by the runner)."""
        await self.tasks.cancel_all()

    async def _attempt(self, bot: PlatformBot, attempt: int) -> bool:
        try:
            await bot.start()
        except ConfigError:
            raise
        except Exception as exc:
            log.warning("%s not connected (attempt %d): %s; retrying in about %.0fs, /readyz reports it not ready",
                        bot.name, attempt, _describe(exc), self.backoff.delay(min(attempt, 30)))
            log.debug("%s start-up failure", bot.name, exc_info=True)
            return False
        log.info("%s connected", bot.name)
        return True

    async def _retry(self, bot: PlatformBot) -> None:
        attempt = 1
        while not self.stop.is_set():
            await asyncio.sleep(self.backoff.delay(min(attempt, 30)))
            attempt += 1
            try:
                if await self._attempt(bot, attempt):
                    return
            except ConfigError as exc:
                self.fatal = exc
                self.stop.set()
                return


def _describe(exc: BaseException) -> str:
    """One line: our own unavailable errors say what failed; anything else shows its type (and short text)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ConnectionError) and text:
        return text[:300]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
