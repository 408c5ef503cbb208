"""Restart safety: unfinished questions resume from the store, each answer posted once, nothing resubmitted."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.health import StoreUnavailable
from core.messages import TIMED_OUT
from core.sqlite_store import SqliteStore
from simulator import Simulator
from tests.relay_support import FAST, Build, close


async def test_pending_request_resumes_after_restart(harness: Build, tmp_path: Path, sim: Simulator) -> None:
    """A request Uppzy accepted before a stop is polled by the next process and answered once, not resubmitted."""
    sim.script("returns", "answer after restart", latency=0.6)
    first = await harness()
    _, qid = await first.ask("how do returns work?")
    await first.until(lambda: len(sim.calls("chat_async")) == 1)
    await close(first)
    second = await harness()
    await second.until(lambda: second.console.answers())
    await second.relay.wait_idle()
    assert second.console.answers() == [(qid, "answer after restart")]
    assert first.console.answers() == []
    assert len(sim.calls("chat_async")) == 1
    await close(second)


async def test_a_fetched_answer_is_kept_and_claimed_in_one_write(harness: Build) -> None:
    """Between Uppzy's answer and the post, one write: store_answer keeps the answer already claimed for posting
    (DELIVERING), so no separate claim_delivery statement runs on the way (a round trip per answer, ~0.25 ms of
    CPU on PostgreSQL)."""
    h = await harness()
    statements: list[str] = []
    await h.store._db.run(lambda c: c.set_trace_callback(statements.append))
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    kept = [sql for sql in statements if sql.startswith("UPDATE turns SET state='delivering', answer=")]
    claims = [sql for sql in statements if sql.startswith("UPDATE turns SET state='delivering' WHERE")]
    assert len(kept) == 1 and claims == [], statements
    await close(h)


async def test_queued_questions_resume_in_order(harness: Build, tmp_path: Path, sim: Simulator) -> None:
    """Questions waiting behind an in-flight one are submitted after a restart, still in asking order."""
    sim.script("one", "a1", latency=0.4)
    sim.script("two", "a2", latency=0.0)
    sim.script("three", "a3", latency=0.0)
    first = await harness()
    ids = [(await first.ask(q))[1] for q in ("q one", "q two", "q three")]
    await first.until(lambda: len(sim.calls("chat_async")) == 1)
    await close(first)
    second = await harness()
    await second.until(lambda: len(second.console.answers()) == 3)
    assert second.console.answers() == list(zip(ids, ["a1", "a2", "a3"], strict=True))
    assert len(sim.calls("chat_async")) == 3
    await close(second)


async def test_answer_being_posted_is_finished_once_after_restart(
        harness: Build, tmp_path: Path, sim: Simulator
) -> None:
    """An answer fetched but not yet posted when the process stopped is posted by the next one, once."""
    first = await harness()
    stuck = asyncio.Event()

    async def hang(target, answer, *, recovering=False):  # type: ignore[no-untyped-def]
        stuck.set()
        await asyncio.Event().wait()

    first.console.post_answer = hang  # type: ignore[method-assign]
    _, qid = await first.ask("how do returns work?")
    await asyncio.wait_for(stuck.wait(), 5)
    await close(first)
    second = await harness()
    await second.until(lambda: second.console.answers())
    await second.relay.wait_idle()
    assert [q for q, _ in second.console.answers()] == [qid]
    assert len(sim.calls("chat_async")) == 1 and len(sim.calls("chat_status")) >= 1
    await close(second)


async def test_submit_cut_off_by_a_stop_is_not_resubmitted(harness: Build, tmp_path: Path, sim: Simulator) -> None:
    """A question stopped mid-submit might be in Uppzy already, so the next process apologises, not resubmits."""
    sim.inject("chat_async", stall=1.0)
    first = await harness()
    _, qid = await first.ask("how do returns work?")
    await first.until(lambda: first.relay.parts.submission.in_flight == 1)  # on its way to Uppzy, stalled
    await close(first)
    second = await harness()
    await second.until(lambda: second.console.notices())
    await second.relay.wait_idle()
    assert [(k, q) for k, q, _ in second.console.notices()] == [("lost", qid)]
    # The first process's stalled call may or may not reach the simulator's log; the second never submits.
    assert len(sim.calls("chat_async")) <= 1 and second.console.answers() == []
    await close(second)


def _demo(db: Path, sim: Simulator, *, stdin: int | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_"))}
    env.update(UPPZY_BASE_URL=sim.base_url, UPPZY_API_KEY="sim-key", UPPZY_SITE_ID="demo-site",
               LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bots", "demo", "--external", "--db", str(db), "--drain", "20"],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=db.parent,
    )


async def test_kill_9_mid_flight_then_restart_answers_each_question_once(tmp_path: Path, sim: Simulator) -> None:
    """A real process killed with SIGKILL mid-flight: the restarted one answers every question exactly once."""
    sim.script("alpha", "answer alpha", latency=0.0)
    sim.script("beta", "answer beta", latency=5.0)  # still pending at its first poll, wherever that is planned
    sim.script("gamma", "answer gamma", latency=0.0)
    db = tmp_path / "kill.db"
    proc = _demo(db, sim, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("alpha question\nbeta question\ngamma question\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 15

    def beta_polled() -> bool:  # polled means its request_id is in the store: the answer is not ready yet
        beta = [rid for rid, chat in sim.chats.items() if "beta" in chat.question]
        return bool(beta) and any(r.path.endswith(beta[0]) for r in sim.calls("chat_status"))

    while not beta_polled():
        assert time.monotonic() < deadline, "the demo process never submitted and polled beta"
        await asyncio.sleep(0.01)
    assert sim.state_of(next(r for r, c in sim.chats.items() if "beta" in c.question)) == "pending"
    os.kill(proc.pid, signal.SIGKILL)
    first_out, _ = await asyncio.to_thread(proc.communicate)
    assert proc.returncode == -signal.SIGKILL

    second = _demo(db, sim, stdin=subprocess.DEVNULL)
    second_out, second_err = await asyncio.to_thread(second.communicate, timeout=40)
    assert second.returncode == 0, second_err
    # One conversation, so one question in flight: alpha answered, beta pending (killed), gamma still queued.
    assert re.findall(r"uppzy ▸ answer to “(\w+) question”", first_out) == ["alpha"], first_out
    assert len(re.findall(r"uppzy ▸ answer", second_out)) == 2, second_out
    for word, out in (("alpha", first_out), ("beta", second_out), ("gamma", second_out)):
        assert (first_out + second_out).count(f"answer {word}") == 1 and f"answer {word}" in out
    assert len(sim.calls("chat_async")) == 3  # beta was resumed by polling, never resubmitted


async def test_answers_wait_for_a_platform_that_connects_late(harness: Build, tmp_path: Path, sim: Simulator) -> None:
    """An answer ready before its platform is connected is posted as soon as the adapter registers."""
    from core.models import TurnState

    h = await harness()
    console = h.relay.parts.platforms.remove("console")
    _, qid = await h.ask("how do returns work?")

    async def ready() -> bool:
        turns = await h.store.active_turns()
        return bool(turns) and turns[0].state is TurnState.DELIVERING  # kept, waiting for its platform

    deadline = time.monotonic() + 5
    while not await ready():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    h.relay.register(console)
    await h.until(lambda: h.console.answers())
    assert [q for q, _ in h.console.answers()] == [qid]
    await close(h)


async def test_a_stop_starts_no_new_submit_while_draining(harness: Build, sim: Simulator) -> None:
    """Submits waiting for a slot at shutdown stay queued (sent by the next start), never cut off as "lost"."""
    from dataclasses import replace

    from tests.relay_support import FAST

    sim.inject("chat_async", stall=0.3)  # the first submit frees the only slot while the stop drains…
    sim.inject("chat_async", stall=1.5)  # …and a second one started then would still be on its way at the end
    first = await harness(tuning=replace(FAST, submit_concurrency=1))
    _, q1 = await first.ask("how do returns work?", user="U1")
    _, q2 = await first.ask("how do returns work?", user="U2")
    await first.until(lambda: first.relay.parts.submission.in_flight == 2)  # one sending, one waiting
    await first.relay.stop(drain=0.8)
    await close(first)
    second = await harness()
    await second.until(lambda: len(second.console.answers()) == 2, timeout=5)
    await second.relay.wait_idle()
    assert sorted(q for q, _ in second.console.answers()) == sorted([q1, q2]), second.console.transcript
    assert second.console.notices() == []


async def test_a_resumed_question_whose_connection_cannot_be_read_ends_with_the_timeout_notice(
        harness: Build, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected at the store boundary: after a restart, the workspace's Uppzy connection cannot be read (the store
    keeps failing that read). The resumed question is not left pending, holding its conversation, until the next
    restart: past its deadline it gets the timeout notice, once."""
    sim.script("returns", "too late", latency=30.0)
    first = await harness()
    await first.ask("how do returns work?")
    await first.until(lambda: len(sim.calls("chat_async")) == 1)
    await close(first)

    async def unreadable(self: object, *args: object, **kwargs: object) -> object:
        raise StoreUnavailable("the database cannot be read: disk I/O error")

    monkeypatch.setattr(SqliteStore, "get_credentials", unreadable)
    second = await harness(tuning=dataclasses.replace(FAST, recovery_grace=0.2), uppzy_answer_timeout=1.0)
    await second.until(lambda: any(TIMED_OUT in line for line in second.console.transcript), timeout=6)
    assert second.console.answers() == []
    assert sum(TIMED_OUT in line for line in second.console.transcript) == 1
