"""Who may talk to the bot where on Discord (issue 10): no thread hijack, invisible-only text, forwarded messages."""

from __future__ import annotations

from bots.discord.strings import TEXT_ONLY
from core.messages import EMPTY_MESSAGE
from tests.discord_support import FORUM_ID, GUILD_ID, OTHER_ID, TEXT_ID, USER_ID, DiscordHarness


async def test_in_the_bots_thread_only_the_asker_goes_on_without_a_mention(h: DiscordHarness) -> None:
    """The thread the bot made from a question continues for its asker; anyone else there must mention it."""
    sent = await h.mention("How do returns work?")
    thread_id = int(sent["id"])
    await h.wait_posts(thread_id)
    await h.say("Bob, are we still on for lunch?", channel_id=thread_id, author_id=OTHER_ID)
    await h.say("and shipping?", channel_id=thread_id)
    await h.wait_posts(thread_id, 2)
    await h.drain()
    assert [c.body["message"] for c in h.chats()] == ["How do returns work?", "and shipping?"]
    assert len(h.posts(thread_id)) == 2


async def test_in_a_humans_thread_one_mention_does_not_open_it_to_everyone(h: DiscordHarness) -> None:
    """Bob's thread: Alice asks the bot by mention; Bob's own chatter there is not a question, Alice's is."""
    thread_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, thread_id, type=11, name="lunch", parent_id=TEXT_ID, owner_id=OTHER_ID)
    await h.mention("How do returns work?", channel_id=thread_id)
    await h.wait_posts(thread_id)
    await h.say("are we still on for lunch?", channel_id=thread_id, author_id=OTHER_ID)
    await h.say("and shipping?", channel_id=thread_id)
    await h.wait_posts(thread_id, 2)
    await h.drain()
    assert [c.body["message"] for c in h.chats()] == ["How do returns work?", "and shipping?"]


async def test_in_a_forum_post_the_posts_author_goes_on_without_a_mention(h: DiscordHarness) -> None:
    """A forum post is answered; its author's replies continue it, other members mention the bot."""
    post_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, post_id, type=11, name="Password help", parent_id=FORUM_ID, owner_id=USER_ID)
    await h.fake.dispatch("THREAD_CREATE", {**h.fake.channel(post_id), "newly_created": True})
    await h.say("I forgot my password", channel_id=post_id, message_id=post_id)
    await h.wait_posts(post_id)
    await h.say("same here, so annoying", channel_id=post_id, author_id=OTHER_ID)
    await h.say("and what about shipping?", channel_id=post_id)
    await h.wait_posts(post_id, 2)
    await h.drain()
    assert [c.body["message"] for c in h.chats()] == ["I forgot my password", "and what about shipping?"]


async def test_invisible_only_text_is_an_empty_message(h: DiscordHarness) -> None:
    """Zero-width and bidi characters alone get the 'empty' line, in a DM and after a mention."""
    dm_id = h.fake.new_id()
    await h.say("\u200b\u200d\ufeff\u2060\u200f", channel_id=dm_id, guild=False)
    assert EMPTY_MESSAGE in (await h.wait_posts(dm_id))[0]["content"]
    await h.mention("\u200b \ufe0f")
    assert EMPTY_MESSAGE in (await h.wait_posts(TEXT_ID))[0]["content"]
    await h.drain()
    assert h.chats() == []


async def test_a_forwarded_message_is_asked_about_never_empty(h: DiscordHarness) -> None:
    """A forward (message_snapshots, empty content) is answered from the forwarded text; a picture gets 'text only'."""
    sent = await h.mention("How do returns work?")
    thread_id = int(sent["id"])
    await h.wait_posts(thread_id)
    await h.say("", channel_id=thread_id, forwarded={"content": "How long does shipping take?"})
    posts = await h.wait_posts(thread_id, 2)
    assert "2-4 business days" in posts[1]["content"]
    dm_id = h.fake.new_id()
    await h.say("", channel_id=dm_id, guild=False,
                forwarded={"content": "", "attachments": [{"filename": "receipt.png", "content_type": "image/png"}]})
    assert TEXT_ONLY in (await h.wait_posts(dm_id))[0]["content"]
    await h.say("", channel_id=thread_id, author_id=OTHER_ID, forwarded={"content": "Is shipping free?"})
    await h.drain()
    assert [c.body["message"] for c in h.chats()] == ["How do returns work?", "How long does shipping take?"]
    assert not any(EMPTY_MESSAGE in p["content"] for p in h.posts(thread_id) + h.posts(dm_id))
