"""The SQLite (WAL) implementation of core.ports.Store: the zero-setup default.

Every operation is one function run on the connection's own thread (core.sqlite_thread), a whole transaction at
once; questions that arrive while one is being recorded are recorded together in the next transaction (group
commit), each in its own savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import IO, Any, NamedTuple

from core.config import ConfigError
from core.health import StoreHealth, StoreUnavailable
from core.models import Counts, FeedbackClaim, InboundMessage, Turn, TurnState
from core.ratelimit import LocalBudget
from core.schema import MIGRATIONS
from core.session_ids import session_id as make_session_id
from core.sqlite_secrets import SqliteSecrets
from core.sqlite_sessions import SqliteSessions
from core.sqlite_settings import SqliteSettings
from core.sqlite_thread import DbThread
from core.turn_rows import TURN_COLUMNS
from core.turn_rows import turn_from_row as _turn

__all__ = ["SqliteStore", "exclusive_lock"]

log = logging.getLogger(__name__)
# What SQLite says when the database cannot be written now (as opposed to a bug in a statement).
_UNWRITABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
               sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CORRUPT,
               sqlite3.SQLITE_NOTADB}
# A one-row table the write probe updates (at open and for readiness); created if missing, not a migration.
_PROBE_TABLE = "CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)"


_UNFINISHED = "state NOT IN ('answered','failed')"  # a finished question never changes state again
_TURN_COLUMNS = TURN_COLUMNS


def exclusive_lock(path: str) -> IO[bytes]:
    """Hold an exclusive lock beside the database file itself (symlinks and `..` resolved): two bot processes
    on one file would answer twice. SQLite serves one process; PostgreSQL is for several."""
    try:
        handle = open(os.path.realpath(path) + ".lock", "ab")
    except OSError as exc:
        raise _unwritable_at_start(path, exc.strerror or str(exc)) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError("DATABASE_URL", f"{path} is in use by another uppzy-bot process; run one process per "
                                          "database file") from None
    return handle


def _unwritable_at_start(path: str, why: str) -> ConfigError:
    return ConfigError("DATABASE_URL", f"{path} cannot be written ({why}); the bot needs a writable database file "
                                       "and directory with free space")


def _unwritable(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code is None or code & 0xFF in _UNWRITABLE)


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino




# ---- run on the database thread -------------------------------------------------------------------------------


class _Unwritten(NamedTuple):
    """A write operation's result when nothing was written (a constraint said no): says nothing of the disk."""

    value: Any


def _rowcount(c: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    return c.execute(sql, params).rowcount


def _fetchone(c: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    return c.execute(sql, params).fetchone()


def _fetchall(c: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return c.execute(sql, params).fetchall()


def _in_tx(c: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
    """`work` in one IMMEDIATE transaction: committed, or rolled back whatever it raised. Inside a group commit
    (core.sqlite_thread) it is a savepoint of the group's transaction: all of `work` or none of it."""
    if c.in_transaction:
        c.execute("SAVEPOINT tx")
        try:
            result = work(c)
        except BaseException:
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK TO tx")
                    c.execute("RELEASE tx")
            raise
        c.execute("RELEASE tx")
        return result
    c.execute("BEGIN IMMEDIATE")
    try:
        result = work(c)
        c.execute("COMMIT")  # in WAL mode a full disk shows here
    except BaseException:
        if c.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
        raise
    return result


def _get_turn(c: sqlite3.Connection, turn_id: int) -> Turn | None:
    row = c.execute(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id=?", (turn_id,)).fetchone()
    return _turn(row) if row else None


def _new_session(c: sqlite3.Connection, key: str, platform: str, workspace_id: str, site_id: str,
                 idle_timeout: float, now: float, *, stamped: bool = False) -> str:
    # Generations never repeat while a key's sessions are kept; after a prune core may ask for a stamped id.
    row = c.execute("SELECT MAX(generation) FROM sessions WHERE key=?", (key,)).fetchone()
    generation = (row[0] or 0) + 1
    session_id = make_session_id(key, generation, stamp=now if stamped else None)
    c.execute(
        "INSERT INTO sessions (id, key, generation, platform, workspace_id, site_id, state, created_at, "
        "last_activity, idle_timeout) VALUES (?,?,?,?,?,?,'open',?,?,?)",
        (session_id, key, generation, platform, workspace_id, site_id, now, now, idle_timeout),
    )
    return session_id


class _Question(NamedTuple):
    """One record_question call waiting for the next group commit."""

    msg: InboundMessage
    key: str
    site_id: str
    idle_timeout: float
    now: float
    done: asyncio.Future[Turn | None]


def _seen(c: sqlite3.Connection, q: _Question) -> bool:
    return c.execute("SELECT 1 FROM turns WHERE platform=? AND event_key=?",
                     (q.msg.target.platform, q.msg.event_key)).fetchone() is not None


def _record_one(c: sqlite3.Connection, q: _Question) -> Turn | None:
    if _seen(c, q):
        return None
    t = q.msg.target
    live = c.execute("SELECT id FROM sessions WHERE key=? AND state='open'", (q.key,)).fetchone()
    session_id = live[0] if live else _new_session(c, q.key, t.platform, t.workspace_id, q.site_id,
                                                   q.idle_timeout, q.now)
    extras = json.dumps(t.extras)
    turn_id = c.execute(
        "INSERT INTO turns (platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, "
        "user_id, is_dm, extras, event_key, session_id, site_id, email, text, state, created_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (t.platform, t.workspace_id, t.channel_id, t.message_channel_id, t.message_id, t.thread_id, t.user_id,
         int(t.is_dm), extras, q.msg.event_key, session_id, q.site_id, q.msg.email, q.msg.text,
         TurnState.QUEUED.value, q.now),
    ).lastrowid
    c.execute("UPDATE sessions SET last_activity=?, last_turn_id=? WHERE id=?", (q.now, turn_id, session_id))
    # The row as get_turn would read it back (REAL column: a float), without reading it.
    row = (turn_id, t.platform, t.workspace_id, t.channel_id, t.message_channel_id, t.message_id, t.thread_id,
           t.user_id, int(t.is_dm), extras, session_id, q.site_id, TurnState.QUEUED.value, q.msg.text, q.msg.email,
           None, float(q.now), None, None, None, None, None, None, None)
    return replace(_turn(row), opened_session=live is None)


def _record_batch(c: sqlite3.Connection, batch: list[_Question]) -> list[Turn | Exception | None]:
    """Every question of a group commit in one transaction, each in its own savepoint: one that fails (a bug, a
    constraint) gets its own error and the others are still recorded. A database that cannot be written (an
    OperationalError) fails them all."""
    if len(batch) == 1:  # the transaction is this question's alone: no savepoint needed
        try:
            return [_in_tx(c, partial(_record_one, q=batch[0]))]
        except sqlite3.OperationalError:
            raise
        except Exception as exc:  # as below
            return [None if isinstance(exc, sqlite3.IntegrityError) and _seen(c, batch[0]) else exc]

    def work(c: sqlite3.Connection) -> list[Turn | Exception | None]:
        results: list[Turn | Exception | None] = []
        for q in batch:
            c.execute("SAVEPOINT question")
            try:
                results.append(_record_one(c, q))
            except sqlite3.OperationalError:
                raise
            except Exception as exc:  # this caller's error, not the batch's
                c.execute("ROLLBACK TO question")
                # An IntegrityError on a copy of an event already stored is a duplicate; anything else is an error.
                results.append(None if isinstance(exc, sqlite3.IntegrityError) and _seen(c, q) else exc)
            c.execute("RELEASE question")
        return results

    return _in_tx(c, work)  # type: ignore[no-any-return]


def _migrate(c: sqlite3.Connection, target: int) -> int:
    version = c.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema v{version} is newer than this program (v{len(MIGRATIONS)})")
    for number in range(version, target):

        def step(c: sqlite3.Connection, number: int = number) -> None:
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(f"PRAGMA user_version={number + 1}")

        _in_tx(c, step)
        log.info("store migrated to schema v%d", number + 1)
    return max(version, target)


def _prepare(c: sqlite3.Connection) -> None:
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
    c.execute("PRAGMA busy_timeout=10000")
    c.execute("PRAGMA foreign_keys=ON")


def _prepare_probe(c: sqlite3.Connection) -> None:
    c.execute(_PROBE_TABLE)
    c.execute("INSERT OR REPLACE INTO store_probe (id, n) VALUES (1, 0)")  # a real write


class SqliteStore(SqliteSessions, SqliteSettings, SqliteSecrets):
    """One sqlite3 connection in WAL mode on its own thread; every multi-step change is one transaction there."""

    shared = False  # one process per file (the lock file): it holds every question and leads every job
    holder = "local"
    group_max = 1000  # questions per group commit: bounds one transaction's time under a huge burst

    def __init__(self, db: DbThread, lock_file: IO[bytes] | None = None, *, path: str | None = None) -> None:
        self._db = db
        self._lock_file = lock_file
        self.health = StoreHealth()
        self._path = path
        self._identity = _file_identity(path) if path is not None else None  # (st_dev, st_ino) at open
        self._probes = 0
        self._waiting: deque[_Question] = deque()  # record_question calls for the next group commit
        self._recording: asyncio.Future[Any] | None = None  # the group commit in flight

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        """Open (creating if needed) and migrate the database file at `path`, and prove it can be written.

        A database that cannot be written (read-only file or mount, directory not writable, disk full) is a
        ConfigError naming DATABASE_URL: the bot would otherwise take questions it cannot keep.
        """
        lock_file = None
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unwritable_at_start(path, exc.strerror or str(exc)) from None
            lock_file = exclusive_lock(path)
        try:
            db = await DbThread.start(partial(sqlite3.connect, path, isolation_level=None, timeout=10.0))
        except BaseException as exc:
            if lock_file is not None:
                lock_file.close()
            if isinstance(exc, sqlite3.Error):
                raise _unwritable_at_start(path, str(exc)) from None
            raise
        try:
            await db.run(_prepare, alone=True)
            store = cls(db, lock_file, path=None if path == ":memory:" else path)
            await store.migrate()
            await db.run(_prepare_probe, alone=True)
        except BaseException as exc:
            await db.close()
            if lock_file is not None:
                lock_file.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _unwritable_at_start(path, str(exc)) from None
            raise
        return store

    async def migrate(self, target: int | None = None) -> int:
        """Apply the migrations this file has not had yet; returns the resulting schema version."""
        return await self._db.run(_migrate, len(MIGRATIONS) if target is None else target,  # type: ignore[no-any-return]
                                 alone=True)

    async def close(self) -> None:
        """Close the connection (WAL contents stay durable) and let another process have the file.

        Waits for the questions still being recorded, and the thread runs every operation queued before the close
        (a transaction always finishes there, even if its caller was cancelled by a stop).
        """
        while self._recording is not None:
            await asyncio.wait([self._recording])
        await self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ---- one round trip per operation -----------------------------------------------------------------

    def _health(self, result: Any, error: BaseException | None) -> tuple[Any, BaseException | None]:
        """A write's outcome is the store's health; one that cannot be written now becomes StoreUnavailable."""
        if error is None:
            if isinstance(result, _Unwritten):
                return result.value, None
            self.health.succeeded()
            return result, None
        if isinstance(error, sqlite3.OperationalError) and _unwritable(error):
            self.health.failed(str(error))
            unavailable = StoreUnavailable(f"the database cannot be written: {error}")
            unavailable.__cause__ = error
            return None, unavailable
        return None, error

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._db.run(_fetchone, sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._db.run(_fetchall, sql, params)  # type: ignore[no-any-return]

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write; its outcome is the store's health. Returns the number of rows changed."""
        return await self._db.run(_rowcount, sql, params, after=self._health)  # type: ignore[no-any-return]

    async def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work` (statements outside a transaction) on the thread; its outcome is the store's health."""
        return await self._db.run(work, after=self._health)

    async def _tx(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work` as one transaction on the thread; its outcome is the store's health."""
        return await self._db.run(_in_tx, work, after=self._health)

    # ---- questions --------------------------------------------------------------------------------

    async def record_question(self, msg: InboundMessage, *, key: str, site_id: str, idle_timeout: float,
                              now: float) -> Turn | None:
        """Store a question under its conversation's live session (opening one if needed); None if seen before.

        Group commit: calls that arrive while a commit is in flight are recorded together in the next one, so a
        burst costs a few transactions rather than one each; every caller still gets its own Turn, None or error.
        """
        done: asyncio.Future[Turn | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Question(msg, key, site_id, idle_timeout, now, done))
        if self._recording is None:
            self._record_waiting()
        return await done

    def _record_waiting(self) -> None:
        """Start the next group commit with the questions waiting, oldest first, up to `group_max` (a cancelled
        caller's question is skipped)."""
        batch: list[_Question] = []
        while self._waiting and len(batch) < self.group_max:
            q = self._waiting.popleft()
            if not q.done.done():
                batch.append(q)
        if not batch:
            self._recording = None
            return
        try:
            self._recording = self._db.submit(_record_batch, batch, after=partial(self._recorded, batch))
        except Exception as exc:  # closed
            self._recording = None
            for q in batch:
                q.done.set_exception(exc)

    def _recorded(self, batch: list[_Question], results: list[Turn | Exception | None] | None,
                  error: BaseException | None) -> tuple[None, None]:
        """A group commit ended (on the loop): answer its callers, then start the next one."""
        failed = self._health(None, error)[1] if error is not None else None  # one failed write, once
        for i, q in enumerate(batch):
            outcome = results[i] if results is not None else None
            if q.done.done():
                continue
            if isinstance(failed, StoreUnavailable):  # each caller its own exception (tracebacks differ)
                q.done.set_exception(StoreUnavailable(*failed.args))
            elif failed is not None:
                q.done.set_exception(failed)
            elif isinstance(outcome, Exception):
                q.done.set_exception(outcome)
            else:
                q.done.set_result(outcome)
        if error is None:
            self.health.succeeded()
        self._record_waiting()
        return None, None

    async def rebind_session(self, turn_id: int, *, now: float, stamped: bool = False) -> str:
        """Uppzy says the session is closed: retire it and move this question to a fresh session id."""

        def work(c: sqlite3.Connection) -> str:
            turn = _get_turn(c, turn_id)
            assert turn is not None
            key, idle_timeout = c.execute("SELECT key, idle_timeout FROM sessions WHERE id=?",
                                          (turn.session_id,)).fetchone()
            c.execute("UPDATE sessions SET state='closed', closed_at=?, close_reason='closed_upstream' WHERE id=?",
                      (now, turn.session_id))
            session_id = _new_session(c, key, turn.target.platform, turn.target.workspace_id, turn.site_id,
                                      idle_timeout, now, stamped=stamped)
            c.execute("UPDATE turns SET session_id=? WHERE session_id=? AND state IN ('queued','submitting')",
                      (session_id, turn.session_id))
            c.execute("UPDATE sessions SET last_turn_id=? WHERE id=?", (turn_id, session_id))
            return session_id

        return await self._tx(work)  # type: ignore[no-any-return]

    async def get_turn(self, turn_id: int) -> Turn | None:
        """One question by id."""
        return await self._db.run(_get_turn, turn_id)  # type: ignore[no-any-return]

    async def active_turns(self) -> list[Turn]:
        """Every question not yet answered or failed, oldest first (for resuming after a restart)."""
        rows = await self._all(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE state NOT IN ('answered','failed') ORDER BY id"
        )
        return [_turn(r) for r in rows]

    # ---- one process: leases, adoption and leadership are trivially its own ----------------------------

    async def renew(self, *, now: float, lease: float) -> bool:
        """Nobody else can take this process's questions."""
        return True

    async def adopt(self, *, now: float, mine: bool = False, orphans: bool = True,
                    limit: int | None = None) -> list[Turn]:
        """Every unfinished question is this process's: all of them with `mine`, none to take from others."""
        return (await self.active_turns())[:limit] if mine else []

    async def lead(self, job: str, *, now: float, lease: float) -> bool:
        """The only process leads every job."""
        return True

    def budget(self, name: str, rate: float) -> LocalBudget:
        """A budget of this process alone."""
        return LocalBudget(rate)

    async def watch_settings(self, changed: Callable[[str | None, str | None], None]) -> None:
        """Only this process writes settings, and its own cache follows its writes."""

    async def head_turn(self, session_id: str) -> Turn | None:
        """The oldest unfinished question of a session: the only one that may be in flight."""
        row = await self._one(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id=? AND state NOT IN ('answered','failed') "
            "ORDER BY id LIMIT 1", (session_id,),
        )
        return _turn(row) if row else None

    async def set_state(self, turn_id: int, state: TurnState) -> None:
        """Move a question to another state."""
        await self._exec(f"UPDATE turns SET state=? WHERE id=? AND {_UNFINISHED}", (state.value, turn_id))

    async def claim_submit(self, turn_id: int) -> bool:
        """Move a question from queued to submitting; False if someone else already did (never submit twice)."""
        changed = await self._exec("UPDATE turns SET state='submitting' WHERE id=? AND state='queued'", (turn_id,))
        return changed == 1

    async def begin_failure(self, turn_id: int, kind: str, notice_kind: str, notice: str) -> bool:
        """Record that a question ends with this notice, before it is posted (so a crash resumes it)."""
        changed = await self._exec(
            "UPDATE turns SET state='notifying', error_kind=?, notice_kind=?, notice=?, text=NULL, answer=NULL "
            f"WHERE id=? AND {_UNFINISHED}", (kind, notice_kind, notice, turn_id),
        )
        return changed == 1

    async def claim_delivery(self, turn_id: int) -> bool:
        """ready/delivering → delivering (one process: always its own while the answer waits)."""
        changed = await self._exec("UPDATE turns SET state='delivering' WHERE id=? AND state IN ('ready','delivering')",
                               (turn_id,))
        return changed == 1

    async def mark_submitted(self, turn_id: int, request_id: str, *, now: float) -> None:
        """Uppzy accepted the question: keep its request_id before anything else happens."""
        await self._exec(
            f"UPDATE turns SET state='pending', request_id=?, submitted_at=? WHERE id=? AND {_UNFINISHED}",
            (request_id, now, turn_id),
        )

    async def store_answer(self, turn_id: int, answer: str, score: float | None, level: str | None, *,
                           now: float) -> Turn | None:
        """Keep the fetched answer, claimed for posting, so a crash before posting never needs Uppzy again (one
        process: always its own); the row is read back in the same hop."""

        def work(c: sqlite3.Connection) -> Turn | None:
            changed = c.execute(
                "UPDATE turns SET state='delivering', answer=?, confidence_score=?, confidence_level=?, ready_at=?, "
                "text=NULL WHERE id=? AND state='pending'", (answer, score, level, now, turn_id),
            ).rowcount
            return _get_turn(c, turn_id) if changed else None

        return await self._tx(work)  # type: ignore[no-any-return]

    async def mark_answered(self, turn_id: int, message_ids: Sequence[str], *, now: float) -> None:
        """Posted: remember which messages carry the answer (for feedback) and drop the texts."""

        def work(c: sqlite3.Connection) -> None:
            turn = c.execute("SELECT platform, session_id, message_channel_id FROM turns WHERE id=?",
                             (turn_id,)).fetchone()
            if turn is None:
                return
            c.executemany(
                "INSERT OR REPLACE INTO answer_messages (platform, message_id, channel_id, turn_id) VALUES (?,?,?,?)",
                [(turn[0], mid, turn[2], turn_id) for mid in message_ids],
            )
            c.execute(f"UPDATE turns SET state='answered', done_at=?, text=NULL, answer=NULL WHERE id=? AND "
                      f"{_UNFINISHED}", (now, turn_id))
            c.execute("UPDATE sessions SET last_activity=MAX(last_activity, ?) WHERE id=?", (now, turn[1]))

        await self._tx(work)

    async def mark_failed(self, turn_id: int, kind: str, *, now: float) -> None:
        """Finished without an answer (the user has been told)."""
        await self._exec(
            "UPDATE turns SET state='failed', error_kind=?, done_at=?, text=NULL, answer=NULL, notice=NULL "
            f"WHERE id=? AND {_UNFINISHED}", (kind, now, turn_id),
        )

    async def postpone(self, turn_id: int, *, until: float) -> None:
        """Keep an answer the platform refused, to be posted again from `until` (kept in ready_at)."""
        await self._exec(
            "UPDATE turns SET state='delivering', ready_at=? WHERE id=? AND state IN ('ready','delivering')",
            (until, turn_id),
        )

    async def undelivered(self, before: float, limit: int) -> list[Turn]:
        """Answers waiting to be posted whose time has come (ready_at: fetched, or the postponed retry time)."""
        rows = await self._all(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE state NOT IN ('answered','failed') "  # the partial index
            "AND state IN ('ready','delivering') AND COALESCE(ready_at, 0) <= ? ORDER BY COALESCE(ready_at, 0), id "
            "LIMIT ?", (before, limit),
        )
        return [_turn(r) for r in rows]

    async def turn_for_message(self, platform: str, message_id: str, channel_id: str | None = None
                               ) -> Turn | None:
        """The question whose answer is the given platform message (in that channel, when ids repeat across them)."""
        row = await self._one(
            f"SELECT {', '.join('t.' + c.strip() for c in _TURN_COLUMNS.split(','))} FROM answer_messages a "
            "JOIN turns t ON t.id=a.turn_id WHERE a.platform=? AND a.message_id=? AND (? IS NULL OR a.channel_id=?)",
            (platform, message_id, channel_id, channel_id),
        )
        return _turn(row) if row else None

    # ---- feedback ---------------------------------------------------------------------------------

    async def claim_feedback(self, turn_id: int, rating: str, user_id: str, source: str, *,
                             now: float) -> FeedbackClaim | None:
        """Reserve the one rating of an answer; returns the claim already there if there is one."""

        def work(c: sqlite3.Connection) -> FeedbackClaim | _Unwritten | None:
            try:
                c.execute("INSERT INTO feedback (turn_id, rating, user_id, source, state, at) VALUES (?,?,?,?,"
                          "'sending',?)", (turn_id, rating, user_id, source, now))
                return None
            except sqlite3.IntegrityError:
                row = c.execute("SELECT rating, state, at FROM feedback WHERE turn_id=?", (turn_id,)).fetchone()
            if row is None:  # no claim to show (the question is gone): report it as in use, as a race would
                return _Unwritten(FeedbackClaim(rating, "sending", now))  # type: ignore[arg-type]
            return _Unwritten(FeedbackClaim(row[0], row[1], row[2]))

        return await self._write(work)  # type: ignore[no-any-return]

    async def take_over_feedback(self, turn_id: int, *, seen_at: float, rating: str, user_id: str, source: str,
                                 now: float) -> bool:
        """Replace a `sending` claim still stamped `seen_at` (compare-and-set)."""
        changed = await self._exec(
            "UPDATE feedback SET rating=?, user_id=?, source=?, at=? WHERE turn_id=? AND state='sending' AND at=?",
            (rating, user_id, source, now, turn_id, seen_at),
        )
        return changed == 1

    async def finish_feedback(self, turn_id: int, *, sent: bool) -> None:
        """Confirm a rating Uppzy took, or free the slot so the user can try again."""
        if sent:
            await self._exec("UPDATE feedback SET state='sent' WHERE turn_id=?", (turn_id,))
        else:
            await self._exec("DELETE FROM feedback WHERE turn_id=? AND state='sending'", (turn_id,))

    async def counts(self, platform: str | None = None, workspace_id: str | None = None) -> Counts:
        """Pending questions and open sessions, optionally for one workspace."""
        scope, params = "", ()
        if platform is not None:
            scope, params = " AND platform=? AND workspace_id=?", (platform, workspace_id)
        def read(c: sqlite3.Connection) -> Counts:
            pending = c.execute(f"SELECT COUNT(*) FROM turns WHERE state NOT IN ('answered','failed'){scope}",
                                params).fetchone()
            sessions = c.execute(f"SELECT COUNT(*) FROM sessions WHERE state='open'{scope}", params).fetchone()
            return Counts(pending[0], sessions[0])

        return await self._db.run(read)  # type: ignore[no-any-return]

    async def ping(self) -> None:
        """One trivial read: raises if the database cannot be read."""
        await self._one("SELECT 1 FROM sessions LIMIT 1")

    async def probe(self) -> None:
        """Readiness: the file at the path is still the one opened, and a one-row write goes through."""
        if self._path is not None:
            now = _file_identity(self._path)
            if now != self._identity:
                what = "deleted" if now is None else "replaced"
                self.health.file_check(f"the database file {self._path} was {what} while the bot was running")
                raise StoreUnavailable(self.health.moved)
            self.health.file_check(None)
        self._probes += 1
        await self._exec("INSERT OR REPLACE INTO store_probe (id, n) VALUES (1, ?)", (self._probes,))

    async def prune(self, done_before: float) -> int:
        """Forget finished questions (and their answer-message links) older than the retention window."""

        def work(c: sqlite3.Connection) -> int:
            c.execute("DELETE FROM answer_messages WHERE turn_id IN (SELECT id FROM turns WHERE done_at < ?)",
                      (done_before,))
            c.execute("DELETE FROM feedback WHERE turn_id IN (SELECT id FROM turns WHERE done_at < ?)", (done_before,))
            gone = c.execute("DELETE FROM turns WHERE done_at < ?", (done_before,)).rowcount
            # Closed sessions go too (a returning key starts at generation 1 again; core rebinds on a 409).
            c.execute("DELETE FROM sessions WHERE state='closed' AND closed_at < ?", (done_before,))
            c.execute("DELETE FROM oauth_states WHERE expires_at < ?", (done_before,))
            return gone

        return await self._tx(work)  # type: ignore[no-any-return]
