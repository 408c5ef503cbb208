"""Edge cases found in review: long downtime, repeated 409s, double submits, notices across a crash, two processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from core.config import ConfigError
from core.models import InboundMessage, ReplyTarget
from core.sqlite_store import SqliteStore
from simulator import Simulator
from tests.relay_support import Build, close


async def test_restart_after_long_downtime_still_fetches_the_waiting_answer(
        harness: Build, tmp_path: Path, sim: Simulator
) -> None:
    """Down for longer than the answer budget: the answer Uppzy already has is fetched and posted, not dropped."""
    sim.script("returns", "waited for you", latency=0.3)
    first = await harness()
    _, qid = await first.ask("how do returns work?")
    await first.until(lambda: len(sim.calls("chat_async")) == 1)
    await close(first)
    later = await harness(clock=lambda: time.time() + 200)  # 200 s later, budget 120 s
    await later.until(lambda: later.console.transcript)
    assert later.console.answers() == [(qid, "waited for you")]
    await close(later)


async def test_two_closed_ids_in_a_row_end_on_a_stamped_id_and_both_questions_are_answered(
        harness: Build, tmp_path: Path, sim: Simulator) -> None:
    """Two closed session ids in a row (e.g. the key's history was pruned): the second rebind takes a time-stamped
    id that cannot have been used, so the first question is answered and the queued one follows it there."""
    h = await harness()
    for sid in ("console-user-you-terminal", "console-user-you-terminal-2"):
        await h.uppzy.close_session(sid)
    sim.script("first", "first answer", latency=0.3)
    _, q1 = await h.ask("first question")
    _, q2 = await h.ask("how do returns work?")
    await h.until(lambda: len(h.console.transcript) == 2)
    assert [(k, q) for k, q, _ in h.console.transcript] == [("answer", q1), ("answer", q2)]
    used = [c.body["session_id"] for c in sim.calls("chat_async")]
    assert used[:2] == ["console-user-you-terminal", "console-user-you-terminal-2"]
    assert used[2].startswith("console-user-you-terminal-3-") and used[3] == used[2]
    await close(h)


async def test_a_question_can_be_claimed_for_submit_only_once(tmp_path: Path) -> None:
    """The queued→submitting compare-and-set lets exactly one of two racing submitters through."""
    store = await SqliteStore.open(str(tmp_path / "c.db"))
    try:
        msg = InboundMessage(ReplyTarget("slack", "T", "C", "C", "1.0", "U"), "hi", "C:1.0")
        turn = await store.record_question(msg, key="k", site_id="s", idle_timeout=60, now=1.0)
        assert turn is not None
        assert await asyncio.gather(store.claim_submit(turn.id), store.claim_submit(turn.id)) in (
            [True, False], [False, True])
    finally:
        await store.close()


async def test_failure_notice_interrupted_by_a_stop_is_posted_once_after_restart(harness: Build, tmp_path: Path,
                                                                                 sim: Simulator) -> None:
    """A notice being posted when the process stopped is posted by the next start, exactly once."""
    sim.script("broken", fail=True)
    first = await harness()
    posting = asyncio.Event()

    async def hang(target, notice):  # type: ignore[no-untyped-def]
        posting.set()
        await asyncio.Event().wait()

    first.console.post_notice = hang  # type: ignore[method-assign]
    _, qid = await first.ask("broken question")
    await asyncio.wait_for(posting.wait(), 5)
    await close(first)
    second = await harness()
    await second.until(lambda: second.console.notices())
    await second.relay.wait_idle()
    assert [(k, q) for k, q, _ in second.console.notices()] == [("failed", qid)]
    await close(second)


async def test_two_processes_cannot_share_a_database_file(tmp_path: Path) -> None:
    """A second store on the same file is refused with one clear line naming DATABASE_URL."""
    path = str(tmp_path / "one.db")
    store = await SqliteStore.open(path)
    try:
        with pytest.raises(ConfigError, match=r"DATABASE_URL: .* in use by another uppzy-bot process"):
            await SqliteStore.open(path)
    finally:
        await store.close()
    again = await SqliteStore.open(path)
    await again.close()
