"""Three real `uppzy-bot run` replicas on one PostgreSQL database, behind one fake Slack app that gives each event to
a random replica's Socket Mode connection: every question answered once, also when Slack redelivers to another
replica or a replica is killed with SIGKILL mid-burst; the status-poll budget holds for the deployment as a whole; idle
sessions are closed once, also those of a replica that died."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator import Simulator
from tests.fakes.slack_fake import FakeSlack
from tests.replica_support import Replicas, eventually, max_in_window

REPLICAS = 3


def tag(i: int) -> str:
    """A marker unique to one question."""
    return f"[r{i:02d}]"


@pytest.fixture
async def deployment(make_sim: Callable[..., Awaitable[Simulator]], pg_url: str, tmp_path: Path
                     ) -> AsyncIterator[tuple[Simulator, FakeSlack, Replicas]]:
    """The simulator and one fake Slack app in this process; replicas (not started) on a fresh database."""
    sim = await make_sim()
    async with FakeSlack(distribution="random", seed=11, redeliver_after=2.0) as slack:
        replicas = Replicas(tmp_path, pg_url, {
            "UPPZY_BASE_URL": sim.base_url, "UPPZY_API_KEY": sim.config.api_key, "UPPZY_SITE_ID": "demo-site",
            "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_BASE_URL": slack.api_url,
        })
        try:
            yield sim, slack, replicas
        finally:
            replicas.close()


async def start_all(slack: FakeSlack, replicas: Replicas, **env: str) -> None:
    """Start every replica at the same moment on the empty database (they race to migrate) and wait for all."""
    for index in range(REPLICAS):
        replicas.start(index, **env)
    for index in range(REPLICAS):
        await replicas.ready(index)
    await eventually(lambda: slack.open_connections == REPLICAS, timeout=10, what="one Slack socket per replica")


async def ask(slack: FakeSlack, sim: Simulator, i: int, *, latency: float, user: str | None = None,
              channel: str = "C1") -> dict[str, Any]:
    """Mention the bot with question i (Uppzy answers 'Answer [rii].' after `latency` s); event id Ev<i>."""
    sim.script(tag(i), f"Answer {tag(i)}.", latency=latency)
    event = slack.app_mention_event(user or f"U{100 + i}", channel, f"{tag(i)} how do returns work?")
    await slack.send_event(event, event_id=f"Ev{i:04d}")
    return event


def replies(slack: FakeSlack, event: dict[str, Any]) -> list[str]:
    """Texts posted in this question's thread."""
    return [m["text"] for m in slack.posted_messages() if m.get("thread_ts") == event["ts"]]


def submitted(sim: Simulator, i: int) -> int:
    """How many times question i reached Uppzy."""
    return sum(1 for c in sim.calls("chat_async") if tag(i) in c.body["message"])


def no_tracebacks(replicas: Replicas) -> None:
    """No replica logged a traceback or an ERROR line."""
    logs = replicas.all_logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


async def test_a_burst_is_answered_once_each_across_replicas_also_when_slack_redelivers(
    deployment: tuple[Simulator, FakeSlack, Replicas],
) -> None:
    """Injected: three replicas start together on an empty database; 24 questions, each event given to a random
    replica, 8 of them delivered a second time (same event_id, an ack Slack lost) to another random replica, and
    three questions of one user in one conversation. Asserted: all replicas ready (one migrated, none failed), each
    question submitted once and answered once, the one conversation's answers in asking order."""
    sim, slack, replicas = deployment
    await start_all(slack, replicas)
    events = [await ask(slack, sim, i, latency=0.3) for i in range(21)]
    for n, i in enumerate((21, 22, 23), start=1):  # one conversation: each recorded (by any replica) before the next
        events.append(await ask(slack, sim, i, latency=0.6 - 0.2 * n, user="U7", channel="C7"))
        await eventually(lambda n=n: _recorded_in(replicas, "C7", n), timeout=5, what=f"question {i} recorded")
    for i in range(0, 24, 3):  # a lost ack: Slack delivers the same event again, to whichever connection it picks
        await slack.send_event(events[i], event_id=f"Ev{i:04d}", retry_attempt=1, retry_reason="timeout")
    await eventually(lambda: all(replies(slack, e) for e in events), timeout=30,
                     what=lambda: f"answers to all 24 questions\n{replicas.all_logs()}")
    await eventually(lambda: _states_are(replicas, {"answered": 24}), timeout=5, what="24 answered in the database")
    for i, event in enumerate(events):
        assert replies(slack, event) == [f"Answer {tag(i)}."], i
        assert submitted(sim, i) == 1, i
    in_order = [m["thread_ts"] for m in slack.posted_messages() if m.get("channel") == "C7" and m.get("thread_ts")]
    assert in_order == [e["ts"] for e in events[21:]]  # one conversation: answered in asking order
    handled = {i for i in range(REPLICAS) if "question turn=" in replicas.log(i)}
    assert len(handled) >= 2, "the fake should have spread the events over the replicas"
    no_tracebacks(replicas)


async def test_a_replica_killed_mid_burst_leaves_nothing_unanswered(
    deployment: tuple[Simulator, FakeSlack, Replicas],
) -> None:
    """Injected: a burst of 24 questions over three replicas; after the first 12 reached Uppzy (3 s answers), SIGKILL
    of the replica holding the most, while the other 12 keep arriving (Slack redelivers what its dead connection
    never acked). Asserted: the survivors adopt its questions after the lease (3 s), poll what it submitted without
    submitting it again, and every question is answered exactly once, the last within a minute of the kill."""
    sim, slack, replicas = deployment
    await start_all(slack, replicas)
    events = [await ask(slack, sim, i, latency=3.0) for i in range(12)]
    await eventually(lambda: _all_pending(replicas, 12), timeout=10, what="12 questions accepted by Uppzy")
    holders = await replicas.holders()
    victim_holder = max(holders, key=lambda h: holders[h])
    victim = next(i for i, p in replicas.procs.items() if f"-{p.pid}-" in victim_holder)
    replicas.kill(victim)
    killed_at = time.monotonic()
    events += [await ask(slack, sim, i, latency=1.0) for i in range(12, 24)]
    await eventually(lambda: all(replies(slack, e) for e in events), timeout=60,
                     what=lambda: f"answers to every question after the kill\n{replicas.all_logs()}")
    assert time.monotonic() - killed_at < 60
    for i, event in enumerate(events):
        assert replies(slack, event) == [f"Answer {tag(i)}."], i
        assert submitted(sim, i) == 1, i
    survivors = [i for i in range(REPLICAS) if i != victim]
    assert any("adopted" in replicas.log(i) for i in survivors), replicas.all_logs()
    await eventually(lambda: _states_are(replicas, {"answered": 24}), timeout=5, what="24 answered in the database")
    no_tracebacks(replicas)


async def _recorded_in(replicas: Replicas, channel: str, count: int) -> bool:
    return len(await replicas.query("SELECT id FROM turns WHERE channel_id = $1", channel)) >= count


async def _holds_none(replicas: Replicas, holder: str) -> bool:
    return holder not in await replicas.holders()


async def _states_are(replicas: Replicas, expected: dict[str, int]) -> bool:
    return await replicas.states() == expected


async def _all_pending(replicas: Replicas, count: int) -> bool:
    return (await replicas.states()).get("pending", 0) == count


async def test_the_poll_budget_holds_for_the_deployment_and_idle_sessions_close_once(
    deployment: tuple[Simulator, FakeSlack, Replicas],
) -> None:
    """Injected: UPPZY_POLL_RATE=4 for the deployment, 20 questions with 1-2.5 s answers over three replicas, then
    idle sessions (2 s timeout) and the reaper's leader killed. Asserted: the status calls of all replicas together
    never exceed 4 in any one-second window, every question is answered once, and every session is closed exactly
    once by the deployment, the dead leader's share included."""
    sim, slack, replicas = deployment
    await start_all(slack, replicas, UPPZY_POLL_RATE="4", SESSION_IDLE_TIMEOUT="2s")
    events = [await ask(slack, sim, i, latency=1.0 + (i % 4) * 0.5) for i in range(20)]
    await eventually(lambda: all(replies(slack, e) for e in events), timeout=40,
                     what=lambda: f"answers to all 20 questions\n{replicas.all_logs()}")
    stamps = [c.at for c in sim.calls("chat_status")]
    assert max_in_window(stamps) <= 4, sorted(stamps)
    for i in range(20):
        assert submitted(sim, i) == 1
    leader = (await replicas.query("SELECT holder FROM leases WHERE job = 'idle-reaper'"))[0]["holder"]
    replicas.kill(next(i for i, p in replicas.procs.items() if f"-{p.pid}-" in leader))
    sessions = {row["id"] for row in await replicas.query("SELECT id FROM sessions")}
    assert len(sessions) == 20
    await eventually(lambda: {c.body["session_id"] for c in sim.calls("session_close")} >= sessions,
                     timeout=40, what=lambda: f"every session closed\n{replicas.all_logs()}")
    closes = [c.body["session_id"] for c in sim.calls("session_close")]
    assert len(closes) == len(set(closes)) == 20, closes
    no_tracebacks(replicas)


async def test_a_stalled_replica_that_comes_back_does_not_answer_twice(
    deployment: tuple[Simulator, FakeSlack, Replicas],
) -> None:
    """Injected: the replica holding the most of 9 questions waiting at Uppzy is frozen (SIGSTOP) past its lease,
    then thawed (SIGCONT) as soon as the survivors adopted its questions, so it polls them again alongside them.
    Asserted: each question answered once (the store no longer lets the thawed replica keep an answer), it notices
    its lease lapsed, and it serves again after."""
    sim, slack, replicas = deployment
    await start_all(slack, replicas)
    events = [await ask(slack, sim, i, latency=1.5) for i in range(9)]
    await eventually(lambda: _all_pending(replicas, 9), timeout=10, what="9 questions accepted by Uppzy")
    holders = await replicas.holders()
    victim_holder = max(holders, key=lambda h: holders[h])
    victim = next(i for i, p in replicas.procs.items() if f"-{p.pid}-" in victim_holder)
    replicas.procs[victim].send_signal(signal.SIGSTOP)
    try:  # thawed the moment its questions were adopted: it and the adopters poll them at about the same time
        await eventually(lambda: _holds_none(replicas, victim_holder), timeout=30,
                         what=lambda: f"the frozen replica's questions adopted\n{replicas.all_logs()}")
    finally:
        replicas.procs[victim].send_signal(signal.SIGCONT)
    await eventually(lambda: all(replies(slack, e) for e in events), timeout=30,
                     what=lambda: f"answers to every question\n{replicas.all_logs()}")
    await eventually(lambda: "lease lapsed" in replicas.log(victim), timeout=15,
                     what=lambda: f"the thawed replica noticing its lapse\n{replicas.log(victim)}")
    await replicas.ready(victim)
    probe = await ask(slack, sim, 50, latency=0.1)
    await eventually(lambda: replies(slack, probe), timeout=15, what="an answer after the replica rejoined")
    for i, event in enumerate(events):
        assert replies(slack, event) == [f"Answer {tag(i)}."], i
        assert submitted(sim, i) == 1, i
    no_tracebacks(replicas)


async def test_a_rolling_deploy_hands_questions_over_without_a_gap(
    deployment: tuple[Simulator, FakeSlack, Replicas],
) -> None:
    """Injected: a rolling deploy while 12 questions wait at Uppzy (2 s answers): a new replica starts, then each old
    one gets SIGTERM in turn, and more questions arrive throughout. Asserted: every old replica exits 0, and every
    question is answered exactly once and submitted once (a stopping replica gives up its lease: the others take its
    questions at once)."""
    sim, slack, replicas = deployment
    await start_all(slack, replicas)
    events = [await ask(slack, sim, i, latency=2.0) for i in range(12)]
    await eventually(lambda: _all_pending(replicas, 12), timeout=10, what="12 questions accepted by Uppzy")
    for old in range(REPLICAS):
        new = REPLICAS + old
        replicas.start(new)
        await replicas.ready(new)
        assert await replicas.stop(old) == 0, replicas.log(old)
        events += [await ask(slack, sim, i, latency=0.5) for i in range(12 + 2 * old, 14 + 2 * old)]
    await eventually(lambda: all(replies(slack, e) for e in events), timeout=40,
                     what=lambda: f"answers to every question\n{replicas.all_logs()}")
    for i, event in enumerate(events):
        assert replies(slack, event) == [f"Answer {tag(i)}."], i
        assert submitted(sim, i) == 1, i
    no_tracebacks(replicas)
