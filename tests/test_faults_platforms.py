"""Platform faults: Slack Web API 429s and ok:false, Socket Mode reconnects and Discord gateway RECONNECT/REST 429
in the middle of a burst. Every question still gets exactly one answer (or, where delivery is impossible, a
recorded failure), and redeliveries never produce a second one.
"""

# The Slack fixtures are imported, not loaded with pytest_plugins: registering that plugin from here would
# change which global `fake` (Slack's or Discord's) later modules see. Test parameters shadow the imports.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.models import TurnState
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.fault_support import (
    asked_once,
    discord_ask,
    discord_harness,
    script_answers,
    settle_discord,
    tag,
)
from tests.fault_support import settle_slack as settle
from tests.fault_support import slack_burst as burst
from tests.slack_support import fake, make_rig  # noqa: F401

if TYPE_CHECKING:
    from tests.fakes.slack_fake import FakeSlack
    from tests.slack_support import RigFactory, SlackRig


@pytest.fixture
async def rig(make_rig: RigFactory) -> SlackRig:
    """The Slack bot over Socket Mode with a status-poll budget big enough for a burst."""
    return await make_rig(uppzy_poll_rate=500.0)


# ---- Slack Web API ------------------------------------------------------------------------------------------


async def test_rate_limited_posts_in_a_burst_are_each_delivered_once(rig: SlackRig) -> None:
    """Injected: chat.postMessage answers 429 with Retry-After: 1 for the first 10 posts of a burst of 10;
    asserted: the bot waits the second out and every question is answered exactly once."""
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=1, times=10)
    started = time.monotonic()
    events = await burst(rig, 10)
    assert await settle(rig, events) == ["answer"] * 10
    threads = {e["ts"] for e in events}
    posts = [c for c in rig.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") in threads]
    assert [c.status for c in posts].count(429) == 10 and sum(c.ok for c in posts) == 10
    assert time.monotonic() - started >= 1.0
    asked_once(rig.sim, [e["text"] for e in events])


@pytest.mark.parametrize("error", ["internal_error", "fatal_error"])
async def test_ok_false_on_post_is_retried_and_each_answer_lands_once(rig: SlackRig, error: str) -> None:
    """Injected: chat.postMessage answers ok:false `error` for 5 of a burst of 10 posts; asserted: the relay
    posts each of those again and every question ends with exactly one answer."""
    rig.fake.fail_next("chat.postMessage", error=error, times=5)
    events = await burst(rig, 10)
    assert await settle(rig, events) == ["answer"] * 10
    assert sum(1 for c in rig.fake.calls_to("chat.postMessage") if c.error == error) == 5
    asked_once(rig.sim, [e["text"] for e in events])


async def test_internal_error_after_the_message_was_posted_is_not_posted_again(rig: SlackRig) -> None:
    """Injected: Slack stores 3 answers but replies ok:false internal_error (Slack says some of the operation may
    have succeeded); asserted: the retry finds each stored copy by its metadata and posts no second one."""
    fake = rig.fake
    lying = {"left": 3}

    def post(args: dict[str, Any]) -> dict[str, Any]:
        stored = fake._chat_post_message(args)  # the fake's own behaviour: store it and return its ts
        if args.get("metadata") and lying["left"] > 0:
            lying["left"] -= 1
            return {"ok": False, "error": "internal_error"}
        return stored

    def stored(event: dict[str, Any]) -> list[dict[str, Any]]:
        """What Slack really holds in the question's thread from the bot."""
        return [m for m in fake.messages["C1"].values()
                if m.get("thread_ts") == event["ts"] and m.get("bot_id") == fake.bot_id]

    fake.set_response("chat.postMessage", post)
    events = await burst(rig, 6)
    await rig.fake.wait_until(lambda: lying["left"] == 0 and all(stored(e) for e in events), what="a copy per thread")
    await rig.drain()  # every retry is over: a second copy, if any, is in Slack's store by now
    for event in events:  # one answer each
        assert len(stored(event)) == 1, [m["text"] for m in stored(event)]
    assert len(fake.calls_to("conversations.replies")) >= 3
    turns = [await rig.relay.store.get_turn(i) for i in range(1, 7)]
    assert {t.state for t in turns if t is not None} == {TurnState.ANSWERED}


# ---- Slack Socket Mode ------------------------------------------------------------------------------------------


async def _send_like_slack(fake: FakeSlack, event: dict[str, Any], *, event_id: str) -> str:
    """Deliver an event; if the socket went away under us, deliver it again on the new one (as Slack does)."""
    for attempt in range(5):
        try:
            return await fake.send_event(event, event_id=event_id, retry_attempt=attempt,
                                         retry_reason="" if attempt == 0 else "timeout")
        except (ConnectionError, RuntimeError):
            await asyncio.sleep(0.05)
    raise AssertionError("could not deliver an event on any socket")


async def _redeliver_unacked(fake: FakeSlack, sent: dict[str, tuple[dict[str, Any], str]]) -> list[str]:
    """Slack redelivers every envelope that was never acked (with retry_attempt 1); returns the new envelopes.

    Which ones those are is known once no ack can still be on its way: the old socket is closed, and an ignored
    probe event sent on the new one has been acked (the client acks each envelope as it arrives, in order).
    """
    await fake.wait_until(lambda: fake.open_connections == 1, what="the old socket closed")
    probe = fake.message_event("U1", "C1", "<@U1> has joined the channel", subtype="channel_join")
    await fake.wait_for_ack(await fake.send_event(probe))
    return [await fake.send_event(event, event_id=event_id, retry_attempt=1, retry_reason="timeout")
            for envelope, (event, event_id) in list(sent.items()) if envelope not in fake.acks]


@pytest.mark.parametrize("cut", ["disconnect_message", "server_closes_socket"])
async def test_socket_mode_reconnect_mid_burst_answers_every_mention_once(rig: SlackRig, cut: str) -> None:
    """Injected: after 10 of 20 mentions Slack sends 'disconnect' (or closes the websocket); unacked envelopes are
    redelivered and 3 acked ones are delivered twice, as Slack does; asserted: every mention is answered once."""
    script_answers(rig.sim, 20)
    sent: dict[str, tuple[dict[str, Any], str]] = {}
    events = []
    for i in range(20):
        if i == 10:
            if cut == "disconnect_message":
                await rig.fake.send_disconnect("refresh_requested")
            else:
                await rig.fake.close_sockets()
        event = rig.fake.app_mention_event(f"U{100 + i}", "C1", f"{tag(i)} how do returns work?")
        envelope = await _send_like_slack(rig.fake, event, event_id=f"Ev{i:04d}")
        sent[envelope] = (event, f"Ev{i:04d}")
        events.append(event)
    await rig.fake.wait_connected(2)
    again = await _redeliver_unacked(rig.fake, sent)
    await rig.fake.wait_until(lambda: all(e in rig.fake.acks for e in again), what="redeliveries acked")
    for event, event_id in list(sent.values())[8:11]:  # acked, but Slack did not get the ack: sent again
        await rig.fake.send_event(event, event_id=event_id, retry_attempt=1, retry_reason="timeout")
    assert await settle(rig, events) == ["answer"] * 20
    asked_once(rig.sim, [e["text"] for e in events])
    assert rig.fake.open_connections == 1


# ---- Discord --------------------------------------------------------------------------------------------------


async def test_discord_reconnect_mid_burst_and_replayed_messages_answer_each_once(
    sim: Simulator, uppzy: UppzyClient, tmp_path: Path
) -> None:
    """Injected: gateway op 7 RECONNECT after 6 of 12 mentions (3 sent while it resumes), then 4 MESSAGE_CREATEs
    delivered again after RESUME; asserted: one RESUME, no new IDENTIFY, every question answered exactly once."""
    script_answers(sim, 12)
    async with discord_harness(sim, uppzy, tmp_path) as h:
        sent = [await discord_ask(h, i) for i in range(6)]
        await h.fake.send_reconnect()
        sent += [await discord_ask(h, i) for i in range(6, 9)]  # land in the backlog, replayed on RESUME
        await h.fake.wait_for(lambda: h.fake.resume_count == 1 and h.fake.connected, what="resumed")
        sent += [await discord_ask(h, i) for i in range(9, 12)]
        for message in (sent[0], sent[5], sent[7], sent[11]):
            await h.fake.redeliver(message)
        assert await settle_discord(h, sent) == ["answer"] * 12
        asked_once(sim, [m["content"] for m in sent])
        assert h.fake.identify_count == 1 and len(h.fake.live_connections()) == 1


async def test_discord_rest_429_on_posts_and_threads_delivers_once(
    sim: Simulator, uppzy: UppzyClient, tmp_path: Path
) -> None:
    """Injected: 429 (retry_after 0.1 s, bucket-scoped) on 4 thread creations and 6 message posts of a burst of 10;
    asserted: discord.py waits them out and every question gets exactly one answer in its own thread."""
    script_answers(sim, 10)
    async with discord_harness(sim, uppzy, tmp_path) as h:
        h.fake.rate_limit_next("POST", r"/channels/\d+/messages/\d+/threads", retry_after=0.1, times=4)
        h.fake.rate_limit_next("POST", r"/channels/\d+/messages", retry_after=0.1, times=6)
        sent = [await discord_ask(h, i) for i in range(10)]
        assert await settle_discord(h, sent) == ["answer"] * 10
        asked_once(sim, [m["content"] for m in sent])
        threads_of_questions = {f"/channels/{m['id']}/messages" for m in sent}  # not the drain probe's DM
        statuses = [c.status for c in h.fake.calls("POST", r"/channels/\d+/messages") if c.path in threads_of_questions]
        assert statuses.count(429) == 6 and statuses.count(200) == 10
        threads = [c.status for c in h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads")]
        assert threads.count(429) == 4 and threads.count(201) == 10
