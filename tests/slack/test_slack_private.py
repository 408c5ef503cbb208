"""Private answers end to end through FakeSlack and the simulator: `/uppzy ask <question>` answers the asker alone,
in a thread of their DM with the bot, in a session of its own, with an ephemeral pointer in the channel; "Share
with the channel" posts the answer there once, attributed, with nothing pinging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bots.slack.private import ASK_USAGE, SHARE_ACTION
from core.models import PRIVATE, ReplyTarget
from core.session_ids import conversation_key

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


def _channel_posts(rig: SlackRig, channel: str = "C1") -> list[dict[str, Any]]:
    return rig.fake.posted_messages(channel)


async def _ask_privately(rig: SlackRig, question: str, answer: str, *, user: str = "U1",
                         channel: str = "C1") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Run `/uppzy ask`; return the channel reply, the DM thread's opening message and the answer in it."""
    rig.sim.script(question, answer, score=95, level="high")
    reply = await rig.command(f"ask {question}", user=user, channel=channel)
    header = await rig.fake.wait_until(  # posted to the user's id: Slack puts it in the app's DM with them
        lambda: [m for m in rig.fake.posted_messages(user) if not m.get("thread_ts")], what="the private thread")
    [answer_message] = await rig.wait_answer(header[0]["ts"])
    await rig.relay.wait_idle()
    return reply, header[0], answer_message


async def test_ask_answers_only_the_asker_in_their_dm_in_its_own_session(rig: SlackRig) -> None:
    """A public question first, then `/uppzy ask` in the same channel: the answer goes to a thread of the asker's
    DM (with feedback, Talk to a human and Share), the channel gets nothing anyone else sees (the pointer is the
    command's ephemeral reply), and Uppzy got the private question in a session that is neither the public one nor
    the DM's."""
    rig.sim.script("public question", "public answer", score=95, level="high")
    event = await rig.mention("public question")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    before = len(_channel_posts(rig))
    ephemerals = len(rig.fake.ephemerals)

    reply, header, answer = await _ask_privately(rig, "my salary band?", "Band **B**, see HR.")

    assert "privately" in reply and "/archives/D1/" in reply  # the pointer links to the DM thread
    assert header["channel"] == "U1" and "<#C1>" in header["text"] and "my salary band?" in header["text"]
    assert answer["channel"] == "D1" and answer["thread_ts"] == header["ts"]
    kinds = [b["type"] for b in answer["blocks"]]
    assert kinds[0] == "markdown" and "context_actions" in kinds
    assert any(e.get("action_id") == SHARE_ACTION for b in answer["blocks"] for e in b.get("elements") or [])
    probe = await rig.drain()
    assert [m for m in _channel_posts(rig) if m.get("thread_ts") != probe["ts"]][before:] == []
    assert len(rig.fake.ephemerals) == ephemerals  # nothing posted in the channel, not even ephemerally
    public, private = rig.questions()[0], rig.questions()[1]
    assert public["session_id"] == "slack-user-U1-C1"
    assert private["session_id"] == "slack-user-U1-C1-private"
    assert private["session_id"] not in (public["session_id"], "slack-user-U1-D1")


async def test_share_posts_the_answer_once_attributed_and_defused(rig: SlackRig) -> None:
    """Share posts the private answer (text from the clicked message) in the channel it was asked in, attributed
    to the sharer, with nothing that can ping; the DM answer then says it was shared, and a second click (a stale
    copy still showing the button) posts nothing more."""
    _, _, answer = await _ask_privately(rig, "who to ask?", "Ask <!channel> or <@U2> or @here about **it**.")
    fake = rig.fake
    click = fake.button_click(answer, SHARE_ACTION)
    await fake.wait_for_ack(await fake.send_interactive(click))
    [shared] = await fake.wait_until(lambda: _channel_posts(rig), what="the shared answer")
    assert shared["text"].startswith("<@U1> shared an answer")
    head, body = shared["blocks"][0], shared["blocks"][1]
    assert head["type"] == "context" and head["elements"][0]["text"].startswith("<@U1> shared an answer")
    assert body["type"] == "markdown" and "**it**" in body["text"]
    everything = str(shared["blocks"]) + shared["text"]
    for ping in ("<!channel>", "<@U2>", "@here"):
        assert ping not in everything
    stored = await fake.wait_until(lambda: (m := fake.messages["D1"][answer["ts"]]).get("edited") and m,
                                   what="the answer marked shared")
    assert "Shared in <#C1>" in str(stored["blocks"])
    assert not any(e.get("action_id") == SHARE_ACTION for b in stored["blocks"] for e in b.get("elements") or [])

    await fake.wait_for_ack(await fake.send_interactive(fake.button_click(answer, SHARE_ACTION)))
    await fake.wait_until(lambda: any("already been shared" in e["text"] for e in fake.ephemerals),
                          what="already shared")
    assert len(_channel_posts(rig)) == 1


async def test_the_private_answer_can_be_rated(rig: SlackRig) -> None:
    """The DM answer is an ordinary answer: its 👍 reaches Uppzy and the buttons show the rating (an ephemeral
    answer could not be updated)."""
    _, _, answer = await _ask_privately(rig, "rate me", "An answer.")
    fake = rig.fake
    await fake.wait_for_ack(await fake.send_interactive(fake.feedback_click(answer, "good", channel="D1")))
    await fake.wait_until(lambda: rig.sim.calls("chat_feedback"), what="feedback at Uppzy")
    stored = await fake.wait_until(lambda: (m := fake.messages["D1"][answer["ts"]]).get("edited") and m,
                                   what="the rating shown")
    assert "context_actions" not in [b["type"] for b in stored["blocks"]]


async def test_a_blank_ask_gets_the_usage_line(rig: SlackRig) -> None:
    """`/uppzy ask` with no question: the usage line, nothing sent anywhere."""
    assert await rig.command("ask") == ASK_USAGE
    assert await rig.command("ask    ") == ASK_USAGE
    assert rig.fake.posted_messages("U1") == [] and rig.questions() == []


async def test_ask_in_a_channel_switched_off_is_refused(rig: SlackRig) -> None:
    """A channel an admin switched off answers nothing, privately either."""
    await rig.command("channel off", user="U9")
    reply = await rig.command("ask anything?")
    assert "switched off" in reply and rig.questions() == [] and rig.fake.posted_messages("U1") == []


def test_a_private_question_has_its_own_key_whatever_the_strategy() -> None:
    """The private key names the channel asked in, never the DM's or the public conversation's."""
    target = ReplyTarget(platform="slack", workspace_id="T1", channel_id="D1", message_channel_id="D1",
                         message_id="1.0", user_id="U1", is_dm=True, extras=((PRIVATE, "C1"),))
    for strategy in ("user", "thread", "channel"):
        assert conversation_key(target, strategy, ("T1",)) == "slack-user-U1-C1-private:T1"
