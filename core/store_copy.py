"""Copies a stopped bot's SQLite database into an empty PostgreSQL one, so a deployment moves to replicas without
losing a question: every row kept as it is (turn ids too), unfinished questions left for the first replica to adopt."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from core.config import ConfigError, shown_url
from core.pg_schema import SETTINGS_CHANNEL
from core.schema import MIGRATIONS
from core.sqlite_store import exclusive_lock  # the bot's own lock: while it is held, the bot is stopped

__all__ = ["CopyFailed", "CopyRefused", "CopyReport", "copy_sqlite_to_postgres"]

_BATCH = 2000  # rows read from SQLite per COPY chunk: memory stays flat for large databases
# Every table and column the SQLite store keeps; PostgreSQL has the same ones (plus turns.holder, left NULL).
TABLES: dict[str, tuple[str, ...]] = {
    "sessions": ("id", "key", "generation", "platform", "workspace_id", "site_id", "state", "created_at",
                 "last_activity", "idle_timeout", "closed_at", "close_reason", "last_turn_id"),
    "turns": ("id", "platform", "workspace_id", "channel_id", "message_channel_id", "message_id", "thread_id",
              "user_id", "is_dm", "extras", "event_key", "session_id", "site_id", "email", "text", "state",
              "request_id", "answer", "confidence_score", "confidence_level", "error_kind", "notice_kind", "notice",
              "created_at", "submitted_at", "ready_at", "done_at"),
    "answer_messages": ("platform", "message_id", "channel_id", "turn_id"),
    "feedback": ("turn_id", "rating", "user_id", "source", "state", "at"),
    "workspace_settings": ("platform", "workspace_id", "key", "value", "updated_by", "updated_at"),
    "channel_modes": ("platform", "workspace_id", "channel_id", "mode", "updated_by", "updated_at"),
    # Many workspaces (schema v4): sealed values are copied as they are (the same SECRETS_KEY opens them there).
    "installations": ("enterprise_id", "team_id", "sealed", "updated_at"),
    "oauth_states": ("state", "expires_at"),
    "workspace_credentials": ("platform", "workspace_id", "site_id", "sealed_key", "updated_at"),
}
_FINISHED = ("answered", "failed")


@dataclass(frozen=True)
class _Source:
    conn: sqlite3.Connection
    tables: frozenset[str]  # older files lack the tables of later migrations: those copy as empty


class CopyRefused(Exception):
    """The copy was not started: its text is the one line shown to the operator (exit 2); `side` says which
    database it is about ("source", "target" or None), for the command to name the option."""

    exit_code = 2

    def __init__(self, line: str, side: str | None = None) -> None:
        super().__init__(line)
        self.side = side


class CopyFailed(CopyRefused):
    """The copy started and was rolled back: nothing was written to the target (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class CopyReport:
    """What was copied, for the command's summary."""

    rows: dict[str, int]
    unfinished: int
    open_sessions: int
    last_turn_id: int


def _value(column: str, value: Any) -> Any:
    if column == "is_dm":
        return bool(value)
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "")  # SQLite text may hold NUL; PostgreSQL text cannot
    return value


@contextlib.contextmanager
def _source(path: str) -> Iterator[_Source]:
    """The SQLite file under the bot's lock, opened read-only in one read transaction (a consistent snapshot)."""
    if path == ":memory:":
        raise CopyRefused(":memory: is not a database file", "source")
    if not Path(path).is_file():
        raise CopyRefused(f"{path} is not a SQLite database file (no such file)", "source")
    try:
        lock = exclusive_lock(path)
    except ConfigError as exc:
        problem = str(exc).split(": ", 1)[-1]
        if "in use" in problem:
            problem = (f"{path} is in use by a running uppzy-bot (run or demo): stop it first, so that every "
                       "question's last state is copied")
        raise CopyRefused(problem, "source") from None
    conn: sqlite3.Connection | None = None
    try:
        try:
            conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("BEGIN")
            present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise CopyRefused(f"cannot read {path}: {exc}", "source") from None
        if version == 0 or not {"sessions", "turns"} <= present:
            raise CopyRefused(f"{path} is not an uppzy-bot database (it has no questions table)", "source")
        if version > len(MIGRATIONS):
            raise CopyRefused(f"{path} has schema v{version}, newer than this program (v{len(MIGRATIONS)}): run "
                              "the newer uppzy-bot's migrate-store", "source")
        yield _Source(conn, frozenset(present))
    finally:
        if conn is not None:
            conn.close()
        lock.close()


def _rows(source: _Source, table: str) -> Iterator[list[tuple[Any, ...]]]:
    if table not in source.tables:
        return
    columns = TABLES[table]
    cursor = source.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")
    while batch := cursor.fetchmany(_BATCH):
        yield [tuple(_value(c, v) for c, v in zip(columns, row, strict=True)) for row in batch]


def _last_turn_id(source: _Source) -> int:
    """The largest turn id ever handed out (AUTOINCREMENT's counter survives pruning), so no id is reused."""
    top = source.conn.execute("SELECT COALESCE(max(id), 0) FROM turns").fetchone()[0]
    if "sqlite_sequence" in source.tables:
        row = source.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='turns'").fetchone()
        top = max(top, row[0] if row else 0)
    return int(top)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


async def _copy_rows(source: _Source, target: asyncpg.Connection) -> dict[str, int]:
    """COPY every table in batches; a value PostgreSQL cannot take names its table."""
    rows = dict.fromkeys(TABLES, 0)
    for table, columns in TABLES.items():
        try:
            for batch in _rows(source, table):
                await target.copy_records_to_table(table, records=batch, columns=list(columns))
                rows[table] += len(batch)
        except (TypeError, ValueError) as exc:  # asyncpg's encoders: SQLite keeps any type in any column
            raise CopyFailed(f"the copy failed and was rolled back (no row was written): table {table} has a "
                             f"value PostgreSQL cannot take: {_reason(exc)}") from None
    return rows


async def copy_sqlite_to_postgres(path: str, url: str, prepare: Callable[[], Awaitable[None]]) -> CopyReport:
    """Copy the SQLite database at `path` into the PostgreSQL database at `url` in one transaction.

    The bot's lock on `path` is held throughout (a running bot is refused, and none can start meanwhile), the file
    is only read. `prepare()` creates the target's schema (as a replica's start does) once the source checks out.
    A target with any row in the copied tables is refused: ids are kept, so a merge would collide.
    """
    with _source(path) as source:
        await prepare()
        try:
            target = await asyncpg.connect(url, timeout=10.0)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise CopyRefused(f"cannot open the PostgreSQL database {shown_url(url)}: {type(exc).__name__}",
                              "target") from None
        try:
            async with target.transaction():
                # Until this commits, nothing else writes these tables: a second copy waits, then sees rows.
                await target.execute(f"LOCK TABLE {', '.join(TABLES)} IN SHARE ROW EXCLUSIVE MODE")
                found = {t: await target.fetchval(f"SELECT count(*) FROM (SELECT 1 FROM {t} LIMIT 1) x")
                         for t in TABLES}
                if any(found.values()):
                    busy = ", ".join(t for t, n in found.items() if n)
                    raise CopyRefused(f"the PostgreSQL database already has data ({busy}); migrate-store copies "
                                      "only into a database no bot has used: create an empty one", "target")
                rows = await _copy_rows(source, target)
                last = _last_turn_id(source)
                if last:  # the identity continues past every copied id: a new question never reuses one
                    await target.execute("SELECT setval(pg_get_serial_sequence('turns', 'id'), $1)", last)
                unfinished = await target.fetchval("SELECT count(*) FROM turns WHERE state <> ALL($1::text[])",
                                                   list(_FINISHED))
                open_sessions = await target.fetchval("SELECT count(*) FROM sessions WHERE state = 'open'")
                # Replicas already running on this database drop their cached settings at commit (LISTEN/NOTIFY).
                await target.execute(f"SELECT pg_notify('{SETTINGS_CHANNEL}', w.platform || E'\\t' || w.workspace_id)"
                                     " FROM (SELECT platform, workspace_id FROM workspace_settings UNION "
                                     "SELECT platform, workspace_id FROM channel_modes) w")
        except CopyRefused:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, sqlite3.Error) as exc:
            raise CopyFailed(f"the copy failed and was rolled back (no row was written): {_reason(exc)}") from None
        finally:
            await target.close()
    return CopyReport(rows=rows, unfinished=int(unfinished), open_sessions=int(open_sessions), last_turn_id=last)
