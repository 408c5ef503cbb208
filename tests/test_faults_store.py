"""SQLite busy: another connection holds the database's write lock while questions arrive and answers come back.

The store opens SQLite with a 10 s busy timeout, so a lock held for a second or two must only delay work: nothing
may be lost, answered twice, or end in an error.
"""

# The Slack fixtures are imported, not loaded with pytest_plugins: registering that plugin from here would
# change which global `fake` (Slack's or Discord's) later modules see. Test parameters shadow the imports.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fault_support import slack_outcomes
from tests.slack_support import fake, make_rig  # noqa: F401

if TYPE_CHECKING:
    from tests.slack_support import RigFactory

HOLD = 1.0


async def test_questions_and_answers_wait_out_a_held_write_lock(
    make_rig: RigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Injected: a second connection takes BEGIN IMMEDIATE for 1 s while 5 answers are due and 5 more mentions
    arrive; asserted: nothing is posted while the lock is held, then every question is answered exactly once,
    each asked once, with no ERROR logged."""
    rig = await make_rig(uppzy_poll_rate=500.0)
    for i in range(10):
        rig.sim.script(f"[q{i:02d}]", f"Answer [q{i:02d}].", latency=0.3 if i < 5 else 0.0)
    early = [await rig.mention(f"[q{i:02d}] how do returns work?", user=f"U{100 + i}") for i in range(5)]
    await rig.fake.wait_until(lambda: len(rig.sim.calls("chat_async")) == 5, what="the first 5 submitted")

    holder = sqlite3.connect(tmp_path / "slack-0.db", isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")  # the write lock: every writer must now wait (or fail with 'locked')
    locked_at = time.monotonic()
    try:
        late = [await rig.mention(f"[q{i:02d}] how do returns work?", user=f"U{100 + i}") for i in range(5, 10)]
        await asyncio.sleep(HOLD)
        assert rig.fake.posted_messages() == [], "something was posted while the store could not record it"
        assert len(rig.sim.calls("chat_async")) == 5, "a question was submitted before it was stored"
    finally:
        holder.execute("COMMIT")
        holder.close()
    events = early + late
    await rig.fake.wait_until(lambda: all(rig.posts_in(e["ts"]) for e in events), timeout=8,
                              what="a post in every thread")
    await rig.relay.wait_idle()
    assert time.monotonic() - locked_at >= HOLD
    assert slack_outcomes(rig.fake, events) == ["answer"] * 10
    for i, event in enumerate(events):
        assert f"Answer [q{i:02d}]." in rig.posts_in(event["ts"])[0]["text"]
        assert len([c for c in rig.sim.calls("chat_async") if f"[q{i:02d}]" in c.body["message"]]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
