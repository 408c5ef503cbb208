"""Replicas in one process (two relays, each its own PostgresStore on one database): a dead replica's questions are
adopted and answered once, the reaper's leadership moves only when the leader's lease lapsed, a replica whose own
lease lapsed rejoins and finishes what is still its own, and an admin change through one replica reaches the other."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from core.health import StoreUnavailable
from simulator import Simulator
from tests.relay_support import Build

LEASE = 0.6  # seconds; renewed every LEASE/4


async def test_a_dead_replicas_question_is_adopted_and_answered_once(harness: Build, sim: Simulator,
                                                                      pg_url: str) -> None:
    """Injected: replica A takes a question, Uppzy accepts it, then A stops dead (its tasks end, its lease is not
    given up). Asserted: B adopts it after A's lease lapsed, polls it without submitting again, answers it once;
    the idle reaper's leadership, A's first, is B's once A's lease lapsed."""
    sim.script("slow", "answer slow", latency=1.0)
    a = await harness(pg_url=pg_url, holder="replica-a", replica_lease=LEASE)
    await a.relay.parts.membership.beat(lambda turns: None, lambda: None)  # A leads the reaper: it came first
    b = await harness(pg_url=pg_url, holder="replica-b", replica_lease=LEASE)
    assert a.relay.parts.membership.leading() and not b.relay.parts.membership.leading()
    await a.ask("slow question")
    await a.until(lambda: len(sim.calls("chat_async")) == 1)
    await a.until(lambda: len(a.relay.poller) == 1)
    await a.relay.stop()  # dead: nothing runs for A any more, and its lease is left to lapse
    await b.until(lambda: b.console.answers(), timeout=10)
    assert [text for _, text in b.console.answers()] == ["answer slow"] and a.console.answers() == []
    assert len(sim.calls("chat_async")) == 1
    assert b.relay.parts.membership.adopted == 1
    await b.until(lambda: b.relay.parts.membership.leading(), timeout=5)


async def test_a_replica_whose_lease_lapsed_rejoins_and_finishes_its_own_question_once(
    harness: Build, sim: Simulator, pg_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Injected: replica A stalls past its lease (its clock jumps ahead by a minute, as after a long pause) while a
    question waits at Uppzy and no other replica took it. Asserted: A notices the lapse, drops its in-memory work
    and resumes the question from the store: answered once, submitted once."""
    caplog.set_level(logging.WARNING)
    sim.script("slow", "answer slow", latency=1.0)
    skew = [0.0]
    a = await harness(pg_url=pg_url, holder="replica-a", replica_lease=LEASE, clock=lambda: time.time() + skew[0])
    await a.ask("slow question")
    await a.until(lambda: len(a.relay.poller) == 1)
    skew[0] = 60.0
    await a.until(lambda: "lease lapsed" in caplog.text, timeout=5)
    await a.until(lambda: a.console.answers(), timeout=10)
    assert [text for _, text in a.console.answers()] == ["answer slow"]
    assert len(sim.calls("chat_async")) == 1


async def test_an_admin_change_through_one_replica_reaches_the_others_cache(harness: Build, pg_url: str) -> None:
    """A setting changed through replica A is what replica B reads next, without waiting for a cache to expire."""
    a = await harness(pg_url=pg_url, holder="replica-a", replica_lease=LEASE)
    b = await harness(pg_url=pg_url, holder="replica-b", replica_lease=LEASE)
    assert (await b.relay.settings("console", "local")).fallback_text != "ask in #help"
    assert await b.relay.channel_mode("console", "local", "C1") == "mention"
    await a.relay.set_setting("console", "local", "fallback_text", "ask in #help", by="admin")
    await a.relay.set_channel_mode("console", "local", "C1", "all", by="admin")

    async def seen() -> bool:
        return ((await b.relay.settings("console", "local")).fallback_text == "ask in #help"
                and await b.relay.channel_mode("console", "local", "C1") == "all")

    deadline = time.monotonic() + 5
    while not await seen():
        assert time.monotonic() < deadline, "replica B still reads its old cached settings"
        await asyncio.sleep(0.02)


def _failing_answered_records(monkeypatch: pytest.MonkeyPatch, store: object, down: list[bool]) -> None:
    """The store refuses to record answers as posted while `down[0]` (the database away for those writes)."""
    real = store.mark_answered  # type: ignore[attr-defined]

    async def mark_answered(*args: object, **kwargs: object) -> None:
        if down[0]:
            raise StoreUnavailable("the database cannot be reached (test)")
        await real(*args, **kwargs)

    monkeypatch.setattr(store, "mark_answered", mark_answered)


async def test_a_rejoin_records_posted_answers_before_resuming_and_posts_none_twice(
    harness: Build, sim: Simulator, pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected: replica A posts an answer while the database cannot record it, then A's lease lapses (an outage
    longer than the lease) and the database comes back. Asserted: A records the posted answer before resuming its
    questions from the store, so the answer is not posted a second time."""
    caplog.set_level(logging.INFO)
    sim.script("q", "answer q", latency=0.2)
    skew, down = [0.0], [True]
    a = await harness(pg_url=pg_url, holder="replica-a", replica_lease=LEASE, clock=lambda: time.time() + skew[0])
    _failing_answered_records(monkeypatch, a.store, down)
    await a.ask("q")
    await a.until(lambda: len(a.console.answers()) == 1, timeout=10)
    skew[0] = 60.0  # the next renewal finds the lease lapsed
    await a.until(lambda: "lease lapsed" in caplog.text, timeout=5)
    down[0] = False  # the database is back (the renewal just reached it)
    await a.until(lambda: a.relay._rejoin is not None and a.relay._rejoin.done(), timeout=10)
    await a.relay.wait_idle()  # nothing in flight and nothing unfinished in the store: a second post would be done
    assert [text for _, text in a.console.answers()] == ["answer q"]


async def test_a_rejoining_replica_does_not_take_live_replicas_questions(
    harness: Build, sim: Simulator, pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected: replica B has posted an answer it cannot record yet; replica A rejoins after its own lease lapsed
    (seen from A, every lease looks lapsed, as after an outage). Asserted: rejoining, A resumes only its own
    questions, not B's, so B's answer is posted once (and recorded by B when the database is back)."""
    caplog.set_level(logging.INFO)
    sim.script("q", "answer q", latency=0.2)
    skew, down = [0.0], [True]
    a = await harness(pg_url=pg_url, holder="replica-a", replica_lease=LEASE, clock=lambda: time.time() + skew[0])
    b = await harness(pg_url=pg_url, holder="replica-b", replica_lease=LEASE)
    _failing_answered_records(monkeypatch, b.store, down)
    await b.ask("q")
    await b.until(lambda: len(b.console.answers()) == 1, timeout=10)
    skew[0] = 60.0
    await a.until(lambda: "lease lapsed" in caplog.text, timeout=5)
    await a.until(lambda: a.relay._rejoin is not None and a.relay._rejoin.done(), timeout=10)
    skew[0] = 0.0  # A's clock agrees again; it adopts others' questions only a whole lease after rejoining
    down[0] = False
    await b.relay.wait_idle()  # B recorded its answer: nothing unfinished is left for anyone to resume
    await a.relay.wait_idle()
    assert [text for _, text in b.console.answers()] == ["answer q"] and a.console.answers() == []
