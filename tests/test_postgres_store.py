"""PostgresStore as several replicas see it: two or three stores (holders) on one fresh database per test.

Leases use the `now` passed in, so lapses are virtual time, not sleeps; only the budget tests run on the clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from core.config import ConfigError
from core.health import StoreUnavailable
from core.models import TurnState
from core.pg_budget import VALID
from core.pg_schema import MIGRATIONS
from core.postgres_store import PostgresStore
from tests.test_store_contract import T0, ask

LEASE = 0.2

Opener = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def open_store(pg_url: str) -> AsyncIterator[Opener]:
    """Factory: `await open_store("a")` opens a PostgresStore with holder "a" on this test's database."""
    opened: list[PostgresStore] = []

    async def factory(holder: str, **kwargs: object) -> PostgresStore:
        store = await PostgresStore.open(pg_url, holder=holder, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


async def _two(open_store: Opener) -> tuple[PostgresStore, PostgresStore]:
    a, b = await open_store("a"), await open_store("b")
    assert await a.renew(now=T0, lease=LEASE) and await b.renew(now=T0, lease=LEASE)
    return a, b


# ---- holders and adoption ----------------------------------------------------------------------------------------


async def test_adopt_takes_only_from_a_lapsed_or_stopped_holder(open_store: Opener) -> None:
    """While a's lease runs nothing is taken; once it lapsed b takes a's questions oldest first; a learns it
    lapsed when it renews, and keeps only what is still its own."""
    a, b = await _two(open_store)
    asked = [await ask(a, str(i), key=f"k{i}") for i in range(3)]
    assert all(asked) and await b.adopt(now=T0 + LEASE / 2) == []
    assert await b.renew(now=T0 + LEASE / 2, lease=1.0) and await b.renew(now=T0 + 1, lease=LEASE)  # a does not
    taken = await b.adopt(now=T0 + 1, limit=2)
    assert [t.id for t in taken] == [t.id for t in asked[:2]]  # type: ignore[union-attr]
    assert await a.renew(now=T0 + 1.1, lease=LEASE) is False  # lapsed: renewed, but told so
    assert [t.id for t in await a.adopt(now=T0 + 1.1, mine=True)] == [asked[2].id]  # type: ignore[union-attr]
    assert await b.adopt(now=T0 + 1.1) == []  # a is live again


async def test_a_clean_stop_hands_questions_over_at_once(open_store: Opener) -> None:
    """close() removes a's lease and job leases: b adopts and leads without waiting for a lapse."""
    a, b = await _two(open_store)
    assert await a.lead("reaper", now=T0, lease=60.0)
    turn = await ask(a, "1")
    assert turn is not None and await b.adopt(now=T0) == []
    assert not await b.lead("reaper", now=T0, lease=60.0)
    await a.close()
    assert [t.id for t in await b.adopt(now=T0)] == [turn.id]
    assert await b.lead("reaper", now=T0, lease=60.0)


async def test_renew_reports_a_lease_removed_behind_the_process(open_store: Opener) -> None:
    """A lease pruned away (a long pause) reads as lapsed; the first renew of a process never does."""
    a = await open_store("a")
    assert await a.renew(now=T0, lease=LEASE)
    assert await a.prune(T0 + 100) == 0  # the replicas row lapsed long ago: pruned
    assert await a.renew(now=T0 + 200, lease=LEASE) is False
    assert await a.renew(now=T0 + 200.1, lease=LEASE)


async def test_concurrent_adopters_never_get_the_same_question(open_store: Opener) -> None:
    """Forty orphaned questions, three stores adopting at once in small bites: each taken exactly once."""
    dead = await open_store("dead")
    assert await dead.renew(now=T0, lease=LEASE)
    for i in range(40):
        assert await ask(dead, str(i), key=f"k{i % 7}") is not None
    living = [await open_store(f"r{i}") for i in range(3)]
    for store in living:
        assert await store.renew(now=T0 + 5, lease=60.0)

    async def drain(store: PostgresStore) -> list[int]:
        got: list[int] = []
        while batch := await store.adopt(now=T0 + 5, limit=3):
            got += [t.id for t in batch]
        return got

    results = await asyncio.gather(*(drain(s) for s in living))
    every = [i for r in results for i in r]
    assert len(every) == len(set(every)) == 40


async def test_lead_moves_only_after_the_lease_lapsed(open_store: Opener) -> None:
    """Of two processes only the first leads; the other gets the job only once it lapsed, then keeps it."""
    a, b = await _two(open_store)
    assert await a.lead("reaper", now=T0, lease=LEASE)
    assert not await b.lead("reaper", now=T0 + LEASE / 2, lease=LEASE)
    assert await a.lead("reaper", now=T0 + LEASE / 2, lease=LEASE)  # renewed
    assert not await b.lead("reaper", now=T0 + LEASE, lease=LEASE)
    assert await b.lead("reaper", now=T0 + 1, lease=LEASE)
    assert not await a.lead("reaper", now=T0 + 1.1, lease=LEASE)
    results = await asyncio.gather(*(s.lead("other", now=T0, lease=LEASE) for s in (a, b) for _ in range(5)))
    assert len({s.holder for s, r in zip([a] * 5 + [b] * 5, results, strict=True) if r}) == 1  # one leader


# ---- questions across replicas -----------------------------------------------------------------------------------


async def test_racing_replicas_open_one_session_and_store_an_event_once(open_store: Opener) -> None:
    """Twenty questions of one key from two stores at once share one session; ids follow arrival within the key;
    one event redelivered to both stores ten times is stored once."""
    a, b = await _two(open_store)
    turns = await asyncio.gather(*(ask((a, b)[i % 2], str(i)) for i in range(20)))
    assert all(turns)
    assert len({t.session_id for t in turns}) == 1  # type: ignore[union-attr]
    assert sum(t.opened_session for t in turns) == 1  # type: ignore[union-attr]
    dups = await asyncio.gather(*(ask((a, b)[i % 2], "dup") for i in range(10)))
    assert sum(d is not None for d in dups) == 1
    created = [t.created_at for t in await a.active_turns()]
    assert len(created) == 21


async def test_claim_submit_across_replicas_makes_the_winner_the_holder(open_store: Opener) -> None:
    """Ten claims from two stores: one wins and becomes the holder, so only its `undelivered` lists the answer."""
    a, b = await _two(open_store)
    turn = await ask(a, "1")
    assert turn is not None
    wins = await asyncio.gather(*((a, b)[i % 2].claim_submit(turn.id) for i in range(10)))
    assert wins.count(True) == 1
    winner, loser = (a, b) if wins.index(True) % 2 == 0 else (b, a)
    await winner.mark_submitted(turn.id, "req", now=T0)
    await winner.store_answer(turn.id, "answer", None, None, now=T0)
    assert [t.id for t in await winner.undelivered(T0 + 1, 10)] == [turn.id]
    assert await loser.undelivered(T0 + 1, 10) == []
    assert (await loser.get_turn(turn.id)).state is TurnState.DELIVERING  # type: ignore[union-attr]


async def test_only_the_holder_may_keep_post_or_end_a_question(open_store: Opener) -> None:
    """Once B adopted A's question (A stalled past its lease), A can neither keep an answer for it, nor claim its
    post, nor end it with a notice: each returns False and changes nothing; B can."""
    a, b = await _two(open_store)
    turn = await ask(a, "1")
    assert turn is not None and await a.claim_submit(turn.id)
    await a.mark_submitted(turn.id, "req", now=T0)
    await b.renew(now=T0 + 100, lease=10)  # B lives on (its own lease had lapsed too: renewed all the same)
    assert [t.id for t in await b.adopt(now=T0 + 100)] == [turn.id]  # A's lease (from _two) lapsed long ago
    assert not await a.store_answer(turn.id, "stale", None, None, now=T0 + 101)
    assert await b.store_answer(turn.id, "answer", None, None, now=T0 + 101)
    assert not await a.claim_delivery(turn.id)
    assert not await a.begin_failure(turn.id, "timeout", "timeout", "sorry")
    assert (await b.get_turn(turn.id)).state is TurnState.DELIVERING  # claimed for posting as it was stored
    assert await b.claim_delivery(turn.id)  # a retry after a crash may claim it again: still B's
    assert (await b.get_turn(turn.id)).state is TurnState.DELIVERING  # type: ignore[union-attr]


# ---- the shared budget -------------------------------------------------------------------------------------------


async def test_three_replicas_never_exceed_the_budget_in_any_window(open_store: Opener) -> None:
    """Three stores hammer one budget for 1.5 s. Each grant's database time lies between the client's clock before
    and after it, so the grants that started within `b` and ended before `b + 1 + VALID` all lay in one counted
    window: together at most `rate`. Every store got some."""
    rate = 20
    stores = [await open_store(f"r{i}") for i in range(3)]
    log: list[tuple[float, float, int, int]] = []

    async def hammer(index: int, store: PostgresStore) -> None:
        budget = store.budget("status", rate)
        stop = time.monotonic() + 1.5
        while time.monotonic() < stop:
            before = time.monotonic()
            got = await budget.grant(3)
            log.append((before, time.monotonic(), got, index))
            if not got:
                await asyncio.sleep(max(0.002, min(0.05, budget.wait_time())))

    await asyncio.gather(*(hammer(i, s) for i, s in enumerate(stores)))
    granted = [entry for entry in log if entry[2]]
    for start, *_ in granted:
        window = [g for b, a, g, _ in granted if b >= start and a < start + 1 + VALID]
        assert sum(window) <= rate, window
    assert sum(g for *_, g, _ in granted) >= rate  # the budget was used
    assert {i for *_, i in granted} == {0, 1, 2}


async def test_an_idle_deployment_leaves_the_whole_budget_to_the_busy_replica(open_store: Opener) -> None:
    """Demand-driven: with two stores idle, the third gets the full rate at once, not a third of it."""
    busy, _, _ = [await open_store(f"r{i}") for i in range(3)]
    budget = busy.budget("close", 12)
    assert await budget.grant(100) == 12
    assert await budget.grant(1) == 0 and 0 < budget.wait_time() <= 1 + VALID


async def test_a_raised_rate_is_asked_at_once_not_waited_out(open_store: Opener) -> None:
    """The adaptive budget raises the rate while polls wait (slow start doubles it every 0.25 s): the wait the
    last grant reported was worked out at the old rate, so it no longer holds and the next grant gets the new room
    at once (a 500-question burst on PostgreSQL waited out 1.25-s hints: 1.3 polls per answer, p95 3.4 s)."""
    store = await open_store("r0")
    budget = store.budget("status", 10)
    assert await budget.grant(100) == 10
    assert await budget.grant(1) == 0 and budget.wait_time() > 0.5
    budget.rate = 40  # what AdaptiveBudget does before each grant
    assert budget.wait_time() == 0
    assert await budget.grant(100) == 30
    assert budget.wait_time() > 0.5  # full again, at the new rate


async def test_a_budget_below_one_per_second_spaces_its_calls(open_store: Opener) -> None:
    """rate 0.5: one call, then none for about two seconds, in every store."""
    a, b = await open_store("a"), await open_store("b")
    assert await a.budget("slow", 0.5).grant(3) == 1
    other = b.budget("slow", 0.5)
    assert await other.grant(1) == 0 and 1.5 < other.wait_time() <= 2 + VALID


# ---- settings notices --------------------------------------------------------------------------------------------


async def test_settings_changes_reach_other_replicas_and_a_lost_listener_says_so(open_store: Opener,
                                                                                pg_url: str) -> None:
    """b's setting, channel mode and idle timeout writes reach a's callback; when a's listening connection is
    killed, a hears (None, None), reconnects, and hears the next change."""
    a, b = await _two(open_store)
    heard: asyncio.Queue[tuple[str | None, str | None]] = asyncio.Queue()
    await a.watch_settings(lambda p, w: heard.put_nowait((p, w)))
    await b.put_workspace_setting("slack", "T1", "reply_mode", "all", by="U1", now=T0)
    assert await asyncio.wait_for(heard.get(), 5) == ("slack", "T1")
    await b.put_channel_mode("discord", "G1", "C1", "off", by="U1", now=T0)
    assert await asyncio.wait_for(heard.get(), 5) == ("discord", "G1")
    await b.set_idle_timeout("slack", "T2", 30.0)
    assert await asyncio.wait_for(heard.get(), 5) == ("slack", "T2")
    await b.set_credentials("slack", "T4", site_id="site-4", sealed_key="sealed", now=T0)  # a workspace's own key
    assert await asyncio.wait_for(heard.get(), 5) == ("slack", "T4")
    await _kill_others(pg_url)
    assert await asyncio.wait_for(heard.get(), 5) == (None, None)
    for _ in range(50):  # a reconnects with backoff (0.2 s first); b's pool reconnects on use
        try:
            await b.put_workspace_setting("slack", "T3", "reply_mode", None, by="U1", now=T0)
        except StoreUnavailable:
            pass
        try:
            got = await asyncio.wait_for(heard.get(), 0.2)
        except TimeoutError:
            continue
        if got == ("slack", "T3"):
            break
    else:
        pytest.fail("the listener never came back")


# ---- opening, migrating, losing the server -----------------------------------------------------------------------


async def test_replicas_opening_an_empty_database_together_all_start_without_errors(
        open_store: Opener, caplog: pytest.LogCaptureFixture) -> None:
    """Three opens at once: one migrates, the others wait for it; none fails or logs an error."""
    caplog.set_level(logging.INFO)
    stores = await asyncio.gather(*(open_store(f"r{i}") for i in range(3)))
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sum("migrated to schema" in r.getMessage() for r in caplog.records) == len(MIGRATIONS)  # one store did
    for store in stores:
        assert await ask(store, store.holder, key=store.holder) is not None


async def test_a_newer_schema_is_refused_clearly(open_store: Opener, pg_url: str) -> None:
    """A database migrated by a newer program: one ConfigError line naming DATABASE_URL and both versions."""
    store = await open_store("a")
    await store._pool.execute("INSERT INTO schema_migrations (version) VALUES (99)")
    with pytest.raises(ConfigError) as caught:
        await PostgresStore.open(pg_url, holder="b")
    assert caught.value.variable == "DATABASE_URL" and "v99" in str(caught.value) and "\n" not in str(caught.value)


def _with(url: str, *, port: int | None = None, db: str | None = None, password: str = "s3cr%40t") -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{port or parts.port}"
    return urlunsplit((parts.scheme, f"{parts.username}:{password}@{host}", "/" + (db or parts.path[1:]), "", ""))


@pytest.mark.parametrize("problem", ["wrong-port", "missing-database", "postgres-scheme"])
async def test_an_unreachable_database_is_one_config_error_line_without_the_password(pg_url: str,
                                                                                    problem: str) -> None:
    """A missing database: ConfigError("DATABASE_URL"); a wrong port: StoreUnavailable (nothing listens yet: `run`
    waits for it, then says ConfigError); each in one line naming host:port/db only. The `postgres://` form is
    accepted like `postgresql://`."""
    if problem == "postgres-scheme":
        store = await PostgresStore.open("postgres://" + _with(pg_url).split("://", 1)[1], holder="a")
        await store.close()
        return
    port = _closed_port()
    url = _with(pg_url, port=port) if problem == "wrong-port" else _with(pg_url, db="no_such_db")
    started = time.monotonic()
    expected = StoreUnavailable if problem == "wrong-port" else ConfigError
    with pytest.raises(expected) as caught:
        await PostgresStore.open(url, holder="a")
    text = str(caught.value)
    assert "\n" not in text and time.monotonic() - started < 10
    assert problem == "wrong-port" or caught.value.variable == "DATABASE_URL"  # type: ignore[attr-defined]
    assert "s3cr" not in text and "%40" not in text
    assert (str(port) if problem == "wrong-port" else "no_such_db") in text


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _kill_others(url: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid()")
    finally:
        await admin.close()


async def test_killed_connections_make_a_write_fail_cleanly_or_reconnect_and_health_recovers(
        open_store: Opener, pg_url: str) -> None:
    """Every server connection of the store killed: the next writes either raise StoreUnavailable (health fails)
    or go through on a fresh connection; within a few tries one goes through and health is ok. Never a hang."""
    store = await open_store("a", max_size=3)
    assert await ask(store, "1") is not None
    await _kill_others(pg_url)
    outcomes = []
    for _ in range(5):
        try:
            await asyncio.wait_for(store.probe(), 15)
            outcomes.append("ok")
            break
        except StoreUnavailable:
            outcomes.append("unavailable")
            assert not store.health.ok and store.health.reason
    assert outcomes[-1] == "ok" and store.health.ok, outcomes
    assert await asyncio.wait_for(ask(store, "2"), 15) is not None
    await store.ping()


async def test_a_read_only_database_is_refused_at_open(open_store: Opener, pg_url: str) -> None:
    """A database that cannot be written (here: read-only by default, as on a standby) is a ConfigError at open:
    the bot must not take questions it cannot keep."""
    await (await open_store("a")).close()
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'ALTER DATABASE "{urlsplit(pg_url).path[1:]}" SET default_transaction_read_only = on')
    finally:
        await admin.close()
    with pytest.raises(ConfigError) as caught:
        await PostgresStore.open(pg_url, holder="b")
    assert caught.value.variable == "DATABASE_URL" and "\n" not in str(caught.value)
