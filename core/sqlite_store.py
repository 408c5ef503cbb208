"""The SQLite (WAL) implementation of core.ports.Store on aiosqlite: the zero-setup default."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import aiosqlite

from core.config import ConfigError
from core.health import StoreHealth, StoreUnavailable
from core.models import Counts, FeedbackClaim, InboundMessage, ReplyTarget, SessionRow, Turn, TurnState
from core.ratelimit import LocalBudget
from core.schema import MIGRATIONS
from core.session_ids import session_id as make_session_id

__all__ = ["SqliteStore", "exclusive_lock"]

log = logging.getLogger(__name__)
_IN_TX: contextvars.ContextVar[bool] = contextvars.ContextVar("uppzy_store_in_tx", default=False)
# What SQLite says when the database cannot be written now (as opposed to a bug in a statement).
_UNWRITABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
               sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CORRUPT,
               sqlite3.SQLITE_NOTADB}
# A one-row table the write probe updates (at open and for readiness); created if missing, not a migration.
_PROBE_TABLE = "CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)"


_UNFINISHED = "state NOT IN ('answered','failed')"  # a finished question never changes state again
_TURN_COLUMNS = (
    "id, platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, user_id, is_dm, extras, "
    "session_id, site_id, state, text, email, request_id, created_at, submitted_at, answer, confidence_score, "
    "confidence_level, error_kind, notice_kind, notice"
)


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


def _turn(row: Sequence[Any]) -> Turn:
    target = ReplyTarget(
        platform=row[1], workspace_id=row[2], channel_id=row[3], message_channel_id=row[4], message_id=row[5],
        thread_id=row[6], user_id=row[7], is_dm=bool(row[8]), extras=tuple(tuple(p) for p in json.loads(row[9])),
    )
    return Turn(
        id=row[0], target=target, session_id=row[10], site_id=row[11], state=TurnState(row[12]), text=row[13],
        email=row[14], request_id=row[15], created_at=row[16], submitted_at=row[17], answer=row[18],
        confidence_score=row[19], confidence_level=row[20], error_kind=row[21], notice_kind=row[22],
        notice=row[23],
    )


class SqliteStore:
    """One aiosqlite connection in WAL mode; every multi-step change is one transaction."""

    shared = False  # one process per file (the lock file): it holds every question and leads every job
    holder = "local"

    def __init__(self, conn: aiosqlite.Connection, lock_file: IO[bytes] | None = None, *,
                 path: str | None = None) -> None:
        self._db = conn
        self._lock_file = lock_file
        self._lock = asyncio.Lock()  # one connection: a transaction must not interleave with other statements
        self.health = StoreHealth()
        self._path = path
        self._identity = _file_identity(path) if path is not None else None  # (st_dev, st_ino) at open
        self._probes = 0

    def _guard(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext() if _IN_TX.get() else self._lock  # type: ignore[return-value]

    async def _exec(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        """One write; outside a transaction its outcome is the store's health."""
        if _IN_TX.get():
            return await self._db.execute(sql, tuple(params))
        async with self._lock:
            try:
                cursor = await self._db.execute(sql, tuple(params))
            except sqlite3.OperationalError as exc:
                raise self._write_failed(exc) from exc
        self.health.succeeded()
        return cursor

    def _write_failed(self, exc: sqlite3.OperationalError) -> BaseException:
        if not _unwritable(exc):
            return exc
        self.health.failed(str(exc))
        return StoreUnavailable(f"the database cannot be written: {exc}")

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
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=10.0)
        except BaseException as exc:
            if lock_file is not None:
                lock_file.close()
            if isinstance(exc, sqlite3.Error):
                raise _unwritable_at_start(path, str(exc)) from None
            raise
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
            await conn.execute("PRAGMA busy_timeout=10000")
            await conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, lock_file, path=None if path == ":memory:" else path)
            await store.migrate()
            await conn.execute(_PROBE_TABLE)
            await conn.execute("INSERT OR REPLACE INTO store_probe (id, n) VALUES (1, 0)")  # a real write
        except BaseException as exc:
            await conn.close()
            if lock_file is not None:
                lock_file.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _unwritable_at_start(path, str(exc)) from None
            raise
        return store

    async def migrate(self, target: int | None = None) -> int:
        """Apply the migrations this file has not had yet; returns the resulting schema version."""
        target = len(MIGRATIONS) if target is None else target
        async with self._db.execute("PRAGMA user_version") as cur:
            version = (await cur.fetchone())[0]  # type: ignore[index]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema v{version} is newer than this program (v{len(MIGRATIONS)})")
        for number in range(version, target):
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version={number + 1}")
                await self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.execute("ROLLBACK")
                raise
            log.info("store migrated to schema v%d", number + 1)
        return max(version, target)

    async def close(self) -> None:
        """Close the connection (WAL contents stay durable) and let another process have the file.

        Waits for a transaction still running: `_tx` shields it from its caller's cancellation (a stop), so it
        may outlive the caller, and closing under it ended in "no active connection" tracebacks.
        """
        async with self._lock:
            await self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self._guard(), self._db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._guard(), self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def _tx(self, work: Any) -> Any:
        # Shielded: a cancellation mid-transaction must not leave the one shared connection inside BEGIN.
        return await asyncio.shield(self._run_tx(work))

    async def _run_tx(self, work: Any) -> Any:
        async with self._lock:
            token = _IN_TX.set(True)
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = await work()
                    await self._db.execute("COMMIT")  # in WAL mode a full disk shows here
                except BaseException:
                    if self._db.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                        with contextlib.suppress(sqlite3.Error):
                            await self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise self._write_failed(exc) from exc
            finally:
                _IN_TX.reset(token)
        self.health.succeeded()
        return result

    # ---- questions --------------------------------------------------------------------------------

    async def record_question(self, msg: InboundMessage, *, key: str, site_id: str, idle_timeout: float,
                              now: float) -> Turn | None:
        """Store a question under its conversation's live session (opening one if needed); None if seen before."""
        t = msg.target

        async def work() -> Turn | None:
            if await self._one("SELECT 1 FROM turns WHERE platform=? AND event_key=?", (t.platform, msg.event_key)):
                return None
            live = await self._one("SELECT 1 FROM sessions WHERE key=? AND state='open'", (key,))
            session_id = await self._live_or_new_session(key, t.platform, t.workspace_id, site_id, idle_timeout, now)
            cur = await self._exec(
                "INSERT INTO turns (platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, "
                "user_id, is_dm, extras, event_key, session_id, site_id, email, text, state, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (t.platform, t.workspace_id, t.channel_id, t.message_channel_id, t.message_id, t.thread_id,
                 t.user_id, int(t.is_dm), json.dumps(t.extras), msg.event_key, session_id, site_id, msg.email,
                 msg.text, TurnState.QUEUED.value, now),
            )
            turn_id = cur.lastrowid
            await self._exec(
                "UPDATE sessions SET last_activity=?, last_turn_id=? WHERE id=?", (now, turn_id, session_id)
            )
            turn = await self.get_turn(turn_id)  # type: ignore[arg-type]
            return replace(turn, opened_session=live is None) if turn is not None else None

        try:
            return await self._tx(work)
        except sqlite3.IntegrityError:
            # A concurrent copy of the same event won the race; anything else is a real error.
            if await self._one("SELECT 1 FROM turns WHERE platform=? AND event_key=?", (t.platform, msg.event_key)):
                return None
            raise

    async def _live_or_new_session(self, key: str, platform: str, workspace_id: str, site_id: str,
                                   idle_timeout: float, now: float) -> str:
        row = await self._one("SELECT id, state FROM sessions WHERE key=? AND state='open'", (key,))
        if row:
            return row[0]
        return await self._new_session(key, platform, workspace_id, site_id, idle_timeout, now)

    async def _new_session(self, key: str, platform: str, workspace_id: str, site_id: str, idle_timeout: float,
                           now: float, *, stamped: bool = False) -> str:
        # Generations never repeat while a key's sessions are kept; after a prune core may ask for a stamped id.
        row = await self._one("SELECT MAX(generation) FROM sessions WHERE key=?", (key,))
        generation = (row[0] or 0) + 1
        session_id = make_session_id(key, generation, stamp=now if stamped else None)
        await self._exec(
            "INSERT INTO sessions (id, key, generation, platform, workspace_id, site_id, state, created_at, "
            "last_activity, idle_timeout) VALUES (?,?,?,?,?,?,'open',?,?,?)",
            (session_id, key, generation, platform, workspace_id, site_id, now, now, idle_timeout),
        )
        return session_id

    async def rebind_session(self, turn_id: int, *, now: float, stamped: bool = False) -> str:
        """Uppzy says the session is closed: retire it and move this question to a fresh session id."""
        turn = await self.get_turn(turn_id)
        assert turn is not None
        old = await self._one("SELECT key, idle_timeout FROM sessions WHERE id=?", (turn.session_id,))
        key, idle_timeout = old[0], old[1]

        async def work() -> str:
            await self._exec(
                "UPDATE sessions SET state='closed', closed_at=?, close_reason='closed_upstream' WHERE id=?",
                (now, turn.session_id),
            )
            session_id = await self._new_session(key, turn.target.platform, turn.target.workspace_id,
                                                 turn.site_id, idle_timeout, now, stamped=stamped)
            await self._exec("UPDATE turns SET session_id=? WHERE session_id=? AND state IN ('queued',"
                                   "'submitting')", (session_id, turn.session_id))
            await self._exec("UPDATE sessions SET last_turn_id=? WHERE id=?", (turn_id, session_id))
            return session_id

        return await self._tx(work)

    async def get_turn(self, turn_id: int) -> Turn | None:
        """One question by id."""
        row = await self._one(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id=?", (turn_id,))
        return _turn(row) if row else None

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
        cur = await self._exec("UPDATE turns SET state='submitting' WHERE id=? AND state='queued'", (turn_id,))
        return cur.rowcount == 1

    async def begin_failure(self, turn_id: int, kind: str, notice_kind: str, notice: str) -> bool:
        """Record that a question ends with this notice, before it is posted (so a crash resumes it)."""
        cur = await self._exec(
            "UPDATE turns SET state='notifying', error_kind=?, notice_kind=?, notice=?, text=NULL, answer=NULL "
            f"WHERE id=? AND {_UNFINISHED}", (kind, notice_kind, notice, turn_id),
        )
        return cur.rowcount == 1

    async def claim_delivery(self, turn_id: int) -> bool:
        """ready/delivering → delivering (one process: always its own while the answer waits)."""
        cur = await self._exec("UPDATE turns SET state='delivering' WHERE id=? AND state IN ('ready','delivering')",
                               (turn_id,))
        return cur.rowcount == 1

    async def mark_submitted(self, turn_id: int, request_id: str, *, now: float) -> None:
        """Uppzy accepted the question: keep its request_id before anything else happens."""
        await self._exec(
            f"UPDATE turns SET state='pending', request_id=?, submitted_at=? WHERE id=? AND {_UNFINISHED}",
            (request_id, now, turn_id),
        )

    async def store_answer(self, turn_id: int, answer: str, score: float | None, level: str | None, *,
                           now: float) -> bool:
        """Keep the fetched answer so a crash before posting never needs Uppzy again (one process: always its own)."""
        await self._exec(
            "UPDATE turns SET state='ready', answer=?, confidence_score=?, confidence_level=?, ready_at=?, "
            f"text=NULL WHERE id=? AND {_UNFINISHED}", (answer, score, level, now, turn_id),
        )
        return True

    async def mark_answered(self, turn_id: int, message_ids: Sequence[str], *, now: float) -> None:
        """Posted: remember which messages carry the answer (for feedback) and drop the texts."""

        async def work() -> None:
            turn = await self._one("SELECT platform, session_id, message_channel_id FROM turns WHERE id=?", (turn_id,))
            await self._db.executemany(
                "INSERT OR REPLACE INTO answer_messages (platform, message_id, channel_id, turn_id) VALUES (?,?,?,?)",
                [(turn[0], mid, turn[2], turn_id) for mid in message_ids],
            )
            await self._exec(
                f"UPDATE turns SET state='answered', done_at=?, text=NULL, answer=NULL WHERE id=? AND {_UNFINISHED}",
                (now, turn_id),
            )
            await self._exec("UPDATE sessions SET last_activity=MAX(last_activity, ?) WHERE id=?",
                                   (now, turn[1]))

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
        try:
            await self._exec(
                "INSERT INTO feedback (turn_id, rating, user_id, source, state, at) VALUES (?,?,?,?,'sending',?)",
                (turn_id, rating, user_id, source, now),
            )
            return None
        except sqlite3.IntegrityError:
            row = await self._one("SELECT rating, state, at FROM feedback WHERE turn_id=?", (turn_id,))
            if row is None:  # freed between the insert and the read (a failed send): report it as in use
                return FeedbackClaim(rating, "sending", now)  # type: ignore[arg-type]
            return FeedbackClaim(row[0], row[1], row[2])

    async def take_over_feedback(self, turn_id: int, *, seen_at: float, rating: str, user_id: str, source: str,
                                 now: float) -> bool:
        """Replace a `sending` claim still stamped `seen_at` (compare-and-set)."""
        cur = await self._exec(
            "UPDATE feedback SET rating=?, user_id=?, source=?, at=? WHERE turn_id=? AND state='sending' AND at=?",
            (rating, user_id, source, now, turn_id, seen_at),
        )
        return cur.rowcount == 1

    async def finish_feedback(self, turn_id: int, *, sent: bool) -> None:
        """Confirm a rating Uppzy took, or free the slot so the user can try again."""
        if sent:
            await self._exec("UPDATE feedback SET state='sent' WHERE turn_id=?", (turn_id,))
        else:
            await self._exec("DELETE FROM feedback WHERE turn_id=? AND state='sending'", (turn_id,))

    # ---- sessions ---------------------------------------------------------------------------------

    async def _session_rows(self, where: str, params: Iterable[Any]) -> list[SessionRow]:
        columns = ", ".join("t." + c.strip() for c in _TURN_COLUMNS.split(","))
        rows = await self._all(
            "SELECT s.id, s.key, s.platform, s.workspace_id, s.site_id, s.state, s.last_activity, s.idle_timeout, "
            f"{columns} FROM sessions s LEFT JOIN turns t ON t.id = s.last_turn_id WHERE {where}", params,
        )
        return [SessionRow(*r[:8], _turn(r[8:]).target if r[8] is not None else None) for r in rows]

    async def live_session(self, key: str) -> SessionRow | None:
        """The open session of a conversation key, if any."""
        rows = await self._session_rows("s.key=? AND s.state='open'", (key,))
        return rows[0] if rows else None

    async def idle_sessions(self, now: float, limit: int) -> list[SessionRow]:
        """Open sessions whose idle timeout has passed at `now`, stalest first (an index on last activity)."""
        return await self._session_rows(
            "s.state='open' AND s.last_activity + s.idle_timeout < ? ORDER BY s.last_activity + s.idle_timeout "
            "LIMIT ?", (now, limit),
        )

    async def claim_for_close(self, session_id: str, *, idle_at: float | None, now: float | None = None) -> bool:
        """Atomically mark a session 'closing' (at `now`) if it is open, idle at `idle_at` (None: any) and not busy."""
        cur = await self._exec(
            "UPDATE sessions SET state='closing', closing_at=? WHERE id=? AND state='open' "
            "AND (? IS NULL OR last_activity + idle_timeout < ?) "
            "AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id=sessions.id "
            "AND t.state NOT IN ('answered','failed'))",
            (now, session_id, idle_at, idle_at),
        )
        return cur.rowcount == 1

    async def set_idle_timeout(self, platform: str, workspace_id: str, seconds: float) -> None:
        """A workspace changed its idle timeout: open sessions follow it from now on."""
        await self._exec(
            "UPDATE sessions SET idle_timeout=? WHERE platform=? AND workspace_id=? AND state='open'",
            (seconds, platform, workspace_id),
        )

    async def closing_sessions(self, limit: int = 500, *, before: float | None = None) -> list[SessionRow]:
        """Sessions whose close was started (before `before`) but not confirmed: resumed after a crash or a failed
        call."""
        return await self._session_rows(
            "s.state='closing' AND (? IS NULL OR s.closing_at IS NULL OR s.closing_at < ?) ORDER BY s.last_activity "
            "LIMIT ?", (before, before, limit))

    async def mark_closed(self, session_id: str, reason: str, *, now: float) -> None:
        """Uppzy confirmed the close."""
        await self._exec(
            "UPDATE sessions SET state='closed', closed_at=COALESCE(closed_at, ?), "
            "close_reason=COALESCE(close_reason, ?) WHERE id=?", (now, reason, session_id),
        )

    async def counts(self, platform: str | None = None, workspace_id: str | None = None) -> Counts:
        """Pending questions and open sessions, optionally for one workspace."""
        scope, params = "", ()
        if platform is not None:
            scope, params = " AND platform=? AND workspace_id=?", (platform, workspace_id)
        pending = await self._one(f"SELECT COUNT(*) FROM turns WHERE state NOT IN ('answered','failed'){scope}",
                                  params)
        sessions = await self._one(f"SELECT COUNT(*) FROM sessions WHERE state='open'{scope}", params)
        return Counts(pending[0], sessions[0])

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

    # ---- settings ---------------------------------------------------------------------------------

    async def workspace_settings(self, platform: str, workspace_id: str) -> dict[str, str]:
        """The raw overrides an admin stored for a workspace."""
        rows = await self._all("SELECT key, value FROM workspace_settings WHERE platform=? AND workspace_id=?",
                               (platform, workspace_id))
        return {k: v for k, v in rows}

    async def put_workspace_setting(self, platform: str, workspace_id: str, key: str, value: str | None, *,
                                    by: str | None, now: float) -> None:
        """Store (or with None, remove) one override."""
        if value is None:
            await self._exec("DELETE FROM workspace_settings WHERE platform=? AND workspace_id=? AND key=?",
                                   (platform, workspace_id, key))
            return
        await self._exec(
            "INSERT INTO workspace_settings (platform, workspace_id, key, value, updated_by, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (platform, workspace_id, key) DO UPDATE SET value=excluded.value, "
            "updated_by=excluded.updated_by, updated_at=excluded.updated_at",
            (platform, workspace_id, key, value, by, now),
        )

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str | None:
        """The reply mode an admin set for one channel, if any."""
        row = await self._one("SELECT mode FROM channel_modes WHERE platform=? AND workspace_id=? AND channel_id=?",
                              (platform, workspace_id, channel_id))
        return row[0] if row else None

    async def put_channel_mode(self, platform: str, workspace_id: str, channel_id: str, mode: str, *,
                               by: str | None, now: float) -> None:
        """Set one channel's reply mode."""
        await self._exec(
            "INSERT INTO channel_modes (platform, workspace_id, channel_id, mode, updated_by, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (platform, workspace_id, channel_id) DO UPDATE SET "
            "mode=excluded.mode, updated_by=excluded.updated_by, updated_at=excluded.updated_at",
            (platform, workspace_id, channel_id, mode, by, now),
        )

    async def knows_thread(self, platform: str, channel_id: str, thread_root: str) -> bool:
        """True when the bot has answered (or is answering) in this thread: follow-ups need no mention."""
        row = await self._one(
            "SELECT 1 FROM turns WHERE platform=? AND channel_id=? AND (thread_id=? OR message_id=?) LIMIT 1",
            (platform, channel_id, thread_root, thread_root),
        )
        return row is not None

    async def asked_in_thread(self, platform: str, channel_id: str, thread_root: str, user_id: str) -> bool:
        """True when this user asked in (or started) this thread: their follow-ups need no mention."""
        row = await self._one(
            "SELECT 1 FROM turns WHERE platform=? AND channel_id=? AND (thread_id=? OR message_id=?) AND user_id=? "
            "LIMIT 1", (platform, channel_id, thread_root, thread_root, user_id),
        )
        return row is not None

    async def session_ids(self, platform: str, workspace_id: str, prefix: str) -> set[str]:
        """Ids (keys starting with `prefix`) of the sessions this workspace opened."""
        rows = await self._all(
            "SELECT id FROM sessions WHERE platform=? AND workspace_id=? AND substr(key, 1, ?)=?",
            (platform, workspace_id, len(prefix), prefix),
        )
        return {row[0] for row in rows}

    async def prune(self, done_before: float) -> int:
        """Forget finished questions (and their answer-message links) older than the retention window."""

        async def work() -> int:
            await self._exec(
                "DELETE FROM answer_messages WHERE turn_id IN (SELECT id FROM turns WHERE done_at < ?)",
                (done_before,),
            )
            await self._exec(
                "DELETE FROM feedback WHERE turn_id IN (SELECT id FROM turns WHERE done_at < ?)", (done_before,)
            )
            cur = await self._exec("DELETE FROM turns WHERE done_at < ?", (done_before,))
            # Closed sessions go too (a returning key starts at generation 1 again; core rebinds on a 409).
            await self._exec("DELETE FROM sessions WHERE state='closed' AND closed_at < ?", (done_before,))
            return cur.rowcount

        return await self._tx(work)
