"""A question's event is acked only once the question is in the store: a replica killed (or a disk that hangs)
before that leaves it unacked, and Slack delivers it again, to another replica. Slower listeners are acked first."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


async def test_a_question_is_acked_only_after_it_is_stored(rig: SlackRig, tmp_path: Path) -> None:
    """Injected: another connection holds the database's write lock when a mention arrives. Asserted: no ack while
    the question cannot be stored; once the lock is released the question is stored and only then acked, and it is
    answered once."""
    blocker = sqlite3.connect(tmp_path / "slack-0.db", isolation_level=None, timeout=5)
    blocker.execute("BEGIN IMMEDIATE")  # the bot's write now waits (busy timeout), as on a stalled disk
    try:
        event = rig.fake.app_mention_event("U1", "C1", "how do returns work?")
        envelope = await rig.fake.send_event(event)
        await asyncio.sleep(0.5)  # ample for an ack that does not wait for the store (it takes milliseconds)
        assert envelope not in rig.fake.acks, "acked before the question was stored"
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    await rig.fake.wait_for_ack(envelope)
    assert (await rig.relay.store.counts()).pending + len(rig.answers(event["ts"])) >= 1
    await rig.wait_answer(event["ts"])
    assert len(rig.answers(event["ts"])) == 1


async def test_a_reaction_is_acked_before_its_feedback_reaches_uppzy(rig: SlackRig) -> None:
    """Injected: Uppzy's feedback endpoint stalls 2 s. Asserted: the reaction's event is acked at once anyway
    (feedback runs after the ack), and the rating still reaches Uppzy."""
    event = await rig.mention("how do returns work?")
    answer = (await rig.wait_answer(event["ts"]))[0]
    rig.sim.inject("chat_feedback", stall=2.0)
    reaction = rig.fake.reaction_added_event("U1", "+1", "C1", answer["ts"])
    envelope = await rig.fake.send_event(reaction)
    ack = await rig.fake.wait_for_ack(envelope, timeout=1.0)
    assert ack["at"] - rig.fake.event_sent_at[envelope] < 1.0
    await rig.fake.wait_until(lambda: rig.sim.calls("chat_feedback"), timeout=5, what="the rating at Uppzy")


async def _hold_bolt(rig: SlackRig) -> asyncio.Event:
    """A bolt middleware that holds every request bolt dispatches until the returned event is set."""
    release = asyncio.Event()

    async def hold(next: Any) -> Any:  # bolt injects `next` by name
        await release.wait()
        return await next()

    rig.bot.app.use(hold)
    return release


async def test_questions_are_recorded_and_acked_before_bolt_parses_anything(rig: SlackRig) -> None:
    """Injected: bolt's middleware chain stalls every request it dispatches. Asserted: a mention and a direct message
    are still acked and answered (questions are taken before bolt: in a burst each one's ack no longer waits behind
    bolt's parsing of all the others), while a reaction, which goes through bolt, waits until bolt is released."""
    release = await _hold_bolt(rig)
    try:
        mention = await rig.mention("how do returns work?")
        direct = await rig.message("and shipping?", user="U2", channel="D1", channel_type="im")
        await rig.wait_answer(mention["ts"])
        await rig.wait_answer(direct["ts"])
        answer = rig.answers(mention["ts"])[0]
        envelope = await rig.fake.send_event(rig.fake.reaction_added_event("U1", "+1", "C1", answer["ts"]))
        await asyncio.sleep(0.2)  # the reaction is held by the stalled middleware, however long we wait
        assert envelope not in rig.fake.acks
    finally:
        release.set()
    await rig.fake.wait_for_ack(envelope)
    await rig.fake.wait_until(lambda: rig.sim.calls("chat_feedback"), timeout=5, what="the rating at Uppzy")


async def test_http_mode_takes_questions_before_bolt_too(make_rig: Any) -> None:
    """HTTP mode, bolt's middleware stalled: a signed event_callback with a mention gets 200 once recorded and is
    answered; a block action (bolt's) is still held."""
    rig = await make_rig(http=True)
    release = await _hold_bolt(rig)
    try:
        event = rig.fake.app_mention_event("U1", "C1", "how do returns work?")
        status, _ = await asyncio.wait_for(rig.post_http(rig.event_body(event)), 5)
        assert status == 200
        await rig.wait_answer(event["ts"])
        held = asyncio.ensure_future(rig.post_http(rig.event_body(
            rig.fake.reaction_added_event("U1", "+1", "C1", rig.answers(event["ts"])[0]["ts"]))))
        await asyncio.sleep(0.2)
        assert not held.done()
    finally:
        release.set()
    assert (await held)[0] == 200
