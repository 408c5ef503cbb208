"""The SQLite thread's group commit: operations queued together share one transaction, each keeps its own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from core.models import InboundMessage, ReplyTarget
from core.sqlite_store import SqliteStore
from core.sqlite_thread import DbThread


def _question(event: str, user: str) -> InboundMessage:
    return InboundMessage(target=ReplyTarget("slack", "T1", "C1", "C1", event, user), text="hello", event_key=event)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(tmp_path / "group.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def _traced(store: SqliteStore) -> list[str]:
    """Every transaction statement the connection runs from now on."""
    seen: list[str] = []
    await store._db.run(lambda c: c.set_trace_callback(
        lambda sql: seen.append(sql.split()[0]) if sql.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK") else None))
    return seen


def _hold(store: SqliteStore) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the database thread busy until the gate opens, so what is queued meanwhile is queued together."""
    gate = threading.Event()
    return gate, asyncio.ensure_future(store._db.run(lambda c: gate.wait(5), alone=True))


async def _queued_together(store: SqliteStore, *calls: Awaitable[Any]) -> list[Any]:
    """Queue every call while the thread is held, release it, and return each outcome (errors as values)."""
    gate, busy = _hold(store)
    pending = asyncio.gather(*calls, return_exceptions=True)
    await asyncio.sleep(0.05)
    gate.set()
    await busy
    return await pending


async def test_operations_queued_together_share_one_commit(store: SqliteStore) -> None:
    """Forty different writes queued while the thread is busy: one BEGIN and one COMMIT (forty of each before),
    and every caller gets its own result, readable afterwards."""
    turns = [await store.record_question(_question(f"{i}.0", f"U{i}"), key=f"k{i}", site_id="s", idle_timeout=60,
                                         now=1.0) for i in range(20)]
    assert all(t is not None for t in turns)
    seen = await _traced(store)
    gate, busy = _hold(store)
    calls = [store.claim_submit(t.id) for t in turns if t is not None]
    calls += [store.put_channel_mode("slack", "T1", f"C{i}", "all", by="U9", now=2.0) for i in range(20)]
    pending = asyncio.gather(*calls)
    await asyncio.sleep(0.05)
    assert not pending.done()  # nothing is answered before the commit
    gate.set()
    await busy
    results = await pending
    assert results[:20] == [True] * 20
    assert seen.count("BEGIN") == 1 and seen.count("COMMIT") == 1, seen
    assert [t.state.value for t in await store.active_turns()] == ["submitting"] * 20
    assert {await store.channel_mode("slack", "T1", f"C{i}") for i in range(20)} == {"all"}


async def test_an_operation_that_fails_in_a_group_is_undone_alone(store: SqliteStore) -> None:
    """A transaction that raises half-way inside a group leaves nothing behind and gets its own error; the writes
    queued before and after it are committed."""
    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO channel_modes (platform, workspace_id, channel_id, mode, updated_by, updated_at) "
                  "VALUES ('slack','T1','CX','all','U9',1.0)")
        raise ValueError("a bug half-way through")

    first, error, last = await _queued_together(
        store, store.put_channel_mode("slack", "T1", "C1", "all", by="U9", now=2.0), store._tx(half_then_fail),
        store.put_channel_mode("slack", "T1", "C2", "all", by="U9", now=2.0))
    assert isinstance(error, ValueError) and first is None and last is None
    assert await store.channel_mode("slack", "T1", "C1") == "all"
    assert await store.channel_mode("slack", "T1", "C2") == "all"
    assert await store.channel_mode("slack", "T1", "CX") is None
    assert await store._db.run(lambda c: c.in_transaction) is False


async def test_a_group_whose_transaction_fails_runs_each_operation_alone(store: SqliteStore) -> None:
    """The database refuses one operation of a group (an OperationalError, as a full disk gives): the group is
    rolled back and each operation runs again alone, so the others are committed and only that one fails."""
    seen = await _traced(store)

    def refused(c: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    first, error, last = await _queued_together(
        store, store.put_channel_mode("slack", "T1", "C1", "all", by="U9", now=2.0), store._db.run(refused),
        store.put_channel_mode("slack", "T1", "C2", "all", by="U9", now=2.0))
    assert isinstance(error, sqlite3.OperationalError) and first is None and last is None
    assert seen == ["BEGIN", "ROLLBACK"], seen  # the group rolled back; then each alone, in autocommit
    assert await store.channel_mode("slack", "T1", "C1") == "all"
    assert await store.channel_mode("slack", "T1", "C2") == "all"


async def test_jobs_that_run_alone_never_share_a_transaction(store: SqliteStore) -> None:
    """A job marked alone (connect, close, migrations) runs outside any transaction even when queued between
    grouped ones, and the grouped ones around it still run inside theirs."""
    inside = [store._db.run(lambda c: c.in_transaction) for _ in range(3)]
    alone = store._db.run(lambda c: c.in_transaction, alone=True)
    later = [store._db.run(lambda c: c.in_transaction) for _ in range(2)]
    assert await _queued_together(store, *inside, alone, *later) == [True, True, True, False, True, True]


async def test_a_stop_queued_behind_a_group_still_ends_the_thread(tmp_path: Path) -> None:
    """The stop taken from the queue while a group is gathered runs after the group: the group's jobs get their
    outcomes and the thread ends (it used to wait for another job forever)."""
    db = await DbThread.start(partial(sqlite3.connect, str(tmp_path / "stop.db"), isolation_level=None))
    gate = threading.Event()
    busy = db.submit(lambda c: gate.wait(5), alone=True)
    grouped = [db.submit(lambda c: c.in_transaction) for _ in range(2)]
    db._jobs.put(None)  # the stop, queued behind them
    gate.set()
    assert await busy  # type: ignore[misc]
    assert await asyncio.gather(*grouped) == [True, True]  # type: ignore[arg-type]
    await asyncio.to_thread(db._thread.join, 5)
    assert not db._thread.is_alive()
