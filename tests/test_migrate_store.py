"""`uppzy-bot migrate-store`: a stopped bot's SQLite database copied into PostgreSQL, and no question lost with it.

The SQLite side is filled by a real relay (console adapter + simulator); the command runs as a real subprocess; the
PostgreSQL side is read back through PostgresStore and then served by a relay built on it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bots.runner import build_relay
from core.config import Secret
from core.models import InboundMessage, ReplyTarget, TurnState
from core.postgres_store import PostgresStore
from core.retry import RetryPolicy
from core.sqlite_store import SqliteStore
from core.store_copy import TABLES
from core.uppzy import UppzyClient
from core.uppzy_types import Timeouts
from simulator import Simulator
from tests.relay_support import FAST, Build, QuietConsole, close, fast_settings

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pa55word"


@dataclass
class Cli:
    """The outcome of one `python -m bots` run."""

    code: int
    out: str
    err: str


async def bot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Cli:
    """Run `python -m bots ARGS` as a subprocess (the test's event loop keeps running meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Cli(proc.returncode, out.decode(), err.decode())


def refused(result: Cli) -> str:
    """Assert a refusal: exit 2, one stderr line and no traceback; returns the line."""
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1, result
    assert "Traceback" not in result.err and PASSWORD not in result.err + result.out
    assert lines[0].startswith("uppzy-bot migrate-store: ")
    return lines[0]


def sqlite_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every copied table, read straight from the file, in a stable order."""
    conn = sqlite3.connect(db)
    try:
        return {t: sorted(conn.execute(f"SELECT {', '.join(c)} FROM {t}").fetchall(), key=repr)
                for t, c in TABLES.items()}
    finally:
        conn.close()


async def postgres_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The same tables read from PostgreSQL, booleans as SQLite's 0/1."""
    conn = await asyncpg.connect(url)
    try:
        result = {}
        for table, columns in TABLES.items():
            rows = await conn.fetch(f"SELECT {', '.join(columns)} FROM {table}")
            result[table] = sorted((tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows), key=repr)
        return result
    finally:
        await conn.close()


async def fill(harness: Build, sim: Simulator, tmp_path: Path) -> dict[str, str]:
    """A stopped bot's database: two answered questions (one rated), one pending at Uppzy, one queued behind it,
    a workspace setting and a channel mode. Returns question id → label of the unfinished ones."""
    sim.script("first", "answer one", latency=0.0)
    sim.script("second", "answer two", latency=0.0)
    sim.script("slow", "slow answer", latency=600.0)  # pending until the test says complete_now()
    sim.script("queued", "queued answer", latency=0.0)
    sim.script("new", "answer new", latency=0.0)
    h = await harness()
    await h.ask("first question")
    await h.ask("second question", channel="other")
    await h.until(lambda: len(h.console.answers()) == 2)
    _, slow = await h.ask("slow question")
    await h.until(lambda: len(sim.calls("chat_async")) == 3)
    _, queued = await h.ask("queued question")  # same conversation: waits behind the slow one
    turns = await h.store.active_turns()
    assert [(t.state, bool(t.request_id)) for t in turns] == [(TurnState.PENDING, True), (TurnState.QUEUED, False)]
    assert await h.store.claim_feedback(1, "good", "you", "button", now=time.time()) is None
    await h.store.finish_feedback(1, sent=True)
    await h.store.put_workspace_setting("console", "local", "idle_timeout", "900", by="admin", now=time.time())
    await h.store.put_channel_mode("console", "local", "other", "mention", by="admin", now=time.time())
    await h.store.save_installation("E1", None, "sealed-installation", now=1000.0)
    await h.store.issue_oauth_state("state-1", expires_at=2000.0)
    await h.store.set_credentials("slack", "T1", site_id="site-t1", sealed_key="sealed-key", now=1000.0)
    await close(h)
    return {slow: "slow", queued: "queued"}


async def test_migrate_copies_every_row_and_a_relay_on_postgres_finishes_the_unfinished_once(
        harness: Build, sim: Simulator, tmp_path: Path, pg_url: str) -> None:
    """The whole move: same rows turn by turn, unfinished questions adoptable, ids continue, and the pending one is
    polled and answered exactly once, never resubmitted; the queued one is submitted and answered after it."""
    unfinished = await fill(harness, sim, tmp_path)
    db = tmp_path / "relay.db"
    before = sqlite_rows(db)
    mtime = db.stat().st_mtime_ns
    result = await bot("migrate-store", "--to", pg_url, cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{db}"})
    assert result.code == 0, result
    assert "questions: 4 (2 unfinished" in result.out and "sessions: 2 (2 open)" in result.out
    assert "workspace settings: 1, channel modes: 1" in result.out and "feedback: 1" in result.out
    assert "installations: 1, workspace credentials: 1" in result.out
    assert (before["installations"], before["oauth_states"], before["workspace_credentials"]) == (
        [("E1", "", "sealed-installation", 1000.0)], [("state-1", 2000.0)],
        [("slack", "T1", "site-t1", "sealed-key", 1000.0)])
    assert "set DATABASE_URL to the PostgreSQL URL and start the replicas" in result.out
    assert db.stat().st_mtime_ns == mtime and sqlite_rows(db) == before  # only read
    assert await postgres_rows(pg_url) == before

    sqlite_store = await SqliteStore.open(str(db))  # turn by turn as each store returns them
    old = [await sqlite_store.get_turn(i) for i in range(1, 5)]
    await sqlite_store.close()
    store = await PostgresStore.open(pg_url, holder="replica-a")
    try:
        assert [await store.get_turn(i) for i in range(1, 5)] == old
        assert {t.target.message_id: t.state for t in await store.adopt(now=time.time(), mine=True)} == \
            {q: TurnState.PENDING if label == "slow" else TurnState.QUEUED for q, label in unfinished.items()}
        assert await store.workspace_settings("console", "local") == {"idle_timeout": "900"}
        assert await store.channel_mode("console", "local", "other") == "mention"
        assert await store.find_installation("E1", "T5") == "sealed-installation"
        assert await store.get_credentials("slack", "T1") == ("site-t1", "sealed-key")
        target = ReplyTarget("console", "local", "elsewhere", "elsewhere", "m-new", "you")
        new = await store.record_question(InboundMessage(target=target, text="a new question", event_key="m-new"),
                                          key="console:local:elsewhere:you", site_id="demo-site", idle_timeout=60,
                                          now=time.time())
        assert new is not None and new.id == 5
    finally:
        await store.close()

    sim.complete_now()
    store = await PostgresStore.open(pg_url, holder="replica-b")  # a replica starting on the migrated database
    uppzy = UppzyClient(base_url=sim.base_url, api_key=Secret("sim-key"), site_id="demo-site",
                        retry=RetryPolicy.no_wait(), timeouts=Timeouts(1, 2, 3))
    relay = build_relay(fast_settings(sim, replica_lease=0.2), store, uppzy, tuning=FAST)
    console = QuietConsole()
    relay.register(console)
    await relay.start(reaper=False)
    try:
        deadline = time.monotonic() + 10
        while len(console.answers()) < 3:
            assert time.monotonic() < deadline, console.transcript
            await asyncio.sleep(0.01)
        await relay.wait_idle()
        unfinished["m-new"] = "new"
        answers = [(unfinished[q], text) for q, text in console.answers()]
        assert sorted(answers) == [("new", "answer new"), ("queued", "queued answer"), ("slow", "slow answer")]
        assert [label for label, _ in answers if label != "new"] == ["slow", "queued"]  # in asking order
        # Three submits before the move, the queued and the new one after: the pending one was polled, not resubmitted.
        assert len(sim.calls("chat_async")) == 5
        assert sum("slow" in c.question for c in sim.chats.values()) == 1
    finally:
        await relay.stop()
        await uppzy.aclose()
        await store.close()


async def test_target_with_data_is_refused_and_left_as_it_was(harness: Build, sim: Simulator, tmp_path: Path,
                                                              pg_url: str) -> None:
    """A second copy into the same database is refused (ids are kept, a merge would collide); nothing changes."""
    await fill(harness, sim, tmp_path)
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    assert (await bot("migrate-store", "--from", db, "--to", pg_url, cwd=tmp_path)).code == 0
    copied = await postgres_rows(pg_url)
    line = refused(await bot("migrate-store", "--from", db, "--to", pg_url, cwd=tmp_path))
    assert "already has data" in line and "turns" in line
    assert await postgres_rows(pg_url) == copied


async def test_a_running_bot_is_refused(tmp_path: Path, pg_url: str) -> None:
    """While a bot holds the database (its lock file), the copy is refused with a line saying to stop it."""
    store = await SqliteStore.open(str(tmp_path / "live.db"))
    try:
        line = refused(await bot("migrate-store", "--from", f"sqlite:///{tmp_path / 'live.db'}", "--to", pg_url,
                                 cwd=tmp_path))
    finally:
        await store.close()
    assert "in use by a running uppzy-bot" in line and "stop it first" in line
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('turns')") is None  # refused before the target was touched
    finally:
        await conn.close()


async def test_bad_urls_are_one_line_each_and_never_show_the_password(tmp_path: Path, pg_url: str) -> None:
    """Source not SQLite, target not PostgreSQL, either missing or unreachable: exit 2, one line, no password."""
    db = tmp_path / "stopped.db"
    store = await SqliteStore.open(str(db))
    await store.close()
    src = f"sqlite:///{db}"
    unreachable = f"postgresql://bot:{PASSWORD}@127.0.0.1:1/uppzy"
    cases = {
        ("--from", f"postgresql://bot:{PASSWORD}@db:5432/x", "--to", pg_url): "names PostgreSQL",
        ("--to", pg_url): "is not a SQLite database file",  # DATABASE_URL's default file does not exist here
        ("--from", src, "--to", f"mysql://bot:{PASSWORD}@db/x"): "--to must be a PostgreSQL URL",
        ("--from", src, "--to", "postgresql://bot@db"): "--to must name a host and a database",
        ("--from", src, "--to", unreachable): "--to: cannot reach the PostgreSQL database 127.0.0.1:1/uppzy",
        ("--from", f"sqlite:///{tmp_path / 'none.db'}", "--to", pg_url): "no such file",
    }
    results = await asyncio.gather(*(bot("migrate-store", *args, cwd=tmp_path) for args in cases))
    for (args, expected), result in zip(cases.items(), results, strict=True):
        assert expected in refused(result), (args, result)
    (tmp_path / "junk.db").write_text("not a database")
    line = refused(await bot("migrate-store", "--from", f"sqlite:///{tmp_path / 'junk.db'}", "--to", pg_url,
                             cwd=tmp_path))
    assert "cannot read" in line or "not an uppzy-bot database" in line


async def test_a_bot_killed_mid_flight_is_copied_with_what_only_its_wal_held(tmp_path: Path, pg_url: str) -> None:
    """After a SIGKILL the last writes may sit in the -wal file only: the read-only copy still sees them."""
    live = tmp_path / "live.db"
    store = await SqliteStore.open(str(live))
    target = ReplyTarget("console", "local", "terminal", "terminal", "m1", "you", is_dm=True)
    turn = await store.record_question(InboundMessage(target=target, text="q", event_key="m1"), key="k",
                                       site_id="demo-site", idle_timeout=60, now=time.time())
    assert turn is not None
    await store.mark_submitted(turn.id, "req_1", now=time.time())
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):  # the files as a killed process leaves them: nothing checkpointed
        shutil.copyfile(f"{live}{suffix}", crashed / f"live.db{suffix}")
    await store.close()
    assert (crashed / "live.db-wal").stat().st_size > 0
    result = await bot("migrate-store", "--from", f"sqlite:///{crashed / 'live.db'}", "--to", pg_url, cwd=tmp_path)
    assert result.code == 0 and "questions: 1 (1 unfinished" in result.out, result
    conn = await asyncpg.connect(pg_url)
    try:
        row = await conn.fetchrow("SELECT state, request_id, holder FROM turns WHERE id = $1", turn.id)
    finally:
        await conn.close()
    assert tuple(row) == ("pending", "req_1", None)


async def test_a_failed_copy_is_rolled_back_whole(tmp_path: Path, pg_url: str) -> None:
    """A row PostgreSQL cannot take (here a timestamp SQLite kept as text) fails the one transaction: exit 1, one
    line, and not a row in the target."""
    db = tmp_path / "odd.db"
    store = await SqliteStore.open(str(db))
    await store.put_workspace_setting("console", "local", "idle_timeout", "900", by="admin", now=time.time())
    await store.close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO channel_modes VALUES ('console', 'local', 'c', 'mention', NULL, 'yesterday')")
    conn.close()
    result = await bot("migrate-store", "--from", f"sqlite:///{db}", "--to", pg_url, cwd=tmp_path)
    lines = result.err.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and "rolled back" in lines[0], result
    assert (await postgres_rows(pg_url))["workspace_settings"] == []


async def test_a_schema_v1_file_copies_without_the_later_tables(tmp_path: Path, pg_url: str) -> None:
    """A database from before settings existed (schema v1) copies its questions; settings and modes count 0."""
    from core.schema import MIGRATIONS

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0] + ";PRAGMA user_version=1;")
    conn.execute("INSERT INTO sessions VALUES ('s1','k',1,'console','local','demo-site','closed',1,2,60,3,'idle',1)")
    conn.commit()
    conn.close()
    result = await bot("migrate-store", "--from", f"sqlite:///{db}", "--to", pg_url, cwd=tmp_path)
    assert result.code == 0, result
    assert "sessions: 1 (0 open)" in result.out and "workspace settings: 0, channel modes: 0" in result.out
