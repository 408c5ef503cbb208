"""Replicas in one process (two relays, each its own PostgresStore on one database): a dead replica's questions are
adopted and answered once, the reaper's leadership moves only when the leader's lease lapsed, a replica whose own
lease lapsed rejoins and finishes what is still its own, and an admin change through one replica reaches the other."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

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
