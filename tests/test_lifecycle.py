"""The real `python -m bots run` process against FakeSlack (Socket Mode over loopback) and the Uppzy simulator:
stopped by SIGTERM/SIGINT or killed with SIGKILL mid-flight, then started again on the same database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core import messages
from simulator import Simulator
from tests.fakes.slack_fake import FakeSlack
from tests.fault_support import check_texts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """`python -m bots run` in a subprocess, configured only through its environment; stderr goes to a file."""

    def __init__(self, tmp_path: Path, sim: Simulator, slack: FakeSlack) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "bot.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_"))}
        self.env.update(
            UPPZY_BASE_URL=sim.base_url, UPPZY_API_KEY=sim.config.api_key, UPPZY_SITE_ID="demo-site",
            SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token, SLACK_API_BASE_URL=slack.api_url,
            DATABASE_URL=f"sqlite:///{self.db}", PORT=str(_free_port()), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
            PYTHONPATH=str(Path(__file__).resolve().parents[1]),  # this checkout, whatever the venv has installed
        )
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start one more process on the same database (its log is run-N.log)."""
        self.runs += 1
        log = (self.tmp_path / f"run-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bots", "run"], env=self.env, cwd=self.tmp_path,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self, run: int | None = None) -> str:
        """What run `run` (default: the latest) wrote."""
        return (self.tmp_path / f"run-{run or self.runs}.log").read_text(errors="replace")

    async def stop(self, sig: int, within: float = 10.0) -> tuple[int, float]:
        """Send `sig` and wait for the exit; returns (exit code, seconds it took)."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(sig)
        code = await asyncio.to_thread(self.proc.wait, within)
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """Terminate without cleanup (for teardown after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def state_of(self, event: dict[str, Any]) -> tuple[str, str | None] | None:
        """(state, request_id) of the question this event asked, if the process has recorded it."""
        return self.turn_states().get(event["ts"])

    def turn_states(self) -> dict[str, tuple[str, str | None]]:
        """message ts -> (state, request_id), read from the database file as another process would."""
        with sqlite3.connect(self.db, timeout=5) as conn:
            rows = conn.execute("SELECT message_id, state, request_id FROM turns").fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}


@pytest.fixture
async def world(make_sim: Callable[..., Awaitable[Simulator]], tmp_path: Path
                ) -> AsyncIterator[tuple[Simulator, FakeSlack, BotProcess]]:
    """The simulator and FakeSlack in this process, and a BotProcess pointed at both."""
    sim = await make_sim()
    async with FakeSlack() as slack:
        bot = BotProcess(tmp_path, sim, slack)
        try:
            yield sim, slack, bot
        finally:
            bot.kill()


def tag(i: int) -> str:
    """A marker unique to one question."""
    return f"[q{i:02d}]"


async def ask(slack: FakeSlack, sim: Simulator, i: int, *, latency: float) -> dict[str, Any]:
    """Mention the bot with question i, which Uppzy answers 'Answer [qii].' after `latency` seconds."""
    sim.script(tag(i), f"Answer {tag(i)}.", latency=latency)
    event = slack.app_mention_event(f"U{100 + i}", "C1", f"{tag(i)} how do returns work?")
    await slack.send_event(event)
    return event


def posts(slack: FakeSlack, event: dict[str, Any]) -> list[str]:
    """Texts the bot posted in this question's thread."""
    return [m["text"] for m in slack.posted_messages() if m.get("thread_ts") == event["ts"]]


async def settled(slack: FakeSlack, bot: BotProcess, states: dict[str, int]) -> None:
    """Wait until the database file shows every question finished (`states`: how many end in each state).

    A finished question is never picked up again, so once the process stops nothing more is posted for it.
    """
    def finished() -> bool:
        ended = [state for state, _ in bot.turn_states().values()]
        return {state: ended.count(state) for state in set(ended)} == states

    await slack.wait_until(finished, timeout=10, what=f"questions finished as {states} in the database")


def submitted(sim: Simulator, i: int) -> int:
    """How many chat_async calls for question i Uppzy received."""
    return sum(1 for c in sim.calls("chat_async") if tag(i) in c.body["message"])


async def test_sigterm_persists_pending_work_and_the_next_start_answers_it_once(
    world: tuple[Simulator, FakeSlack, BotProcess],
) -> None:
    """Injected: SIGTERM while 4 questions wait at Uppzy and a 5th is still being submitted; asserted: exit 0 within
    10 s with a clean-shutdown log and nothing posted, every question pending in the store with its request id, then
    the next start answers each question exactly once without submitting any of them again."""
    sim, slack, bot = world
    bot.start()
    await slack.wait_connected(1, timeout=15)
    events = [await ask(slack, sim, i, latency=1.0) for i in range(4)]
    await slack.wait_until(lambda: all((bot.state_of(e) or ("",))[0] == "pending" for e in events), timeout=5,
                           what="4 questions accepted by Uppzy")
    sim.inject("chat_async", stall=0.5)  # Uppzy is slow to accept the 5th: its submit is in flight at the signal
    events.append(await ask(slack, sim, 4, latency=1.0))
    await slack.wait_until(lambda: bot.state_of(events[4]) == ("submitting", None), timeout=5,
                           what="the 5th question being submitted")

    code, took = await bot.stop(signal.SIGTERM)
    assert (code, took < 10) == (0, True), bot.log()
    assert "shutting down: no new events" in bot.log()
    assert "Traceback" not in bot.log()
    assert slack.posted_messages() == [] and slack.open_connections == 0
    states = bot.turn_states()
    assert len(states) == 5 and all(s == "pending" and rid for s, rid in states.values()), (states, bot.log())

    bot.start()
    await slack.wait_until(lambda: all(posts(slack, e) for e in events), timeout=15, what="answers after restart")
    await settled(slack, bot, {"answered": 5})
    code, took = await bot.stop(signal.SIGTERM)  # the process is gone: what Slack got is final
    assert (code, took < 10) == (0, True), bot.log()
    for i, event in enumerate(events):
        assert posts(slack, event) == [f"Answer {tag(i)}."]
        assert submitted(sim, i) == 1
    assert "resuming 5 unfinished questions" in bot.log()


async def test_sigint_stops_like_sigterm(world: tuple[Simulator, FakeSlack, BotProcess]) -> None:
    """Injected: SIGINT (Ctrl+C) while 2 questions wait at Uppzy; asserted: exit 0 within 10 s, a clean-shutdown
    log without a traceback, nothing posted, and both questions pending in the store for the next start."""
    sim, slack, bot = world
    bot.start()
    await slack.wait_connected(1, timeout=15)
    events = [await ask(slack, sim, i, latency=5.0) for i in range(2)]
    await slack.wait_until(lambda: all((bot.state_of(e) or ("",))[0] == "pending" for e in events), timeout=5,
                           what="2 questions accepted by Uppzy")
    code, took = await bot.stop(signal.SIGINT)
    assert (code, took < 10) == (0, True), bot.log()
    assert "shutting down: no new events" in bot.log() and "Traceback" not in bot.log()
    assert slack.posted_messages() == [] and slack.open_connections == 0
    assert [state for state, _ in bot.turn_states().values()] == ["pending", "pending"]


async def test_kill_9_mid_flight_through_slack_then_restart_answers_each_question_once(
    world: tuple[Simulator, FakeSlack, BotProcess],
) -> None:
    """Injected: SIGKILL while 3 questions wait at Uppzy and a 4th is mid-submit; asserted: the next start posts each
    waiting answer exactly once without resubmitting, and the 4th gets one 'lost while restarting' apology, since
    Uppzy may or may not have it."""
    sim, slack, bot = world
    bot.start()
    await slack.wait_connected(1, timeout=15)
    events = [await ask(slack, sim, i, latency=1.0) for i in range(3)]
    await slack.wait_until(lambda: all((bot.state_of(e) or ("",))[0] == "pending" for e in events), timeout=5,
                           what="3 questions accepted by Uppzy")
    sim.inject("chat_async", stall=2.0)
    events.append(await ask(slack, sim, 3, latency=0.0))
    await slack.wait_until(lambda: bot.state_of(events[3]) == ("submitting", None), timeout=5,
                           what="the 4th question being submitted")
    assert bot.proc is not None
    bot.proc.kill()
    assert await asyncio.to_thread(bot.proc.wait, 5) == -signal.SIGKILL
    assert slack.posted_messages() == []

    bot.start()
    await slack.wait_until(lambda: all(posts(slack, e) for e in events), timeout=15, what="posts after restart")
    await settled(slack, bot, {"answered": 3, "failed": 1})
    code, _ = await bot.stop(signal.SIGTERM)  # the process is gone: what Slack got is final
    assert code == 0, bot.log()
    for i, event in enumerate(events[:3]):
        assert posts(slack, event) == [f"Answer {tag(i)}."]
        assert submitted(sim, i) == 1
    assert posts(slack, events[3]) == [messages.LOST_IN_RESTART]  # exactly one reply: the apology
    check_texts(m["text"] for m in slack.posted_messages())
    assert submitted(sim, 3) <= 1  # killed mid-submit: Uppzy may or may not have it, but never twice
    assert not any(c.path.endswith(rid) for rid, chat in sim.chats.items() if tag(3) in chat.question
                   for c in sim.calls("chat_status")), "the lost question was polled after all"


async def _readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    import aiohttp

    url = f"http://127.0.0.1:{bot.env['PORT']}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as res:
        return res.status, await res.json()


async def test_slack_5xx_at_start_is_retried_while_readyz_says_not_ready(
    world: tuple[Simulator, FakeSlack, BotProcess],
) -> None:
    """Injected: Slack's auth.test answers 503 at start; asserted: the process keeps running (no exit 2), /readyz is
    503 with slack not ready, the retry connects a few seconds later, /readyz turns 200, a question is answered, and
    the log says what failed without blaming the token."""
    sim, slack, bot = world
    slack.fail_next("auth.test", error="service_unavailable", status=503)
    bot.start()
    await slack.wait_until(lambda: slack.calls_to("auth.test"), timeout=15, what="the first auth.test")
    status, body = await _readyz(bot)
    assert status == 503 and body["checks"]["slack"] is False, body
    assert bot.proc is not None and bot.proc.poll() is None, bot.log()
    await slack.wait_connected(1, timeout=15)
    await slack.wait_until(lambda: bot.proc is not None and "slack connected" in bot.log(), timeout=5,
                           what="the connected log line")
    assert (await _readyz(bot))[0] == 200
    event = await ask(slack, sim, 0, latency=0.0)
    await slack.wait_until(lambda: posts(slack, event), timeout=10, what="the answer")
    await settled(slack, bot, {"answered": 1})
    code, _ = await bot.stop(signal.SIGTERM)
    assert code == 0, bot.log()
    log = bot.log()
    assert "slack not connected (attempt 1): Slack's auth.test failed: HTTP 503 (service_unavailable)" in log, log
    assert "SLACK_BOT_TOKEN" not in log and "Traceback" not in log
