"""The one owner of background tasks: spawned work is tracked, its failures logged, and shutdown can wait or cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["TaskSupervisor"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSupervisor:
    """Tracks tasks it spawned (and handlers that register themselves) so none is lost silently or leaked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def idle(self) -> bool:
        """True when no tracked task is running."""
        return not self._tasks

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run `coro` in the background; an exception it raises is logged with this supervisor's name."""
        task = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self._add(task)
        task.add_done_callback(self._finished)
        return task

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count the current task (an event handler) while the block runs, so `drain` waits for it."""
        task = asyncio.current_task()
        if task is None or task in self._tasks:
            yield
            return
        self._add(task)
        try:
            yield
        finally:
            self._discard(task)

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for tracked tasks (not the caller) to finish; True if they all did."""
        current = asyncio.current_task()
        pending = {t for t in self._tasks if t is not current}
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=timeout)
        if still:
            log.warning("%s: %d task(s) still running after %.1fs", self.name, len(still), timeout)
        return not still

    async def cancel_all(self) -> None:
        """Cancel every tracked task (except the caller) and wait until they have ended."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        self._idle.clear()

    def _discard(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self.name, task.get_name(), exc_info=task.exception())
