"""Who may talk to the bot where on Slack (issue 10): no thread hijack, invisible-only text, forwarded messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.messages import EMPTY_MESSAGE, TEXT_ONLY

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


def _forward(rig: SlackRig, user: str, channel: str, text: str, comment: str = "",
             thread_ts: str | None = None, files: bool = False) -> dict[str, Any]:
    """A message forwarding another one: Slack puts the shared message in `attachments` (is_share)."""
    event = rig.fake.message_event(user, channel, comment, thread_ts=thread_ts)
    shared: dict[str, Any] = {
        "is_share": True, "is_msg_unfurl": True, "text": text, "fallback": f"[June 1st] Carol: {text}",
        "author_id": "U7", "author_name": "Carol", "channel_id": "C5", "ts": "1700000000.000100",
        "from_url": "https://example.slack.com/archives/C5/p1700000000000100", "mrkdwn_in": ["text"],
    }
    if files:
        shared["files"] = [{"id": "F1", "name": "receipt.png", "mimetype": "image/png"}]
    event["attachments"] = [shared]
    return event


async def test_only_askers_continue_a_thread_without_a_mention(rig: SlackRig) -> None:
    """In a thread a human started, the bot answering one mention does not make it answer everybody there."""
    lunch = await rig.message("lunch at noon?", user="U3")  # a human's thread: the bot stays out
    asked = await rig.mention("what is the return policy?", thread_ts=lunch["ts"])
    await rig.wait_answer(lunch["ts"])
    await rig.relay.wait_idle()
    await rig.message("Bob, are we still on for lunch?", user="U2", thread_ts=lunch["ts"])  # not for the bot
    await rig.message("and for sale items?", user="U1", thread_ts=lunch["ts"])  # the asker's follow-up
    await rig.wait_answer(lunch["ts"], count=2)
    await rig.drain()
    assert [q["message"] for q in rig.questions()] == ["what is the return policy?", "and for sale items?"]
    assert asked["user"] == "U1" and len(rig.answers(lunch["ts"])) == 2
    await rig.mention("do you ship abroad?", user="U2", thread_ts=lunch["ts"])  # Bob asks: he mentions the bot
    await rig.wait_answer(lunch["ts"], count=3)
    await rig.message("and to Norway?", user="U2", thread_ts=lunch["ts"])  # now Bob's follow-ups count too
    await rig.wait_answer(lunch["ts"], count=4)
    assert [q["session_id"] for q in rig.questions()][2:] == ["slack-user-U2-C1"] * 2


async def test_in_the_bots_own_thread_others_must_mention_it(rig: SlackRig) -> None:
    """A top-level question's thread (in an `all` channel too) continues for its asker; others mention the bot."""
    assert "now `all`" in await rig.command("channel all", user="U9", channel="C2")
    first = await rig.message("where is my invoice?", channel="C2")
    await rig.wait_answer(first["ts"])
    await rig.relay.wait_idle()
    await rig.message("+1, same question", user="U2", channel="C2", thread_ts=first["ts"])
    await rig.message("it was order 42", channel="C2", thread_ts=first["ts"])
    await rig.wait_answer(first["ts"], count=2)
    await rig.drain()
    assert [q["message"] for q in rig.questions()] == ["where is my invoice?", "it was order 42"]


async def test_invisible_only_text_is_an_empty_message(rig: SlackRig) -> None:
    """Zero-width spaces, joiners, BOMs, bidi marks and variation selectors alone get the 'empty' notice."""
    event = await rig.mention("\u200b\u200c\u200d \u2060\ufeff\u200e\u202e\u2066\ufe0f\u00ad")
    notice = await rig.wait_post(event["ts"])
    assert notice["text"] == EMPTY_MESSAGE
    dm = await rig.message("\u200b\u200b", channel="D1")
    assert (await rig.wait_post(dm["ts"]))["text"] == EMPTY_MESSAGE
    emoji = await rig.mention("\u2764\ufe0f\u200d\U0001f525")  # an emoji built with a joiner is a message
    await rig.wait_answer(emoji["ts"])
    assert [q["message"] for q in rig.questions()] == ["\u2764\ufe0f\u200d\U0001f525"]


async def test_a_forwarded_message_is_asked_about_never_empty(rig: SlackRig) -> None:
    """A forward (content in `attachments`) in the bot's thread or a DM is answered from the forwarded text."""
    first = await rig.mention("what is the return policy?")
    await rig.wait_answer(first["ts"])
    await rig.relay.wait_idle()
    await rig.fake.send_event(_forward(rig, "U1", "C1", "Can I return &lt;opened&gt; items?", thread_ts=first["ts"]))
    await rig.wait_answer(first["ts"], count=2)
    dm = _forward(rig, "U1", "D1", "Is shipping free?", comment="what about this one?")
    await rig.fake.send_event(dm)
    await rig.wait_answer(dm["ts"])
    pictures = _forward(rig, "U1", "D1", "", files=True)
    await rig.fake.send_event(pictures)
    shown = await rig.fake.wait_until(lambda: rig.fake.ephemerals, what="the 'text only' line")
    assert [e["text"] for e in shown] == [TEXT_ONLY]
    other = _forward(rig, "U2", "C1", "Is shipping free?", thread_ts=first["ts"])  # not an asker: ignored
    await rig.fake.send_event(other)
    await rig.drain()
    assert [q["message"] for q in rig.questions()] == [
        "what is the return policy?", "Can I return <opened> items?", "what about this one?\n\nIs shipping free?"]
    assert not any(m["text"] == EMPTY_MESSAGE for m in rig.posts_in(first["ts"]) + rig.posts_in(dm["ts"]))
