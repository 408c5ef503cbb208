"""The SQLite store: migrations upgrade an existing file, WAL is on, ids and dedupe hold."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from core.models import InboundMessage, ReplyTarget
from core.schema import MIGRATIONS
from core.sqlite_store import SqliteStore
from core.sqlite_thread import DbThread


def _question(event: str, user: str = "U1") -> InboundMessage:
    target = ReplyTarget("slack", "T1", "C1", "C1", event, user)
    return InboundMessage(target=target, text="hello", event_key=event)


async def test_old_file_is_upgraded_in_place_keeping_its_data(tmp_path: Path) -> None:
    """A database written by the first schema version opens under the newest one with its data intact."""
    path = str(tmp_path / "old.db")
    old = SqliteStore(await DbThread.start(partial(sqlite3.connect, path, isolation_level=None)))
    assert await old.migrate(target=1) == 1
    turn = await old.record_question(_question("1.0"), key="slack-user-U1-C1", site_id="s", idle_timeout=60,
                                     now=time.time())
    assert turn is not None
    await old.close()

    store = await SqliteStore.open(path)
    try:
        assert (await store._one("PRAGMA user_version"))[0] == len(MIGRATIONS)
        assert (await store._one("PRAGMA journal_mode"))[0] == "wal"
        kept = await store.get_turn(turn.id)
        assert kept is not None and kept.session_id == "slack-user-U1-C1"
        await store.put_channel_mode("slack", "T1", "C1", "all", by="U9", now=time.time())
        assert await store.channel_mode("slack", "T1", "C1") == "all"
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file from a newer release is not silently downgraded or corrupted."""
    path = str(tmp_path / "new.db")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this program"):
        await SqliteStore.open(path)


async def test_session_ids_rotate_after_close_and_never_repeat(tmp_path: Path) -> None:
    """After a close the same conversation key opens '-2', then '-3'; a closed id is never reused."""
    store = await SqliteStore.open(str(tmp_path / "s.db"))
    try:
        ids = []
        for n in range(3):
            turn = await store.record_question(_question(f"{n}.0"), key="k", site_id="s", idle_timeout=60, now=n)
            assert turn is not None
            ids.append(turn.session_id)
            await store.mark_failed(turn.id, "x", now=n)
            row = await store.live_session("k")
            assert row is not None and await store.claim_for_close(row.id, idle_at=None)
            await store.mark_closed(row.id, "user", now=n)
        assert ids == ["k", "k-2", "k-3"]
        assert await store.record_question(_question("0.0"), key="k", site_id="s", idle_timeout=60, now=9) is None
    finally:
        await store.close()


async def test_answer_lookup_is_per_channel_when_ids_repeat(tmp_path: Path) -> None:
    """Slack ts values are unique only within a channel: the same ts in two channels maps to two answers."""
    store = await SqliteStore.open(str(tmp_path / "a.db"))
    try:
        turns = []
        for channel in ("C1", "C2"):
            target = ReplyTarget("slack", "T1", channel, channel, f"q-{channel}", "U1")
            msg = InboundMessage(target=target, text="hi", event_key=f"{channel}:q")
            turn = await store.record_question(msg, key=f"k-{channel}", site_id="s", idle_timeout=60, now=1.0)
            assert turn is not None
            await store.mark_answered(turn.id, ["1700000000.000100"], now=2.0)
            turns.append(turn.id)
        found = [await store.turn_for_message("slack", "1700000000.000100", c) for c in ("C1", "C2")]
        assert [t.id for t in found if t] == turns
    finally:
        await store.close()


@pytest.mark.parametrize("alias", ["symlink", "dotdot"])
async def test_the_same_file_under_another_name_is_still_one_process(tmp_path: Path, alias: str) -> None:
    """The lock is on the resolved file: a symlink or a `..` path to an open database is refused at start."""
    from core.config import ConfigError

    real = tmp_path / "data" / "bot.db"
    first = await SqliteStore.open(str(real))
    if alias == "symlink":
        (tmp_path / "link.db").symlink_to(real)
        other = tmp_path / "link.db"
    else:
        (tmp_path / "other").mkdir()
        other = tmp_path / "other" / ".." / "data" / "bot.db"
    try:
        with pytest.raises(ConfigError, match="in use by another uppzy-bot process"):
            await SqliteStore.open(str(other))
    finally:
        await first.close()
    second = await SqliteStore.open(str(other))  # free again once the first has closed
    await second.close()


async def test_a_burst_of_questions_is_recorded_in_a_few_transactions(tmp_path: Path) -> None:
    """Group commit: 100 questions at once are committed in at most two transactions (one each before), and every
    caller still gets its own Turn."""
    store = await SqliteStore.open(str(tmp_path / "burst.db"))
    try:
        begins: list[str] = []
        await store._db.run(lambda c: c.set_trace_callback(
            lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None))
        turns = await asyncio.gather(*(
            store.record_question(_question(f"{i}.0", user=f"U{i}"), key=f"k{i}", site_id="s", idle_timeout=60,
                                  now=1.0) for i in range(100)))
        assert [t.target.message_id for t in turns if t is not None] == [f"{i}.0" for i in range(100)]
        assert 1 <= len(begins) <= 2, begins
    finally:
        await store.close()


async def test_cancelled_callers_leave_no_transaction_open(tmp_path: Path) -> None:
    """A caller cancelled while its group commit runs: the question is recorded (the transaction finishes on the
    database thread); one cancelled before its commit started is not; either way no transaction is left open, the
    next question is recorded, and a close waits for the commit in flight."""
    path = str(tmp_path / "cancel.db")
    store = await SqliteStore.open(path)
    gate = threading.Event()
    busy = asyncio.ensure_future(store._db.run(lambda c: gate.wait(5)))  # holds the thread
    first = asyncio.create_task(store.record_question(_question("1.0"), key="k1", site_id="s", idle_timeout=60,
                                                      now=1.0))
    await asyncio.sleep(0)  # its commit is queued behind `busy`
    second = asyncio.create_task(store.record_question(_question("2.0"), key="k2", site_id="s", idle_timeout=60,
                                                       now=1.0))
    await asyncio.sleep(0)  # waiting for the next group commit
    first.cancel()
    second.cancel()
    gate.set()
    await busy
    await asyncio.gather(first, second, return_exceptions=True)
    assert first.cancelled() and second.cancelled()
    third = await store.record_question(_question("3.0"), key="k3", site_id="s", idle_timeout=60, now=1.0)
    assert third is not None
    assert await store._db.run(lambda c: c.in_transaction) is False
    assert [t.target.message_id for t in await store.active_turns()] == ["1.0", "3.0"]
    late = asyncio.create_task(store.record_question(_question("4.0"), key="k4", site_id="s", idle_timeout=60,
                                                     now=1.0))
    await asyncio.sleep(0)
    await store.close()  # the question handed over before the close is kept
    again = await SqliteStore.open(path)
    try:
        assert (await late) is not None
        assert [t.target.message_id for t in await again.active_turns()] == ["1.0", "3.0", "4.0"]
    finally:
        await again.close()


async def test_each_operation_is_one_round_trip_to_the_database_thread(tmp_path: Path) -> None:
    """Every call an answered question makes hands the database thread one function (a whole transaction), not
    one per statement."""
    store = await SqliteStore.open(str(tmp_path / "trips.db"))
    trips: list[str] = []
    real = store._db.submit

    def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return real(fn, *args, **kwargs)

    store._db.submit = counted  # type: ignore[method-assign]
    try:
        turn = await store.record_question(_question("1.0"), key="k", site_id="s", idle_timeout=60, now=1.0)
        assert turn is not None
        calls = [store.get_turn(turn.id), store.head_turn(turn.session_id), store.claim_submit(turn.id),
                 store.mark_submitted(turn.id, "r1", now=2.0), store.store_answer(turn.id, "a", 0.9, "high", now=3.0),
                 store.claim_delivery(turn.id), store.mark_answered(turn.id, ["9.0"], now=4.0),
                 store.rebind_session(turn.id, now=5.0), store.counts(), store.prune(0.0),
                 store.claim_feedback(turn.id, "good", "U1", "button", now=6.0)]
        for call in calls:
            before = len(trips)
            await call
            assert len(trips) == before + 1, trips[before:]
        assert len(trips) == 1 + len(calls)
    finally:
        await store.close()
