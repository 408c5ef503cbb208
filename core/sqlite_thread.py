"""One thread owns the sqlite3 connection: a store operation is one function run there, one round trip.

aiosqlite sends every statement to its thread separately (27-89 µs each, about 20 per answer); here a whole
transaction is one plain synchronous function, so it costs one hand-over however many statements it runs. Jobs run
in the order they were submitted, so a transaction never interleaves with another operation and needs no lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

__all__ = ["After", "DbThread"]

# Run on the event loop when a job ends, even if its caller was cancelled meanwhile: (result, error) -> the same
# or replaced (the store keeps its health here and turns "disk full" into StoreUnavailable).
After = Callable[[Any, BaseException | None], tuple[Any, BaseException | None]]
_Outcome = tuple[asyncio.Future[Any] | None, Any, BaseException | None, After | None]
_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any] | None, Callable[..., Any], tuple[Any, ...], After | None]


class DbThread:
    """A plain sqlite3 connection used only by its own thread; `run` hands it one function and awaits the result.

    A caller cancelled while its function runs does not stop the function (a transaction always ends in COMMIT or
    ROLLBACK on the thread), it only stops waiting for it. The thread is a daemon: a process that exits without
    closing the store leaves the file as a crash would, which WAL recovers from.
    """

    def __init__(self) -> None:
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._conn: sqlite3.Connection | None = None  # touched only on the thread
        self._open = True
        self._thread = threading.Thread(target=self._serve, name="uppzy-sqlite", daemon=True)
        self._outcomes: dict[asyncio.AbstractEventLoop, deque[_Outcome]] = {}  # finished, for each loop to settle
        self._waking: set[asyncio.AbstractEventLoop] = set()  # loops already asked to settle theirs

    @classmethod
    async def start(cls, connect: Callable[[], sqlite3.Connection]) -> DbThread:
        """Start the thread and open the connection on it (`connect`'s error is raised here, the thread gone)."""
        db = cls()
        db._thread.start()
        try:
            await db.run(db._connect, connect)
        except BaseException:
            db._open = False
            db._jobs.put(None)
            raise
        return db

    def _connect(self, conn: None, connect: Callable[[], sqlite3.Connection]) -> None:
        self._conn = connect()

    def submit(self, fn: Callable[..., Any], *args: Any, after: After | None = None,
               future: bool = True) -> asyncio.Future[Any] | None:
        """Queue `fn(connection, *args)`; its result (or error, through `after`) settles the returned future."""
        if not self._open:
            raise sqlite3.ProgrammingError("the store is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future() if future else None
        self._jobs.put((loop, fut, fn, args, after))
        return fut

    async def run(self, fn: Callable[..., Any], *args: Any, after: After | None = None) -> Any:
        """`fn(connection, *args)` on the thread, awaited."""
        return await self.submit(fn, *args, after=after)  # type: ignore[misc]

    async def close(self) -> None:
        """Close the connection after every job already queued, and end the thread."""
        if not self._open:
            return
        try:
            await self.run(_close)
        finally:
            self._open = False
            self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, fut, fn, args, after = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(self._conn, *args)
            except BaseException as exc:  # handed to the caller on its loop
                error = exc
            self._hand_back(loop, (fut, result, error, after))
            del job, fn, args, result, error

    def _hand_back(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        """Queue a finished job's outcome for its loop, waking the loop only if it is not already due to look: under
        load, one wake-up (a self-pipe write and an epoll return) settles many jobs."""
        outcomes = self._outcomes.get(loop)
        if outcomes is None:
            outcomes = self._outcomes[loop] = deque()
        outcomes.append(outcome)
        if loop not in self._waking:
            self._waking.add(loop)
            try:
                loop.call_soon_threadsafe(self._settle_all, loop, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._waking.discard(loop)
                self._outcomes.pop(loop, None)

    def _settle_all(self, loop: asyncio.AbstractEventLoop, outcomes: deque[_Outcome]) -> None:
        """On the loop: settle every outcome handed back so far (the thread wakes us again for later ones)."""
        self._waking.discard(loop)  # first: an outcome appended from now on schedules another call
        while outcomes:
            _settle(*outcomes.popleft())


def _close(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        conn.close()


def _settle(fut: asyncio.Future[Any] | None, result: Any, error: BaseException | None, after: After | None) -> None:
    if after is not None:
        result, error = after(result, error)
    if fut is None or fut.done():  # the caller was cancelled
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
