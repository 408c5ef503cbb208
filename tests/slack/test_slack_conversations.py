"""End to end through slack-bolt over Socket Mode against FakeSlack and the Uppzy simulator: who gets answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.slack_support import SlackRig



async def test_mention_is_answered_in_its_thread(rig: SlackRig) -> None:
    """A channel mention is acked, sent to Uppzy without the mention, and answered in the question's thread."""
    rig.sim.script("opening hours", "We are open **9 to 5**. See [hours](https://shop.example.com/hours).")
    event = await rig.mention("what are your opening hours?")
    [answer] = await rig.wait_answer(event["ts"])
    assert answer["channel"] == "C1"
    [question] = rig.questions()
    assert question["message"] == "what are your opening hours?"
    assert question["session_id"] == "slack-user-U1-C1"
    markdown = answer["blocks"][0]
    assert markdown == {"type": "markdown",
                        "text": "We are open **9 to 5**. See [hours](https://shop.example.com/hours)."}
    rate, human = answer["blocks"][-2:]
    assert rate["type"] == "context_actions" and rate["elements"][0]["type"] == "feedback_buttons"
    assert [e["action_id"] for e in human["elements"]] == ["uppzy_human"]
    assert answer["unfurl_links"] in (False, "0", "false")
    await rig.relay.wait_idle()
    assert rig.fake.reactions_on("C1", event["ts"]) == {}  # answered at once: no ⏳ (test_slack_progress.py)


async def test_direct_message_is_answered_without_a_mention(rig: SlackRig) -> None:
    """A DM needs no mention and is answered in a thread under the user's message."""
    event = await rig.message("how do I reset my password?", channel="D1")
    [answer] = await rig.wait_answer(event["ts"])
    assert answer["channel"] == "D1"
    assert rig.questions()[0]["session_id"] == "slack-user-U1-D1"


async def test_thread_follow_up_needs_no_mention_and_keeps_the_session(rig: SlackRig) -> None:
    """A reply in a thread the bot answers is a follow-up in the same Uppzy session, with no new mention."""
    first = await rig.mention("what is the return policy?")
    await rig.wait_answer(first["ts"])
    await rig.relay.wait_idle()
    await rig.message("and for sale items?", thread_ts=first["ts"])
    await rig.wait_answer(first["ts"], count=2)
    follow_up = rig.questions()[1]
    assert follow_up["message"] == "and for sale items?"
    assert follow_up["session_id"] == rig.questions()[0]["session_id"]


async def test_plain_messages_are_ignored_unless_the_channel_answers_everything(rig: SlackRig) -> None:
    """Top-level messages without a mention are ignored in 'mention' channels and answered in 'all' channels."""
    assert "now `all`" in await rig.command("channel all", user="U9", channel="C2")
    quiet = await rig.message("anyone know the wifi password?", channel="C1")
    loud = await rig.message("where is the invoice?", channel="C2")
    await rig.wait_answer(loud["ts"])
    other_thread = await rig.message("just chatting", channel="C2", thread_ts=quiet["ts"])
    await rig.relay.wait_idle()
    assert rig.answers(quiet["ts"]) == [] and rig.answers(other_thread["ts"]) == []
    assert [q["message"] for q in rig.questions()] == ["where is the invoice?"]


async def test_channel_switched_off_ignores_even_mentions(rig: SlackRig) -> None:
    """In an 'off' channel the bot stays silent even when mentioned."""
    await rig.command("channel off", user="U9", channel="C3")
    await rig.mention("hello?", channel="C3")
    probe = await rig.mention("hello?", channel="C1")
    await rig.wait_answer(probe["ts"])
    await rig.relay.wait_idle()
    assert len(rig.questions()) == 1 and rig.posts_in(probe["ts"])


async def test_bots_self_edits_and_joins_are_ignored(rig: SlackRig) -> None:
    """Other bots, the bot itself, edits, deletions and joins never reach Uppzy."""
    fake = rig.fake
    await rig.message("<@UBOT> I am a bot", channel="D1", bot_id="B2")
    await rig.message("my own answer", user=fake.bot_user_id, channel="D1", bot_id=fake.bot_id)
    await rig.message("edited", channel="D1", subtype="message_changed")
    await rig.message("deleted", channel="D1", subtype="message_deleted")
    await rig.message("<@U1> has joined the channel", channel="C1", subtype="channel_join")
    probe = await rig.message("a real question", channel="D1")
    await rig.wait_answer(probe["ts"])
    await rig.relay.wait_idle()
    assert [q["message"] for q in rig.questions()] == ["a real question"]


async def test_redeliveries_and_double_events_are_answered_once(rig: SlackRig) -> None:
    """A retried envelope (same event_id, retry_attempt 1) and the message.channels copy of a mention answer once."""
    event = rig.fake.app_mention_event("U1", "C1", "shipping to Canada?")
    await rig.fake.send_event(event, event_id="EvSAME")
    await rig.fake.send_event(event, event_id="EvSAME", retry_attempt=1, retry_reason="timeout")
    copy = rig.fake.message_event("U1", "C1", event["text"], ts=event["ts"])
    await rig.fake.send_event(copy)
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    assert len(rig.answers(event["ts"])) == 1
    assert len(rig.questions()) == 1


async def test_file_without_text_gets_a_text_only_reply(rig: SlackRig) -> None:
    """An upload with no words gets a private 'text only' line and is not sent to Uppzy."""
    files = [{"id": "F1", "name": "screenshot.png", "mimetype": "image/png"}]
    event = rig.fake.app_mention_event("U1", "C1", "")
    event["files"] = files
    await rig.fake.send_event(event)
    [reply] = await rig.fake.wait_until(lambda: rig.fake.ephemerals, what="ephemeral")
    assert reply["user"] == "U1" and "only read text" in reply["text"]
    probe = await rig.mention("real question")
    await rig.wait_answer(probe["ts"])
    assert len(rig.questions()) == 1


async def test_email_is_sent_only_when_the_workspace_allows_it(rig: SlackRig) -> None:
    """users.info is asked for the email only after an admin turns send_email on."""
    rig.fake.add_user("U1", name="ada", email="ada@example.com")
    first = await rig.mention("first")
    await rig.wait_answer(first["ts"])
    assert "email" not in rig.questions()[0] and not rig.fake.calls_to("users.info")
    assert "`send_email` is now `on`" in await rig.command("set send_email on", user="U9")
    second = await rig.mention("second", channel="C7")
    await rig.wait_answer(second["ts"])
    assert rig.questions()[1]["email"] == "ada@example.com"


async def test_uppzy_failure_is_a_friendly_line_in_the_thread(rig: SlackRig) -> None:
    """When Uppzy cannot answer, the thread gets the fallback text and no status code or detail."""
    rig.sim.script("broken", fail=True)
    event = await rig.mention("this one is broken")
    notice = await rig.wait_post(event["ts"])
    assert notice["text"].startswith("Sorry, I couldn't get an answer")
    assert not any(ch.isdigit() for ch in notice["text"])
    assert not rig.answers(event["ts"])
