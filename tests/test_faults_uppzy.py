"""Uppzy faults through the real platform adapters: every question gets exactly one answer or one friendly error.

Questions arrive as a burst over Slack Socket Mode (and Discord's gateway for a few cases); the faults are made at
the network boundary: the simulator's scripted statuses and stalls, and a loopback door in front of it that resets
TCP connections or stops listening altogether.
"""

# The Slack fixtures are imported, not loaded with pytest_plugins: registering that plugin from here would
# change which global `fake` (Slack's or Discord's) later modules see. Test parameters shadow the imports.
# ruff: noqa: F811

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bots.slack.format import to_mrkdwn
from core import messages
from core.uppzy import UppzyClient
from core.uppzy_types import Timeouts
from simulator import Simulator
from tests.fault_support import (
    CuttingFront,
    discord_ask,
    discord_harness,
    marker,
    script_answers,
    settle_discord,
    slack_outcomes,
    tag,
    wait_until,
)
from tests.fault_support import settle_slack as settle
from tests.fault_support import slack_burst as burst
from tests.slack_support import fake, make_rig  # noqa: F401

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig

BURST = 10
# Calls give up after 0.6 s here, so a 1 s stall is "past the timeout" without slowing the suite.
TIMEOUTS = Timeouts(connect=0.5, default=0.6, chat=1.0)
STALL = 1.0


@pytest.fixture
async def front(sim: Simulator) -> AsyncIterator[CuttingFront]:
    """The simulator behind a door that can reset connections; every Uppzy call in this module goes through it."""
    door = CuttingFront(sim)
    await door.open()
    yield door
    await door.close()


@pytest.fixture
def uppzy(make_uppzy: Callable[..., UppzyClient], front: CuttingFront) -> UppzyClient:
    """The rig's Uppzy client, pointed at the door, with short timeouts and no retry waits."""
    return make_uppzy(base_url=front.base_url, timeouts=TIMEOUTS)


@pytest.fixture
async def rig(make_rig: RigFactory) -> SlackRig:
    """The Slack bot over Socket Mode, with a status-poll budget big enough for a burst (the default is 20/s)."""
    return await make_rig(uppzy_poll_rate=500.0)


def accepted(sim: Simulator, event: dict[str, Any]) -> list[Any]:
    """Requests Uppzy created for this question (more than one would be a doubled question)."""
    return [c for c in sim.chats.values() if marker(event["text"]) in c.question]


def submits(sim: Simulator, event: dict[str, Any]) -> list[int]:
    """HTTP statuses of every chat_async call that reached Uppzy for this question, in order."""
    return [c.status for c in sim.calls("chat_async")
            if isinstance(c.body, dict) and marker(event["text"]) in c.body["message"]]


# ---- submit (POST chat/async) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, "0.3"), (429, None)])
async def test_refused_submit_is_retried_and_every_question_answered_once(
    rig: SlackRig, status: int, retry_after: str | None
) -> None:
    """Injected: the first chat_async of each of 10 questions gets `status` (429 with or without Retry-After);
    asserted: each question is answered exactly once and Uppzy holds exactly one request per question."""
    rig.sim.inject("chat_async", status, times=BURST, retry_after=retry_after)
    events = await burst(rig, BURST)
    assert await settle(rig, events) == ["answer"] * BURST
    refused = 0
    for event in events:
        statuses = submits(rig.sim, event)
        assert statuses[-1] == 202 and set(statuses[:-1]) <= {status}, statuses
        refused += len(statuses) - 1
        assert len(accepted(rig.sim, event)) == 1
    assert refused == BURST
    if retry_after is not None:  # Retry-After was honoured, not just retried at once
        for event in events:
            times = [c.at for c in rig.sim.calls("chat_async") if marker(event["text"]) in c.body["message"]]
            assert all(b - a >= float(retry_after) - 0.02 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("fault", ["reset_before", "reset_after", "stall"])
async def test_submit_with_unknown_outcome_gets_one_error_and_is_never_resubmitted(
    rig: SlackRig, front: CuttingFront, fault: str
) -> None:
    """Injected: 5 of 10 chat_async calls have their connection reset (before or after Uppzy acted) or stall past
    the client timeout; asserted: those 5 get exactly one friendly error, the rest one answer, and no question
    is sent twice (Uppzy may hold the cut one, but never two)."""
    if fault == "stall":
        rig.sim.inject("chat_async", stall=STALL, times=5)
    else:
        front.cut_next("/chat/async", times=5, after_processing=fault == "reset_after")
    events = await burst(rig, BURST)
    kinds = await settle(rig, events)
    assert sorted(kinds) == ["answer"] * 5 + ["error"] * 5
    if fault == "stall":  # a stalled submit is recorded (and acted on) only when its stall ends
        await wait_until(lambda: len(rig.sim.calls("chat_async")) >= BURST, timeout=2 * STALL,
                         what="the stalled submits to end")
    # Reset before: Uppzy never saw it. Reset after, or stalled past the timeout: Uppzy took it, the bot can't know.
    reached = 0 if fault == "reset_before" else 1
    for event, kind in zip(events, kinds, strict=True):
        held = accepted(rig.sim, event)
        if kind == "answer":
            assert submits(rig.sim, event) == [202] and len(held) == 1
            continue
        assert len(submits(rig.sim, event)) == reached, f"{fault}: {submits(rig.sim, event)} (never submitted again)"
        assert len(held) == reached, f"{fault}: Uppzy holds {len(held)} requests"
        assert rig.posts_in(event["ts"])[0]["text"] == to_mrkdwn(messages.DEFAULT_FALLBACK)
        assert all(chat.polls == 0 for chat in held), "a request the bot gave up on was polled"


@pytest.mark.parametrize("outage", ["refused", "always_503"])
async def test_uppzy_down_for_good_gives_each_question_one_error(
    make_rig: RigFactory, front: CuttingFront, outage: str
) -> None:
    """Injected: Uppzy's port refuses connections, or every chat_async answers 503, for longer than the answer
    budget (cut to 10 ms so no retry-later round is waited out); asserted: after its bounded retries each question
    gets exactly one friendly error and no answer, and nothing is left queued."""
    rig = await make_rig(uppzy_answer_timeout=0.01, uppzy_poll_rate=500.0)
    if outage == "refused":
        await front.close()
    else:
        rig.sim.inject("chat_async", 503, times=10_000)
    events = await burst(rig, BURST)
    assert await settle(rig, events) == ["error"] * BURST
    assert rig.sim.chats == {}
    if outage == "always_503":
        assert len(rig.sim.calls("chat_async")) == BURST * 4  # RetryPolicy.no_wait(): 4 attempts, then give up
    assert (await rig.relay.store.counts()).pending == 0


async def test_uppzy_back_after_an_outage_answers_the_queued_questions(
    rig: SlackRig, front: CuttingFront, caplog: pytest.LogCaptureFixture
) -> None:
    """Injected: Uppzy's port refuses connections until every question's submit has failed and been deferred;
    asserted: nothing was posted meanwhile, and once it listens again each question is submitted and answered
    exactly once."""
    await front.close()
    events = await burst(rig, 5)
    await wait_until(lambda: len([r for r in caplog.records if "deferred" in r.getMessage()]) == 5,
                     what="5 submits deferred")
    assert not any(rig.posts_in(e["ts"]) for e in events) and rig.sim.calls() == []
    await front.open()
    assert await settle(rig, events, timeout=10) == ["answer"] * 5
    for event in events:
        assert submits(rig.sim, event) == [202]


# ---- status (GET chat/requests/{id}) --------------------------------------------------------------------------


async def test_failing_status_polls_are_polled_again_and_each_question_answered_once(
    rig: SlackRig, front: CuttingFront
) -> None:
    """Injected: the first status poll of each of 12 questions fails a different way — 500, 503, 429 with and
    without Retry-After, a connection reset, a stall past the timeout (two each); asserted: each question is
    answered exactly once, from the one request Uppzy holds for it, after being polled again."""
    n = 12
    rig.sim.inject("chat_status", 500, times=2)
    rig.sim.inject("chat_status", 503, times=2)
    rig.sim.inject("chat_status", 429, retry_after="0.3", times=2)
    rig.sim.inject("chat_status", 429, times=2)
    rig.sim.inject("chat_status", stall=STALL, times=2)
    front.cut_next("/chat/requests/", times=2)
    started = time.monotonic()
    events = await burst(rig, n)
    assert await settle(rig, events) == ["answer"] * n
    assert time.monotonic() - started < 6
    assert front.cut_count == 2 and not rig.sim.faults
    for event in events:
        [chat] = accepted(rig.sim, event)
        assert submits(rig.sim, event) == [202]
        assert chat.polls >= 1


async def test_status_stalled_past_the_answer_budget_times_out_with_one_notice(make_rig: RigFactory) -> None:
    """Injected: every status poll stalls past the client timeout until the 0.8 s answer budget is spent;
    asserted: each question gets exactly one 'taking too long' notice and no answer, even if Uppzy finishes later."""
    rig = await make_rig(uppzy_answer_timeout=0.8, uppzy_poll_rate=500.0)
    rig.sim.inject("chat_status", stall=STALL, times=10_000)
    events = await burst(rig, 4)
    assert await settle(rig, events, timeout=8) == ["error"] * 4
    for event in events:
        assert rig.posts_in(event["ts"])[0]["text"] == to_mrkdwn(messages.TIMED_OUT)
    rig.sim.faults.clear()
    rig.sim.complete_now()
    # The probe goes through the same poller: had it kept any of the 4 requests, it would poll them no later
    # than the probe's own, and find their answers now ready.
    script_answers(rig.sim, 5)
    probe = await rig.mention(f"{tag(4)} and a question after the outage?", user="U200")
    assert await settle(rig, [probe]) == ["answer"]
    assert slack_outcomes(rig.fake, events) == ["error"] * 4


# ---- the same through Discord ---------------------------------------------------------------------------------


async def test_discord_burst_through_5xx_429_and_resets(sim: Simulator, uppzy: UppzyClient, front: CuttingFront,
                                                        tmp_path: Path) -> None:
    """Injected over Discord: 503 on the first 3 submits, 429 (Retry-After 0.2) on 3 status polls, a reset after
    Uppzy took 2 submits; asserted: 8 questions answered once, the 2 cut ones get one friendly error each."""
    script_answers(sim, BURST)
    async with discord_harness(sim, uppzy, tmp_path) as h:
        sim.inject("chat_async", 503, times=3)
        sim.inject("chat_status", 429, retry_after="0.2", times=3)
        front.cut_next("/chat/async", times=2, after_processing=True)
        sent = [await discord_ask(h, i) for i in range(BURST)]
        kinds = await settle_discord(h, sent)
        assert sorted(kinds) == ["answer"] * 8 + ["error"] * 2
        for message, kind in zip(sent, kinds, strict=True):
            statuses = [c.status for c in sim.calls("chat_async") if marker(message["content"]) in c.body["message"]]
            held = [c for c in sim.chats.values() if marker(message["content"]) in c.question]
            if kind == "answer":
                assert statuses[-1] == 202 and set(statuses[:-1]) <= {503} and len(held) == 1, statuses
            else:  # cut on the way back, after Uppzy answered: never asked again
                # The cuts and the 503s take the first calls in arrival order at two layers, which may differ:
                # Uppzy holds the request exactly when it accepted that one call (202) rather than refusing it.
                assert len(statuses) == 1 and len(held) == statuses.count(202), (statuses, held)
