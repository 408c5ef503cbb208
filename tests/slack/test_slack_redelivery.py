"""Slack refuses an answer for longer than the delivery backoff: it is kept, not failed, and swept in later once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from core.models import TurnState
from tests.fault_support import asked_once, script_answers, tag
from tests.fault_support import settle_slack as settle

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


async def test_a_refused_answer_is_kept_then_posted_once_by_the_sweep(rig: SlackRig) -> None:
    """Injected: chat.postMessage fails (fatal_error) for every attempt of the delivery backoff. Asserted: no
    failure notice and the question stays open with its answer; other people are answered meanwhile; once its
    retry time has come, the sweep posts it exactly once, and Uppzy was asked once."""
    script_answers(rig.sim, 2)
    rig.fake.fail_next("chat.postMessage", error="fatal_error", times=3)  # the rig's delivery backoff: 3 attempts
    event = await rig.mention(f"{tag(0)} how do returns work?")
    await rig.fake.wait_until(lambda: len(rig.fake.calls_to("chat.postMessage")) == 3)
    store, delivery = rig.relay.store, rig.relay.parts.delivery
    await rig.fake.wait_until(lambda: 1 not in delivery._posting, what="the delivery attempts to end")
    turn = await store.get_turn(1)
    assert turn is not None and turn.state is TurnState.DELIVERING and turn.answer
    assert rig.posts_in(event["ts"]) == []
    later = await rig.mention(f"{tag(1)} and shipping?", user="U2")
    await rig.fake.wait_until(lambda: rig.posts_in(later["ts"]), what="the other user's answer")
    assert await delivery.sweep() == 0  # not due yet (next try in 5 minutes)
    await store.postpone(1, until=time.time())  # ... five minutes later
    assert await delivery.sweep() == 1
    assert await settle(rig, [event, later]) == ["answer", "answer"]
    assert len(rig.answers(event["ts"])) == len(rig.posts_in(event["ts"])) == 1  # no notice besides
    assert await delivery.sweep() == 0  # delivered: nothing left to sweep
    asked_once(rig.sim, [event["text"], later["text"]])
