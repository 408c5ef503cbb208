"""Item 9: closed sessions are pruned like finished questions, and a user whose history was pruned still talks."""

from __future__ import annotations

import time

from core.models import ReplyTarget
from simulator import Simulator
from tests.relay_support import Build, Harness

TERMINAL = ReplyTarget("console", "local", "terminal", "terminal", "x", "you")


async def _ask_and_end(h: Harness) -> str:
    """One answered question, then the user ends the conversation (closed here and at Uppzy)."""
    before = len(h.console.answers())
    await h.ask("how do returns work?")
    await h.until(lambda: len(h.console.answers()) == before + 1)
    await h.relay.wait_idle()
    await h.relay.end_conversation(TERMINAL)
    return str(h.sim.calls("chat_async")[-1].body["session_id"])


async def test_a_pruned_user_comes_back_and_is_answered_without_an_error(harness: Build, sim: Simulator) -> None:
    """Two closed conversations, then everything past retention is pruned (no session row is left for the key):
    the next question first meets ids Uppzy already closed (409 twice) and is answered on a fresh stamped id."""
    h = await harness()
    assert [await _ask_and_end(h) for _ in range(2)] == ["console-user-you-terminal", "console-user-you-terminal-2"]
    assert await h.store.prune(time.time() + 1) == 2
    assert (await h.store._one("SELECT COUNT(*) FROM sessions"))[0] == 0
    _, qid = await h.ask("and exchanges?")
    await h.until(lambda: len(h.console.answers()) == 3)
    await h.relay.wait_idle()
    assert h.console.answers()[-1][0] == qid and h.console.notices() == []
    used = [c.body["session_id"] for c in sim.calls("chat_async")][2:]
    assert used[:2] == ["console-user-you-terminal", "console-user-you-terminal-2"]  # refused: closed at Uppzy
    assert used[2].startswith("console-user-you-terminal-3-")
    live = await h.store.live_session("console-user-you-terminal")
    assert live is not None and live.id == used[2]  # the conversation goes on there
