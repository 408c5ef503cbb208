"""The ⏳ on a question: only for an answer that is not there within a moment, and taken away after it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bots.slack.outbound import WORKING_REACTION

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig

MOMENT = 0.2  # Tuning.working_after in the slow tests: well below the scripted latency, so the order is certain


def _progress_calls(rig: SlackRig) -> list[str]:
    return [c.method for c in rig.fake.calls if c.method.startswith("reactions.")
            or c.method == "assistant.threads.setStatus"]


async def test_fast_answer_is_posted_without_any_reaction_call(rig: SlackRig) -> None:
    """An answer there before the moment (production's, the simulator answers at once) costs one call: the post."""
    event = await rig.mention("what are your opening hours?")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()  # the question is finished, so its indicator can no longer come
    assert _progress_calls(rig) == []
    assert len(rig.fake.calls_to("chat.postMessage")) == 1


async def test_slow_answer_gets_the_hourglass_after_the_moment_and_loses_it_after_the_answer(
        make_rig: RigFactory) -> None:
    """Not answered within the moment: ⏳ on the question (not sooner), then the answer, then the ⏳ goes."""
    rig = await make_rig(working_after=MOMENT)
    rig.sim.script("slow", "Done.", latency=1.0)
    event = await rig.mention("a slow question")
    sent_at = max(rig.fake.event_sent_at.values())
    await rig.fake.wait_until(lambda: rig.fake.reactions_on("C1", event["ts"]), what="the hourglass")
    assert rig.fake.reactions_on("C1", event["ts"]) == {WORKING_REACTION: [rig.fake.bot_user_id]}
    [added] = rig.fake.calls_to("reactions.add")
    assert added.at - sent_at >= MOMENT
    assert rig.answers(event["ts"]) == []
    await rig.wait_answer(event["ts"])
    await rig.fake.wait_until(lambda: rig.fake.calls_to("reactions.remove"), what="the hourglass removed")
    await rig.relay.wait_idle()
    assert rig.fake.reactions_on("C1", event["ts"]) == {}
    [posted] = rig.fake.calls_to("chat.postMessage")
    [removed] = rig.fake.calls_to("reactions.remove")
    assert added.at < posted.at <= removed.at
    assert _progress_calls(rig) == ["reactions.add", "reactions.remove"]


async def test_rate_limited_progress_reaction_never_delays_the_answer(make_rig: RigFactory) -> None:
    """A 429 on the hourglass reaction is skipped, not waited out, so the answer is posted as soon as it is ready."""
    rig = await make_rig(working_after=0.05)
    rig.sim.script("slow", "Done.", latency=0.5)
    rig.fake.fail_next("reactions.add", status=429, retry_after=5)
    event = await rig.mention("a slow one")
    started = time.monotonic()
    await rig.wait_answer(event["ts"], timeout=3)
    assert time.monotonic() - started < 2
    assert len(rig.fake.calls_to("reactions.add")) == 1
    await rig.relay.wait_idle()
    assert rig.fake.reactions_on("C1", event["ts"]) == {}


async def test_assistant_thread_shows_thinking_status_when_slow(make_rig: RigFactory) -> None:
    """In an AI assistant thread (a DM thread) a slow answer gets 'is thinking…' too, cleared after the answer."""
    rig = await make_rig(working_after=MOMENT)
    rig.sim.script("refund", "Refunds take 5 days.", latency=1.0)
    root = rig.fake.next_ts()
    event = await rig.message("summarise our refund policy", channel="D1", thread_ts=root)
    await rig.wait_answer(root)
    await rig.fake.wait_until(lambda: len(rig.fake.calls_to("assistant.threads.setStatus")) >= 2,
                              what="the status set and cleared")
    statuses = [c.args["status"] for c in rig.fake.calls_to("assistant.threads.setStatus")]
    assert statuses == ["is thinking…", ""]
    assert rig.answers(root)[0]["thread_ts"] == root != event["ts"]


async def test_a_burst_gets_as_many_hourglasses_as_slack_allows_and_every_answer(make_rig: RigFactory) -> None:
    """30 slow questions at once in one workspace: the first 20 get ⏳ (reactions.remove is Tier 2, 20 a minute,
    and each ⏳ costs one), the rest none and no removal call either; all 30 are answered, and no ⏳ is left."""
    rig = await make_rig(working_after=MOMENT)
    rig.sim.script("slow", "Done.", latency=0.8)
    events = [await rig.mention(f"a slow question {i}", user=f"U{i}") for i in range(30)]
    for event in events:
        await rig.wait_answer(event["ts"])
    await rig.fake.wait_until(lambda: len(rig.fake.calls_to("reactions.remove")) >= 20, what="every ⏳ removed")
    await rig.relay.wait_idle()
    assert len(rig.fake.calls_to("reactions.add")) == 20
    assert len(rig.fake.calls_to("reactions.remove")) == 20
    assert all(rig.fake.reactions_on("C1", e["ts"]) == {} for e in events)
