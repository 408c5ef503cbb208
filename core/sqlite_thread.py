"""One thread owns the sqlite3 connection: a store operation is one function run there, one round trip.

aiosqlite sends every statement to its thread separately (27-89 µs each, about 20 per answer); here a whole
transaction is one plain synchronous function, so it costs one hand-over however many statements it runs. Jobs run
in the order they were submitted, so a transaction never interleaves with another operation and needs no lock.

Group commit: the jobs already queued when the thread takes one run together in one transaction, so a burst pays
one COMMIT (and writes each changed page to the WAL once) for many operations instead of one each. Every job still
gets its own outcome, only after the COMMIT; if the transaction as a whole fails (a full disk, an I/O error), each
job runs again alone, as it would have without grouping, and gets its own result or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

__all__ = ["After", "DbThread"]

# Run on the event loop when a job ends, even if its caller was cancelled meanwhile: (result, error) -> the same
# or replaced (the store keeps its health here and turns "disk full" into StoreUnavailable).
After = Callable[[Any, BaseException | None], tuple[Any, BaseException | None]]
_Outcome = tuple[asyncio.Future[Any] | None, Any, BaseException | None, After | None]
# (loop, future, fn, args, after, alone): `alone` jobs never share a transaction (connect, close, migrations).
_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any] | None, Callable[..., Any], tuple[Any, ...], After | None,
             bool]


class DbThread:
    """A plain sqlite3 connection used only by its own thread; `run` hands it one function and awaits the result.

    A caller cancelled while its function runs does not stop the function (a transaction always ends in COMMIT or
    ROLLBACK on the thread), it only stops waiting for it. The thread is a daemon: a process that exits without
    closing the store leaves the file as a crash would, which WAL recovers from.

    A job may run inside a transaction the thread opened for its group: a function that needs its own transaction
    checks `connection.in_transaction` and uses a savepoint then (core.sqlite_store's `_in_tx` does).
    """

    group_max = 256  # jobs per group commit: bounds how long one transaction holds the others' outcomes

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
            await db.run(db._connect, connect, alone=True)
        except BaseException:
            db._open = False
            db._jobs.put(None)
            raise
        return db

    def _connect(self, conn: None, connect: Callable[[], sqlite3.Connection]) -> None:
        self._conn = connect()

    def submit(self, fn: Callable[..., Any], *args: Any, after: After | None = None, future: bool = True,
               alone: bool = False) -> asyncio.Future[Any] | None:
        """Queue `fn(connection, *args)`; its result (or error, through `after`) settles the returned future.
        `alone`: never in a group commit (statements that cannot run inside a transaction)."""
        if not self._open:
            raise sqlite3.ProgrammingError("the store is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future() if future else None
        self._jobs.put((loop, fut, fn, args, after, alone))
        return fut

    async def run(self, fn: Callable[..., Any], *args: Any, after: After | None = None, alone: bool = False) -> Any:
        """`fn(connection, *args)` on the thread, awaited."""
        return await self.submit(fn, *args, after=after, alone=alone)  # type: ignore[misc]

    async def close(self) -> None:
        """Close the connection after every job already queued, and end the thread."""
        if not self._open:
            return
        try:
            await self.run(_close, alone=True)
        finally:
            self._open = False
            self._jobs.put(None)

    def _serve(self) -> None:
        held: list[_Job | None] = []  # taken from the queue while grouping but not part of the group: next
        while (job := held.pop() if held else self._jobs.get()) is not None:
            group = [job]
            while not job[5] and len(group) < self.group_max:
                try:
                    queued = self._jobs.get_nowait()
                except Empty:
                    break
                if queued is None or queued[5]:  # the stop, or a job that runs alone: after this group
                    held.append(queued)
                    break
                group.append(queued)
            if len(group) == 1:
                self._run_alone(job)
            else:
                self._run_group(group)
            del job, group

    def _run_alone(self, job: _Job) -> None:
        loop, fut, fn, args, after, _ = job
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(self._conn, *args)
        except BaseException as exc:  # handed to the caller on its loop
            error = exc
        self._hand_back(loop, (fut, result, error, after))

    def _run_group(self, group: list[_Job]) -> None:
        """Every job in one transaction, their outcomes handed back after its COMMIT. A job's own error (a
        constraint, a bug) is its alone: its statements were undone (statement journal, or its savepoint). If the
        transaction itself fails, it is rolled back and each job runs again alone."""
        conn = self._conn
        assert conn is not None
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for _, _, fn, args, _, _ in group:
                try:
                    outcomes.append((fn(conn, *args), None))
                except sqlite3.OperationalError:  # the database's trouble, not this job's
                    raise
                except BaseException as exc:  # handed to its caller, as a job run alone would
                    outcomes.append((None, exc))
                if not conn.in_transaction:  # SQLite ended it on its own (a full disk, an I/O error)
                    raise sqlite3.OperationalError("the group's transaction was rolled back")
            conn.execute("COMMIT")  # in WAL mode a full disk shows here
        except Exception:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in group:
                self._run_alone(job)
            return
        for (loop, fut, _, _, after, _), (result, error) in zip(group, outcomes, strict=True):
            self._hand_back(loop, (fut, result, error, after))

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
