"""Answers Slack will not take where they were asked still reach the asker, once: a deleted thread moves the answer
into the channel, an archived, deleted or left channel into a DM; over-long blocks fall back to plain text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from core.models import TurnState

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig


async def _ask_then(rig: SlackRig, question: str, answer: str, **script: Any) -> dict[str, Any]:
    """Mention the bot with an answer held back by Uppzy; returns the event once Uppzy has the question."""
    rig.sim.script(question, answer, latency=60, **script)
    event = await rig.mention(question)
    await rig.fake.wait_until(lambda: rig.questions(), what="the question at Uppzy")
    return event


def _top_level(rig: SlackRig, channel: str) -> list[dict[str, Any]]:
    return [m for m in rig.fake.posted_messages() if m["channel"] == channel and not m.get("thread_ts")]


async def _state(rig: SlackRig, turn_id: int = 1) -> TurnState:
    await rig.relay.wait_idle()
    turn = await rig.relay.store.get_turn(turn_id)
    assert turn is not None
    return turn.state


@pytest.mark.parametrize("error", ["thread_not_found", "channel_not_found"])
async def test_answer_for_a_deleted_thread_goes_to_the_channel_once(rig: SlackRig, error: str) -> None:
    """The question's thread is deleted while Uppzy works (Slack answers `error` to replies there): the answer is
    posted top-level in the channel after a line naming the asker, once, and the question is answered."""
    event = await _ask_then(rig, "where is my parcel", "It ships **tomorrow**.")
    rig.fake.delete_thread("C1", event["ts"], error=error)
    rig.sim.complete_now()
    posts = await rig.fake.wait_until(lambda: len(_top_level(rig, "C1")) >= 2 and _top_level(rig, "C1"),
                                      what="the answer in the channel")
    assert await _state(rig) is TurnState.ANSWERED
    await rig.drain()
    lead, answer = [p for p in _top_level(rig, "C1") if p["ts"] in {x["ts"] for x in posts}]
    assert lead["text"].startswith("<@U1> ") and "thread" in lead["text"] and not lead.get("metadata")
    assert "**tomorrow**" in answer["blocks"][0]["text"] and answer["metadata"]
    assert len([m for m in rig.fake.posted_messages() if m.get("metadata")]) == 1
    in_thread = [c for c in rig.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == event["ts"]]
    assert [c.error for c in in_thread] == [error]  # the thread was tried once, not on every retry


@pytest.mark.parametrize("error", ["is_archived", "not_in_channel", "channel_not_found"])
async def test_answer_for_a_closed_channel_goes_to_the_asker_by_dm(rig: SlackRig, error: str) -> None:
    """The channel is archived, the bot removed, or the channel deleted: the asker gets the answer by DM, with a
    line linking to where they asked; nothing is posted twice."""
    event = await _ask_then(rig, "can I return shoes", "Yes, within 30 days.")
    rig.fake.refuse_channel("C1", error)
    rig.sim.complete_now()
    dms = await rig.fake.wait_until(lambda: len(rig.fake.posted_messages("U1")) >= 2 and rig.fake.posted_messages("U1"),
                                    what="the answer by DM")
    assert await _state(rig) is TurnState.ANSWERED
    lead, answer = dms
    assert "archived" in lead["text"] and f"/archives/C1/p{event['ts'].replace('.', '')}" in lead["text"]
    assert "30 days" in answer["blocks"][0]["text"] and answer["metadata"]
    rig.fake.refusing_channels.clear()
    await rig.drain()
    assert len(rig.fake.posted_messages("U1")) == 2 and len(rig.answers()) == 1


async def test_failure_notice_follows_the_same_fallback(rig: SlackRig) -> None:
    """Uppzy fails the question after the channel was archived: the one friendly error line reaches the asker's
    DM instead of vanishing."""
    await _ask_then(rig, "break please", None, fail=True)
    rig.fake.refuse_channel("C1", "is_archived")
    rig.sim.complete_now()
    [dm] = await rig.fake.wait_until(lambda: rig.fake.posted_messages("U1"), what="the notice by DM")
    assert await _state(rig) is TurnState.FAILED
    assert "archived" in dm["text"] and "\n" in dm["text"]


async def test_a_retry_after_moving_posts_only_the_missing_part(make_rig: RigFactory) -> None:
    """A two-part answer moves to the channel; Slack refuses its second part once: the retry posts that part
    alone in the channel, without trying the deleted thread again or repeating the first part and the lead."""
    rig = await make_rig(admins=("U9",), uppzy_answer_max_chars=50_000)  # 21,000 characters: two markdown blocks
    long_answer = "\n\n".join([f"Paragraph {i}: " + "lorem ipsum dolor " * 150 for i in range(8)])
    event = await _ask_then(rig, "tell me all", long_answer)
    rig.fake.delete_thread("C1", event["ts"])
    refused = {"left": 1}

    def post(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("metadata", {}).get("event_payload", {}).get("part") == 1 and refused["left"]:
            refused["left"] -= 1
            return {"ok": False, "error": "internal_error"}
        return rig.fake._chat_post_message(args)

    rig.fake.set_response("chat.postMessage", post)
    rig.sim.complete_now()
    assert await _state(rig) is TurnState.ANSWERED
    posted = _top_level(rig, "C1")
    parts = [p["metadata"]["event_payload"]["part"] for p in posted if p.get("metadata")]
    assert parts == sorted(set(parts)) and len(parts) >= 2 and refused["left"] == 0
    assert sum(1 for p in posted if not p.get("metadata")) == 1  # one lead line
    assert sum(1 for c in rig.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == event["ts"]) == 1


# ---- the Slack edge of long answers -------------------------------------------------------------------------


async def test_long_answer_with_a_note_keeps_every_message_under_the_block_limit(rig: SlackRig) -> None:
    """An answer of about 12,000 characters with a 300-character low-confidence note: no message's blocks exceed
    the 12,000 characters Slack accepts (the fake refuses more with msg_blocks_too_long), and it is answered once."""
    long_answer = "\n\n".join([f"Part {i}: " + "shipping and returns " * 140 for i in range(4)])
    note = ("Please double-check this. " * 12)[:299]
    assert "is now" in await rig.command(f"set low_confidence_note {note}", user="U9")
    event = await _ask_then(rig, "everything about shipping", long_answer, level="low")
    rig.sim.complete_now()
    assert await _state(rig) is TurnState.ANSWERED
    parts = rig.answers(event["ts"])
    refused = [c for c in rig.fake.calls_to("chat.postMessage") if not c.ok]
    assert refused == [] and len(parts) == 2
    assert all(p["blocks"] for p in parts)  # blocks, not the plain-text fallback
    assert [b["type"] for b in parts[-1]["blocks"][-3:]] == ["context", "context_actions", "actions"]


async def test_refused_blocks_fall_back_to_plain_text_with_balanced_code_fences(rig: SlackRig) -> None:
    """Slack refuses every message with blocks (msg_blocks_too_long): the whole answer arrives as plain-text
    messages under 4,000 characters; a message that opens a code block closes it and the next re-opens it."""
    code = "```python\n" + "\n".join(f"print({i})  # step {i}" for i in range(400)) + "\n```"
    answer = "Intro paragraph.\n\n" + code + "\n\nThe end."

    def post(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("blocks"):
            return {"ok": False, "error": "msg_blocks_too_long"}
        return rig.fake._chat_post_message(args)

    rig.fake.set_response("chat.postMessage", post)
    event = await _ask_then(rig, "show me the code", answer)
    rig.sim.complete_now()
    assert await _state(rig) is TurnState.ANSWERED
    pieces = rig.answers(event["ts"])
    assert len(pieces) >= 3 and not any(p.get("blocks") for p in pieces)
    for piece in pieces:
        assert len(piece["text"]) < 4000
        assert piece["text"].count("```") % 2 == 0, piece["text"][-80:]
    joined = "".join(p["text"] for p in pieces)
    assert "Intro paragraph." in joined and "print(0)" in joined and "print(399)" in joined
    assert "The end." in pieces[-1]["text"] and ":warning:" in pieces[-1]["text"]  # the note goes last
    assert [p["metadata"]["event_payload"]["piece"] for p in pieces] == list(range(len(pieces)))


async def test_misleading_link_text_shows_the_real_target(rig: SlackRig) -> None:
    """`[https://good.example](https://evil.example)` reaches Slack as the text followed by the real target."""
    event = await _ask_then(rig, "which site", "Log in at [https://good.example](https://evil.example/login).")
    rig.sim.complete_now()
    [answer] = await rig.wait_answer(event["ts"])
    shown = answer["blocks"][0]["text"]
    assert "https://good.example (<https://evil.example/login>)" in shown
    assert "|https://good.example>" not in shown


async def test_a_button_on_an_answer_moved_to_a_dm_rates_it(rig: SlackRig) -> None:
    """An answer delivered by DM (its channel was archived) still takes the asker's 👍: the button's channel is the
    DM, not the question's channel, and the rating reaches Uppzy once."""
    await _ask_then(rig, "can I return boots", "Yes, within 30 days.")
    rig.fake.refuse_channel("C1", "is_archived")
    rig.sim.complete_now()
    dms = await rig.fake.wait_until(lambda: len(rig.fake.posted_messages("U1")) >= 2 and rig.fake.posted_messages("U1"),
                                    what="the answer by DM")
    answer = dms[-1]
    press = {
        "type": "block_actions", "user": {"id": "U1"}, "channel": {"id": answer["channel"]},
        "container": {"type": "message", "channel_id": answer["channel"], "message_ts": answer["ts"],
                      "is_ephemeral": False},
        "message": {"ts": answer["ts"], "type": "message"},
        "actions": [{"action_id": "uppzy_feedback_good", "block_id": "uppzy_feedback", "type": "button",
                     "value": "good"}],
    }
    await rig.fake.send_interactive(press)
    [rated] = await rig.fake.wait_until(lambda: rig.sim.calls("chat_feedback"), what="the rating at Uppzy")
    assert rated.body["feedback"] == "good"
