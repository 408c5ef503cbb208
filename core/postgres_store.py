"""The PostgreSQL implementation of core.ports.Store on an asyncpg pool: any number of replicas on one database.

Every operation is one statement (or one server-side function) where it can be, so claims are compare-and-set in
the database and nothing races between a read and a write; the few multi-statement changes run in a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from core.config import ConfigError, shown_url
from core.health import StoreHealth, StoreUnavailable
from core.models import Counts, FeedbackClaim, InboundMessage, Turn, TurnState
from core.pg_budget import PostgresBudget
from core.pg_listen import SettingsListener
from core.pg_schema import MIGRATION_LOCK, MIGRATIONS
from core.pg_secrets import PostgresSecrets
from core.pg_sessions import PostgresSessions
from core.session_ids import session_id as make_session_id
from core.turn_rows import TURN_COLUMNS
from core.turn_rows import turn_from_row as _turn

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds per connection attempt (start-up retries are the caller's)
COMMAND_TIMEOUT = 10.0  # every statement: a hung server must not hang the bot
MIGRATION_WAIT = 60.0  # how long a replica waits for another one's migration
_UNFINISHED = "state NOT IN ('answered','failed')"  # a finished question never changes state again
_COLUMNS = TURN_COLUMNS
_T_COLUMNS = ", ".join("t." + c.strip() for c in _COLUMNS.split(","))




def _unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or written now, as opposed to a bug in a statement."""
    if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                        asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError,
                        asyncpg.ReadOnlySQLTransactionError, asyncpg.ConnectionDoesNotExistError)):
        return True
    if isinstance(exc, asyncpg.InternalClientError):  # a connection ended while idle, twice in a row
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


async def _fresh(call: Callable[[], Any]) -> Any:
    """`call()`, once more when the pooled connection turned out dead before anything was sent: a connection the
    server ended while idle (restart, pg_terminate_backend) fails its next use client-side, and the pool then
    replaces it."""
    try:
        return await call()
    except asyncpg.InternalClientError:
        return await call()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _place(url: str) -> str:
    """host:port/db of a URL, for one-line errors (never the user or password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    except ValueError:
        return shown_url(url)


def _count(status: str) -> int:
    """Rows an UPDATE/DELETE/INSERT touched, from its command tag."""
    return int(status.rsplit(" ", 1)[-1])


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Pooled connections keep no session state (advisory locks are per transaction or unlocked at once, LISTEN has
    its own connection), so asyncpg's reset query on every release is skipped: 20-25% of the CPU per answer
    (bench/pg_driver.py). asyncpg still rolls back a transaction left open."""


class PostgresStore(PostgresSessions, PostgresSecrets):
    """core.ports.Store on PostgreSQL: shared by replicas, each a `holder` with a lease in `replicas`."""

    shared = True

    def __init__(self, pool: asyncpg.Pool, url: str, *, holder: str) -> None:
        self._pool = pool
        self._url = url
        self.holder = holder
        self.health = StoreHealth()
        self._registered = False
        self._probes = 0
        self._listener: SettingsListener | None = None
        self._closed = False

    # ---- opening and migrating --------------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, holder: str, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        """Connect a pool to `url` and migrate. A server that cannot be reached now raises StoreUnavailable (the
        caller may wait for it); a refused login, a missing database or a newer schema is a ConfigError naming
        DATABASE_URL (host:port/db, never the password)."""
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT,
                                             command_timeout=COMMAND_TIMEOUT, reset=_no_session_state)
        except ValueError:  # asyncpg's URL parsing: its text may quote the URL, password and all
            raise ConfigError("DATABASE_URL", f"malformed PostgreSQL URL {shown_url(url)}") from None
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            # Not (yet) reachable: a server starting or restarting is worth waiting for (the caller retries).
            raise StoreUnavailable(f"cannot reach the PostgreSQL database {_place(url)}: {_reason(exc)}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # refused login, no such database…
            raise ConfigError("DATABASE_URL", f"cannot open the PostgreSQL database {_place(url)}: "
                                              f"{_reason(exc)}") from None
        store = cls(pool, url, holder=holder)
        try:
            await store.migrate()
            await store.probe()  # a real write: a read-only server (a standby) must not take questions
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                                StoreUnavailable)):
                raise ConfigError("DATABASE_URL", f"cannot prepare the PostgreSQL database {_place(url)}: "
                                                  f"{_reason(exc)}") from None
            raise
        return store

    async def migrate(self) -> int:
        """Apply the migrations this database has not had, one replica at a time; returns the schema version."""
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=MIGRATION_WAIT)
            try:
                if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                    await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                                       "applied_at timestamptz NOT NULL DEFAULT now())")
                version = await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
                if version > len(MIGRATIONS):
                    raise ConfigError("DATABASE_URL", f"the database {_place(self._url)} has schema v{version}, "
                                                      f"newer than this program (v{len(MIGRATIONS)}): run the newer "
                                                      "uppzy-bot, or a database of its own")
                for number in range(version, len(MIGRATIONS)):
                    async with conn.transaction():
                        await conn.execute(MIGRATIONS[number])
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number + 1)
                    log.info("store migrated to schema v%d", number + 1)
            finally:
                if not conn.is_closed():
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return max(version, len(MIGRATIONS))

    async def close(self) -> None:
        """Give up this process's lease and job leases (others adopt at once), stop listening, close the pool."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await self._listener.stop()
        with contextlib.suppress(Exception):
            await self._pool.execute("WITH r AS (DELETE FROM replicas WHERE id=$1) DELETE FROM leases WHERE holder=$1",
                                     self.holder, timeout=2.0)
        try:
            await asyncio.wait_for(self._pool.close(), 5.0)
        except (TimeoutError, Exception):
            self._pool.terminate()

    # ---- running statements with health ------------------------------------------------------------------

    async def _run(self, method: str, sql: str, *args: Any, write: bool = True) -> Any:
        try:
            result = await _fresh(lambda: getattr(self._pool, method)(sql, *args))
        except Exception as exc:
            if not _unavailable(exc):
                raise
            if write:
                self.health.failed(_reason(exc))
            raise StoreUnavailable(f"the database cannot be {'written' if write else 'read'}: "
                                   f"{_reason(exc)}") from exc
        if write:
            self.health.succeeded()
        return result

    async def _exec(self, sql: str, *args: Any) -> int:
        return _count(await self._run("execute", sql, *args))

    async def _row(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, *args, write=False)

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        return list(await self._run("fetch", sql, *args, write=False))

    async def _write_row(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, *args)

    async def _tx(self, work: Callable[[asyncpg.Connection], Any]) -> Any:
        """Run `work(conn)` in one transaction; its outcome is the store's health."""
        async def run() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                return await work(conn)
        return await self._run_call(run)

    async def _run_call(self, call: Callable[[], Any]) -> Any:
        try:
            result = await _fresh(call)
        except Exception as exc:
            if not _unavailable(exc):
                raise
            self.health.failed(_reason(exc))
            raise StoreUnavailable(f"the database cannot be written: {_reason(exc)}") from exc
        self.health.succeeded()
        return result

    # ---- replicas: leases, adoption, singleton jobs, budgets, settings notices --------------------------

    async def renew(self, *, now: float, lease: float) -> bool:
        """Upsert this process's lease; False when it had lapsed (or was removed) since the last renewal."""
        row = await self._write_row(
            "WITH old AS (SELECT lease_until FROM replicas WHERE id=$1), "
            "up AS (INSERT INTO replicas (id, lease_until, started_at) VALUES ($1, $2::float8 + $3::float8, $2) "
            "ON CONFLICT (id) DO UPDATE SET lease_until=excluded.lease_until) "
            "SELECT (SELECT lease_until FROM old) AS before", self.holder, now, lease,
        )
        registered, self._registered = self._registered, True
        if not registered:
            return True
        return row[0] is not None and row[0] >= now

    async def adopt(self, *, now: float, mine: bool = False, orphans: bool = True,
                    limit: int | None = None) -> list[Turn]:
        """Take unfinished questions whose holder's lease lapsed or is gone (with `orphans`; and with `mine` our own),
        oldest first.

        One statement; SKIP LOCKED keeps concurrent adopters apart, and the holder test is a subquery on the row
        itself, so a row re-checked after another adopter's commit sees its new, live holder."""
        rows = await self._run(
            "fetch",
            f"UPDATE turns SET holder=$1 WHERE id IN (SELECT t.id FROM turns t WHERE t.{_UNFINISHED} AND "
            "((t.holder = $1 AND $3::boolean) OR (t.holder IS DISTINCT FROM $1 AND NOT EXISTS "
            "(SELECT 1 FROM replicas r WHERE r.id = t.holder AND r.lease_until >= $2) AND $5::boolean)) "
            "ORDER BY t.id LIMIT $4 FOR UPDATE OF t SKIP LOCKED) "
            f"RETURNING {_COLUMNS}", self.holder, now, mine, limit, orphans,
        )
        return sorted((_turn(r) for r in rows), key=lambda t: t.id)

    async def lead(self, job: str, *, now: float, lease: float) -> bool:
        """Take or keep a singleton job's lease: one compare-and-set upsert."""
        row = await self._write_row(
            "INSERT INTO leases (job, holder, until) VALUES ($1, $2, $3::float8 + $4::float8) ON CONFLICT (job) DO "
            "UPDATE SET holder=excluded.holder, until=excluded.until "
            "WHERE leases.holder = excluded.holder OR leases.until < $3 RETURNING holder",
            job, self.holder, now, lease,
        )
        return row is not None

    def budget(self, name: str, rate: float) -> PostgresBudget:
        """The budget `name` shared by every process on this database (a ledger of grants)."""
        return PostgresBudget(name, rate, self._write_row)

    async def watch_settings(self, changed: Callable[[str | None, str | None], None]) -> None:
        """LISTEN for settings changes on a dedicated connection (core/pg_listen.py), reconnecting with backoff."""
        if self._listener is None and not self._closed:
            self._listener = SettingsListener(self._url, changed, connect_timeout=CONNECT_TIMEOUT)
            await self._listener.start()

    # ---- questions ---------------------------------------------------------------------------------------

    async def record_question(self, msg: InboundMessage, *, key: str, site_id: str, idle_timeout: float,
                              now: float) -> Turn | None:
        """One call to uppzy_record_question (a second one only when a key's later generation must be named)."""
        t = msg.target
        generation = 1
        try:
            for _ in range(5):
                row = await self._write_row(
                    "SELECT status, turn_id, session_id, next_generation FROM uppzy_record_question("
                    "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
                    key, make_session_id(key, generation), generation, t.platform, t.workspace_id, t.channel_id,
                    t.message_channel_id, t.message_id, t.thread_id, t.user_id, t.is_dm, json.dumps(t.extras),
                    msg.event_key, site_id, msg.email, msg.text, idle_timeout, now, self.holder,
                )
                if row["status"] != "name":
                    break
                generation = row["next_generation"]
            else:  # pragma: no cover - a key whose generations move under us five times in a row
                raise RuntimeError(f"could not name a new session for {key}")
        except asyncpg.UniqueViolationError:
            return None  # the same event under another key won (the unique (platform, event_key))
        if row["status"] == "duplicate":
            return None
        return Turn(id=row["turn_id"], target=t, session_id=row["session_id"], site_id=site_id,
                    state=TurnState.QUEUED, text=msg.text, email=msg.email, request_id=None, created_at=now,
                    submitted_at=None, opened_session=row["status"] == "opened")

    async def active_turns(self) -> list[Turn]:
        """Every unfinished question, oldest first."""
        return [_turn(r) for r in await self._rows(f"SELECT {_COLUMNS} FROM turns WHERE {_UNFINISHED} ORDER BY id")]

    async def head_turn(self, session_id: str) -> Turn | None:
        """The oldest unfinished question of a session."""
        row = await self._row(f"SELECT {_COLUMNS} FROM turns WHERE session_id=$1 AND {_UNFINISHED} "
                              "ORDER BY id LIMIT 1", session_id)
        return _turn(row) if row else None

    async def get_turn(self, turn_id: int) -> Turn | None:
        """One question by id."""
        row = await self._row(f"SELECT {_COLUMNS} FROM turns WHERE id=$1", turn_id)
        return _turn(row) if row else None

    async def set_state(self, turn_id: int, state: TurnState) -> None:
        """Move an unfinished question to `state`."""
        await self._exec(f"UPDATE turns SET state=$1 WHERE id=$2 AND {_UNFINISHED}", state.value, turn_id)

    async def claim_submit(self, turn_id: int) -> bool:
        """queued → submitting, compare-and-set; the winner becomes the holder."""
        return await self._exec("UPDATE turns SET state='submitting', holder=$2 WHERE id=$1 AND state='queued'",
                                turn_id, self.holder) == 1

    async def mark_submitted(self, turn_id: int, request_id: str, *, now: float) -> None:
        """Keep Uppzy's request id before anything else happens."""
        await self._exec(f"UPDATE turns SET state='pending', request_id=$1, submitted_at=$2 WHERE id=$3 AND "
                         f"{_UNFINISHED}", request_id, now, turn_id)

    async def rebind_session(self, turn_id: int, *, now: float, stamped: bool = False) -> str:
        """Close the question's session and move its unsubmitted questions to the key's next generation."""

        async def work(conn: asyncpg.Connection) -> str:
            old = await conn.fetchrow("SELECT s.id, s.key, s.idle_timeout, s.platform, s.workspace_id, t.site_id "
                                      "FROM turns t JOIN sessions s ON s.id = t.session_id WHERE t.id=$1", turn_id)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('uppzy_key:' || $1::text))", old["key"])
            await conn.execute("UPDATE sessions SET state='closed', closed_at=$1, close_reason='closed_upstream' "
                               "WHERE id=$2", now, old["id"])
            generation = await conn.fetchval("SELECT COALESCE(max(generation), 0) + 1 FROM sessions WHERE key=$1",
                                             old["key"])
            new_id = make_session_id(old["key"], generation, stamp=now if stamped else None)
            await conn.execute(
                "INSERT INTO sessions (id, key, generation, platform, workspace_id, site_id, state, created_at, "
                "last_activity, idle_timeout, last_turn_id) VALUES ($1,$2,$3,$4,$5,$6,'open',$7,$7,$8,$9)",
                new_id, old["key"], generation, old["platform"], old["workspace_id"], old["site_id"], now,
                old["idle_timeout"], turn_id,
            )
            await conn.execute("UPDATE turns SET session_id=$1 WHERE session_id=$2 AND state IN ('queued',"
                               "'submitting')", new_id, old["id"])
            return new_id

        return await self._tx(work)

    async def store_answer(self, turn_id: int, answer: str, score: float | None, level: str | None, *,
                           now: float) -> Turn | None:
        """pending → delivering with the answer (claimed for posting), only while this process holds the question
        (None: adopted by another, or not pending); the row comes back in the same round trip."""
        row = await self._write_row(
            "UPDATE turns SET state='delivering', answer=$1, confidence_score=$2, confidence_level=$3, ready_at=$4, "
            f"text=NULL WHERE id=$5 AND holder=$6 AND state='pending' RETURNING {_COLUMNS}",
            answer, score, level, now, turn_id, self.holder,
        )
        return _turn(row) if row is not None else None

    async def begin_failure(self, turn_id: int, kind: str, notice_kind: str, notice: str) -> bool:
        """→ notifying with the notice to post, only while this process holds the question."""
        return await self._exec(
            "UPDATE turns SET state='notifying', error_kind=$1, notice_kind=$2, notice=$3, text=NULL, answer=NULL "
            f"WHERE id=$4 AND holder=$5 AND {_UNFINISHED}", kind, notice_kind, notice, turn_id, self.holder,
        ) == 1

    async def claim_delivery(self, turn_id: int) -> bool:
        """ready/delivering → delivering, only while this process holds the question."""
        return await self._exec("UPDATE turns SET state='delivering' WHERE id=$1 AND holder=$2 AND "
                                "state IN ('ready','delivering')", turn_id, self.holder) == 1

    async def mark_answered(self, turn_id: int, message_ids: Sequence[str], *, now: float) -> None:
        """→ answered with the answer's messages, and the session's activity refreshed: one statement."""
        await self._exec(
            "WITH t AS (SELECT platform, session_id, message_channel_id FROM turns WHERE id=$1), "
            "a AS (INSERT INTO answer_messages (platform, message_id, channel_id, turn_id) "
            "SELECT DISTINCT t.platform, m, t.message_channel_id, $1::bigint FROM t, unnest($2::text[]) m "
            "ON CONFLICT (platform, message_id, channel_id) DO UPDATE SET turn_id=excluded.turn_id), "
            "u AS (UPDATE turns SET state='answered', done_at=$3, text=NULL, answer=NULL "
            f"WHERE id=$1 AND {_UNFINISHED}) "
            "UPDATE sessions s SET last_activity=GREATEST(s.last_activity, $3) FROM t WHERE s.id=t.session_id",
            turn_id, list(message_ids), now,
        )

    async def mark_failed(self, turn_id: int, kind: str, *, now: float) -> None:
        """→ failed; texts dropped."""
        await self._exec("UPDATE turns SET state='failed', error_kind=$1, done_at=$2, text=NULL, answer=NULL, "
                         f"notice=NULL WHERE id=$3 AND {_UNFINISHED}", kind, now, turn_id)

    async def postpone(self, turn_id: int, *, until: float) -> None:
        """A ready/delivering answer waits until `until` (kept in ready_at)."""
        await self._exec("UPDATE turns SET state='delivering', ready_at=$1 WHERE id=$2 AND "
                         "state IN ('ready','delivering')", until, turn_id)

    async def undelivered(self, before: float, limit: int) -> list[Turn]:
        """This process's answers due for a post, longest waiting first."""
        rows = await self._rows(
            f"SELECT {_COLUMNS} FROM turns WHERE holder=$1 AND state IN ('ready','delivering') "
            "AND COALESCE(ready_at, 0) <= $2 ORDER BY COALESCE(ready_at, 0), id LIMIT $3", self.holder, before, limit,
        )
        return [_turn(r) for r in rows]

    async def turn_for_message(self, platform: str, message_id: str, channel_id: str | None = None
                               ) -> Turn | None:
        """The question whose answer is this platform message."""
        row = await self._row(
            f"SELECT {_T_COLUMNS} FROM answer_messages a JOIN turns t ON t.id=a.turn_id WHERE a.platform=$1 "
            "AND a.message_id=$2 AND ($3::text IS NULL OR a.channel_id=$3) LIMIT 1", platform, message_id, channel_id,
        )
        return _turn(row) if row else None

    async def knows_thread(self, platform: str, channel_id: str, thread_root: str) -> bool:
        """A question was asked in (or started) this thread."""
        return await self._row("SELECT 1 FROM turns WHERE platform=$1 AND channel_id=$2 AND (thread_id=$3 OR "
                               "message_id=$3) LIMIT 1", platform, channel_id, thread_root) is not None

    async def asked_in_thread(self, platform: str, channel_id: str, thread_root: str, user_id: str) -> bool:
        """This user asked in (or started) this thread."""
        return await self._row("SELECT 1 FROM turns WHERE platform=$1 AND channel_id=$2 AND (thread_id=$3 OR "
                               "message_id=$3) AND user_id=$4 LIMIT 1", platform, channel_id, thread_root,
                               user_id) is not None

    async def session_ids(self, platform: str, workspace_id: str, prefix: str) -> set[str]:
        """Ids of the sessions this workspace opened under keys starting with `prefix` (a prefix, not a pattern)."""
        rows = await self._rows("SELECT id FROM sessions WHERE platform=$1 AND workspace_id=$2 AND "
                                "left(key, length($3::text)) = $3", platform, workspace_id, prefix)
        return {r[0] for r in rows}

    # ---- feedback ----------------------------------------------------------------------------------------

    async def claim_feedback(self, turn_id: int, rating: str, user_id: str, source: str, *,
                             now: float) -> FeedbackClaim | None:
        """Insert the one claim of an answer; the claim already there when it lost."""
        row = await self._write_row(
            "INSERT INTO feedback (turn_id, rating, user_id, source, state, at) VALUES ($1,$2,$3,$4,'sending',$5) "
            "ON CONFLICT (turn_id) DO NOTHING RETURNING 1", turn_id, rating, user_id, source, now,
        )
        if row is not None:
            return None
        seen = await self._row("SELECT rating, state, at FROM feedback WHERE turn_id=$1", turn_id)
        if seen is None:  # freed between the insert and the read (a failed send): report it as in use
            return FeedbackClaim(rating, "sending", now)  # type: ignore[arg-type]
        return FeedbackClaim(seen[0], seen[1], seen[2])

    async def take_over_feedback(self, turn_id: int, *, seen_at: float, rating: str, user_id: str, source: str,
                                 now: float) -> bool:
        """Replace a `sending` claim still stamped `seen_at`."""
        return await self._exec("UPDATE feedback SET rating=$1, user_id=$2, source=$3, at=$4 WHERE turn_id=$5 AND "
                                "state='sending' AND at=$6", rating, user_id, source, now, turn_id, seen_at) == 1

    async def finish_feedback(self, turn_id: int, *, sent: bool) -> None:
        """Confirm a rating, or free a `sending` claim."""
        if sent:
            await self._exec("UPDATE feedback SET state='sent' WHERE turn_id=$1", turn_id)
        else:
            await self._exec("DELETE FROM feedback WHERE turn_id=$1 AND state='sending'", turn_id)

    async def counts(self, platform: str | None = None, workspace_id: str | None = None) -> Counts:
        """Unfinished questions and open sessions, of one workspace or all."""
        scope = " AND ($1::text IS NULL OR (platform=$1 AND workspace_id=$2::text))"
        row = await self._row(f"SELECT (SELECT count(*) FROM turns WHERE {_UNFINISHED}{scope}), "
                              f"(SELECT count(*) FROM sessions WHERE state='open'{scope})", platform, workspace_id)
        return Counts(row[0], row[1])

    # ---- upkeep and readiness ----------------------------------------------------------------------------

    async def prune(self, done_before: float) -> int:
        """Forget old finished questions (links, feedback), sessions closed before the cutoff, long-gone replicas."""
        row = await self._write_row(
            "WITH gone AS (DELETE FROM turns WHERE done_at < $1 RETURNING id), "
            "a AS (DELETE FROM answer_messages WHERE turn_id IN (SELECT id FROM gone)), "
            "f AS (DELETE FROM feedback WHERE turn_id IN (SELECT id FROM gone)), "
            "s AS (DELETE FROM sessions WHERE state='closed' AND closed_at < $1), "
            "r AS (DELETE FROM replicas WHERE lease_until < $1), "
            "o AS (DELETE FROM oauth_states WHERE expires_at < $1) "
            "SELECT count(*) FROM gone", done_before,
        )
        return int(row[0])

    async def ping(self) -> None:
        """One trivial read."""
        await self._row("SELECT 1 FROM sessions LIMIT 1")

    async def probe(self) -> None:
        """One trivial real write (this process's probe row) and the health it shows."""
        self._probes += 1
        await self._exec("INSERT INTO store_probe (holder, n) VALUES ($1, $2) ON CONFLICT (holder) DO UPDATE SET "
                         "n=excluded.n, at=now()", self.holder, self._probes)
