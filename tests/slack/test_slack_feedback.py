"""Ratings from Slack: reactions and 👍/👎 buttons become Uppzy feedback, thanks are private, bad ones escalate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.slack_support import SlackRig



async def _answered(rig: SlackRig, question: str = "how do refunds work?") -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask as U1 in C1 and return (question event, answer message) once the relay is idle."""
    event = await rig.mention(question)
    [answer] = await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    return event, answer


def _press(answer: dict[str, Any], action_id: str, user: str = "U1") -> dict[str, Any]:
    """A block_actions payload for one of the answer's buttons."""
    return {
        "type": "block_actions",
        "user": {"id": user},
        "channel": {"id": answer["channel"]},
        "container": {"type": "message", "channel_id": answer["channel"], "message_ts": answer["ts"],
                      "thread_ts": answer["thread_ts"], "is_ephemeral": False},
        "message": {"ts": answer["ts"], "thread_ts": answer["thread_ts"], "type": "message"},
        "actions": [{"action_id": action_id, "block_id": "uppzy_feedback", "type": "button",
                     "value": action_id.rsplit("_", 1)[1]}],
    }


async def test_reaction_from_the_asker_rates_the_answer_and_thanks_privately(rig: SlackRig) -> None:
    """A 👍 reaction (any skin tone) by the asker sends 'good' to Uppzy and an ephemeral thank-you in the thread."""
    event, answer = await _answered(rig)
    await rig.fake.send_event(rig.fake.reaction_added_event("U1", "+1::skin-tone-4", "C1", answer["ts"]))
    [thanks] = await rig.fake.wait_until(lambda: rig.fake.ephemerals, what="thanks")
    assert thanks["user"] == "U1" and thanks["thread_ts"] == event["ts"] and "Thanks" in thanks["text"]
    [rated] = rig.sim.calls("chat_feedback")
    assert rated.body["feedback"] == "good"


async def test_other_reactions_are_silent(rig: SlackRig) -> None:
    """Reactions by someone else, with other emoji, or on other people's messages do nothing visible."""
    event, answer = await _answered(rig)
    fake = rig.fake
    await fake.send_event(fake.reaction_added_event("U2", "thumbsdown", "C1", answer["ts"]))
    await fake.send_event(fake.reaction_added_event("U1", "tada", "C1", answer["ts"]))
    await fake.send_event(fake.reaction_added_event("U1", "-1", "C1", event["ts"], item_user="U1"))
    await fake.send_event(fake.reaction_added_event("U1", "-1", "C1", answer["ts"]))  # the probe: counts
    await fake.wait_until(lambda: fake.ephemerals, what="probe thanks")
    await rig.relay.wait_idle()
    assert len(fake.ephemerals) == 1 and [c.body["feedback"] for c in rig.sim.calls("chat_feedback")] == ["bad"]


async def test_buttons_rate_once_and_explain_every_outcome(rig: SlackRig) -> None:
    """👎 rates 'bad'; a second press says it is already rated; another user's press is politely refused."""
    _, answer = await _answered(rig)
    fake = rig.fake
    await fake.wait_for_ack(await fake.send_interactive(_press(answer, "uppzy_feedback_bad")))
    await fake.wait_until(lambda: len(fake.ephemerals) == 1, what="thanks")
    await fake.send_interactive(_press(answer, "uppzy_feedback_good"))
    await fake.wait_until(lambda: len(fake.ephemerals) == 2, what="already rated")
    await fake.send_interactive(_press(answer, "uppzy_feedback_good", user="U2"))
    await fake.wait_until(lambda: len(fake.ephemerals) == 3, what="not yours")
    first, again, stranger = fake.ephemerals
    assert "Thanks for telling us" in first["text"] and first["thread_ts"] == answer["thread_ts"]
    assert "already rated" in again["text"]
    assert stranger["user"] == "U2" and "Only the person who asked" in stranger["text"]
    assert [c.body["feedback"] for c in rig.sim.calls("chat_feedback")] == ["bad"]


async def test_bad_rating_pings_the_configured_group_in_the_escalation_channel(rig: SlackRig) -> None:
    """With escalation_target set to a user group and a channel, a 👎 posts a ping there with the thread link."""
    reply = await rig.command("set escalation_target <!subteam^S0123|@support> <#C0456|escalations>", user="U9")
    assert "S0123 C0456" in reply
    _, answer = await _answered(rig)
    await rig.fake.send_interactive(_press(answer, "uppzy_feedback_bad"))
    [ping] = await rig.fake.wait_until(lambda: rig.fake.posted_messages("C0456"), what="escalation")
    assert ping["text"].startswith("<!subteam^S0123> ")
    assert f"archives/C1/p{answer['ts'].replace('.', '')}" in ping["text"]


async def test_bad_rating_with_only_a_group_pings_it_in_the_thread(rig: SlackRig) -> None:
    """A user group alone is pinged inside the conversation's own thread."""
    await rig.command("set escalation_target S0999", user="U9")
    event, answer = await _answered(rig)
    await rig.fake.send_event(rig.fake.reaction_added_event("U1", "thumbsdown", "C1", answer["ts"]))
    ping = await rig.fake.wait_until(
        lambda: [m for m in rig.posts_in(event["ts"]) if m["text"].startswith("<!subteam^S0999>")], what="ping")
    assert len(ping) == 1
