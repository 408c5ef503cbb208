"""Discord conversations end to end: real discord.py against FakeDiscord, real relay against the Uppzy simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import FORUM_ID, GUILD_ID, OTHER_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_fake import FakeDiscord


def assert_pings_nobody(post: dict[str, Any]) -> None:
    """The message was sent with allowed_mentions that allow no user, role, @everyone or reply ping."""
    allowed = post["allowed_mentions"]
    assert allowed["parse"] == [] and not allowed.get("users") and not allowed.get("roles")
    assert not allowed.get("replied_user")


@pytest.fixture
async def h(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """The bot connected to the fake, with relay and store; closed (and error-checked) afterwards."""
    harness = DiscordHarness(fake, sim, uppzy, tmp_path)
    try:
        await harness.start(typing_interval=0.05)
        yield harness
    finally:
        await harness.aclose()


async def test_mention_starts_thread_from_message_and_answers_there(h: DiscordHarness) -> None:
    """A mention in a text channel opens a thread on that message (named from the question) and answers in it."""
    sent = await h.mention("How do returns work?")
    thread_id = int(sent["id"])
    posts = await h.wait_posts(thread_id)

    created = h.fake.calls("POST", rf"/channels/{TEXT_ID}/messages/{thread_id}/threads")
    assert len(created) == 1 and created[0].json["name"] == "How do returns work?"
    assert "Returns are accepted within 30 days" in posts[0]["content"]
    assert_pings_nobody(posts[0])
    buttons = posts[-1]["components"][0]["components"]
    assert [b["custom_id"] for b in buttons] == ["uppzy:fb:good", "uppzy:fb:bad", "uppzy:human"]
    assert h.posts(TEXT_ID) == []
    chat = h.chats()[0]
    assert chat.body["session_id"] == f"discord-user-{USER_ID}-{TEXT_ID}"
    assert chat.body["message"] == "How do returns work?"


async def test_follow_up_in_bot_thread_needs_no_mention_and_keeps_session(h: DiscordHarness) -> None:
    """A plain message in the bot's thread is a follow-up in the same session; other threads stay silent."""
    sent = await h.mention("How do returns work?")
    thread_id = int(sent["id"])
    await h.wait_posts(thread_id)
    await h.say("and shipping?", channel_id=thread_id)
    posts = await h.wait_posts(thread_id, 2)

    assert "2-4 business days" in posts[1]["content"]
    sessions = {c.body["session_id"] for c in h.chats()}
    assert sessions == {f"discord-user-{USER_ID}-{TEXT_ID}"}
    assert len(h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads")) == 1

    await h.mention("me too: what about refunds?", channel_id=thread_id, author_id=OTHER_ID)
    await h.wait_posts(thread_id, 3)  # others mention the bot in its thread, and get their own session
    assert h.chats()[-1].body["session_id"] == f"discord-user-{OTHER_ID}-{TEXT_ID}"


async def test_messages_in_other_threads_need_a_mention(h: DiscordHarness) -> None:
    """In someone else's thread (uncached: fetched over REST) a mention is needed until the bot answers there."""
    thread_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, thread_id, type=11, name="chatter", parent_id=TEXT_ID, owner_id=OTHER_ID)
    await h.say("returns are annoying", channel_id=thread_id)
    await h.mention("How do returns work?", channel_id=thread_id)
    posts = await h.wait_posts(thread_id)
    await h.wait_idle()

    assert len(h.chats()) == 1 and len(posts) == 1
    assert h.chats()[0].body["session_id"] == f"discord-user-{USER_ID}-{TEXT_ID}"
    assert h.fake.calls("GET", rf"/channels/{thread_id}")
    assert h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []

    await h.say("and shipping?", channel_id=thread_id)  # now the bot answers in this thread: no mention needed
    await h.wait_posts(thread_id, 2)
    assert len(h.chats()) == 2


async def test_dm_is_answered_in_place(h: DiscordHarness) -> None:
    """A DM needs no mention and is answered in the DM channel, without a thread."""
    dm_id = h.fake.new_id()
    await h.say("what about shipping?", channel_id=dm_id, guild=False)
    posts = await h.wait_posts(dm_id)

    assert "2-4 business days" in posts[0]["content"]
    assert h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []
    assert h.chats()[0].body["session_id"] == f"discord-user-{USER_ID}-{dm_id}"


async def test_forum_post_is_answered_in_place(h: DiscordHarness) -> None:
    """A new forum post (starter message id == thread id) is answered inside the post, without a mention."""
    post_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, post_id, type=11, name="Password help", parent_id=FORUM_ID, owner_id=USER_ID)
    await h.fake.dispatch("THREAD_CREATE", {**h.fake.channel(post_id), "newly_created": True})
    await h.say("I forgot my password", channel_id=post_id, message_id=post_id)
    posts = await h.wait_posts(post_id)

    assert "Forgot password" in posts[0]["content"]
    assert h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []
    assert h.chats()[0].body["session_id"] == f"discord-user-{USER_ID}-{FORUM_ID}"


async def test_bots_system_messages_and_plain_chatter_are_ignored(h: DiscordHarness) -> None:
    """Other bots (even mentioning us), system messages, edits and unmentioned chatter get no answer."""
    await h.mention("returns?", author_id=OTHER_ID, author_bot=True)
    await h.mention("returns?", msg_type=7)  # a "member joined" system message
    await h.say("returns?", channel_id=TEXT_ID)  # no mention, channel mode "mention"
    await h.say("returns? @everyone", channel_id=TEXT_ID, mention_everyone=True)
    edited = await h.say("typo", channel_id=TEXT_ID)
    await h.fake.dispatch("MESSAGE_UPDATE", {**edited, "content": f"<@{h.fake.bot_id}> returns?",
                                             "mentions": [{"id": str(h.fake.bot_id), "username": "uppzy",
                                                           "discriminator": "0", "avatar": None}]})
    probe = await h.mention("[probe] how do returns work?")  # an ordinary question, answered in its own thread
    await h.wait_posts(probe["id"])
    await h.wait_idle()

    assert [c.body["message"] for c in h.chats()] == ["[probe] how do returns work?"]
    posts = [c.path for c in h.fake.requests if c.method == "POST" and "/channels/" in c.path]
    assert posts and all(probe["id"] in path for path in posts), posts


async def test_duplicate_message_create_after_resume_is_answered_once(h: DiscordHarness) -> None:
    """The same MESSAGE_CREATE delivered again after a RECONNECT/RESUME gives one answer, not two."""
    sent = await h.mention("How do returns work?")
    await h.wait_posts(sent["id"])
    await h.fake.send_reconnect()
    await h.fake.wait_for(lambda: h.fake.resume_count == 1 and h.fake.connected, what="resumed")
    await h.fake.redeliver(sent)
    await h.fake.redeliver(sent)
    probe = await h.mention("[probe] and shipping?", author_id=OTHER_ID)  # on the same resumed gateway session
    await h.wait_posts(probe["id"])
    await h.wait_idle(2)

    assert len(h.posts(sent["id"])) == 1
    assert [c.body["message"] for c in h.chats()] == ["How do returns work?", "[probe] and shipping?"]


async def test_everyone_and_mentions_in_an_answer_ping_nobody(h: DiscordHarness) -> None:
    """Model text with @everyone, @here, role and user mentions is defused and sent with no allowed mentions."""
    h.sim.script("ping test", answer=f"Hey @everyone and @here, ask <@&{GUILD_ID}> or <@{OTHER_ID}>.\n\n"
                                     "`@everyone` in code stays as is.")
    sent = await h.mention("ping test")
    post = (await h.wait_posts(sent["id"]))[0]

    assert_pings_nobody(post)
    content = post["content"]
    assert "@everyone and" not in content and "@here," not in content
    assert f"<@&{GUILD_ID}>" not in content and f"<@{OTHER_ID}>" not in content
    assert "`@everyone` in code" in content


async def test_long_answer_is_split_with_buttons_on_the_last_chunk(h: DiscordHarness) -> None:
    """A 5,000-character answer arrives as ≤2,000-character messages; code fences stay whole; buttons once."""
    paragraph = "Lorem ipsum dolor sit amet, " * 30
    code = "```python\n" + "\n".join(f"print({i})" for i in range(60)) + "\n```"
    h.sim.script("long one", answer="\n\n".join([paragraph.strip()] * 3 + [code] + [paragraph.strip()] * 3))
    sent = await h.mention("long one")
    await h.wait_idle()
    posts = h.posts(sent["id"])

    assert len(posts) >= 3 and all(len(p["content"]) <= 2000 for p in posts)
    assert [bool(p["components"]) for p in posts] == [False] * (len(posts) - 1) + [True]
    assert all(p["content"].count("```") % 2 == 0 for p in posts)
    assert sum("print(59)" in p["content"] for p in posts) == 1
    assert len({p["nonce"] for p in posts}) == len(posts)


async def test_rate_limited_post_is_delivered_once(h: DiscordHarness) -> None:
    """A 429 with retry_after on the answer post is waited out by discord.py; the answer lands exactly once."""
    message_id = h.fake.new_id()
    h.fake.rate_limit_next("POST", rf"/channels/{message_id}/messages", retry_after=0.1)
    await h.mention("How do returns work?", message_id=message_id)
    await h.wait_idle()

    assert [c.status for c in h.fake.calls("POST", rf"/channels/{message_id}/messages")] == [429, 200]
    assert len(h.posts(message_id)) == 1


async def test_low_confidence_answer_gets_a_note(h: DiscordHarness) -> None:
    """A low-confidence answer carries the workspace's note as small subtext under it."""
    h.sim.script("unsure", answer="Maybe blue.", score=20, level="low")
    sent = await h.mention("unsure about colours")
    post = (await h.wait_posts(sent["id"]))[0]

    assert post["content"].startswith("Maybe blue.")
    assert "\n\n-# ⚠️ I'm not fully sure" in post["content"]


async def test_typing_is_kept_alive_while_waiting(h: DiscordHarness) -> None:
    """Typing is re-sent while Uppzy thinks (it expires after ~10 s on Discord) and stops with the answer."""
    assert h.relay is not None
    h.relay.parts.platforms.working_after = 0.0  # typing at once here; its delay: test_discord_progress.py
    h.sim.script("slow", answer="Done.", latency=0.4)
    sent = await h.mention("slow question")
    await h.wait_posts(sent["id"])
    count = h.fake.typing_count(int(sent["id"]))
    # The probe: a slow DM keeps its own typing alive meanwhile; after 3 of its beats (0.05 s apart), a typing
    # loop left running for the answered question would have beaten at least twice too.
    dm_id = h.fake.new_id()
    await h.say("another slow one", channel_id=dm_id, guild=False)
    await h.fake.wait_for(lambda: h.fake.typing_count(dm_id) >= 3, what="3 typing beats for the probe")

    assert count >= 3
    assert h.fake.typing_count(int(sent["id"])) == count


async def test_uppzy_failure_is_a_short_friendly_line(h: DiscordHarness) -> None:
    """When Uppzy fails, the thread gets the friendly fallback: no status code, no stack, no key."""
    h.sim.script("explode", fail=True)
    sent = await h.mention("explode please")
    post = (await h.wait_posts(sent["id"]))[0]

    assert post["content"].startswith("Sorry, I couldn't get an answer")
    assert not any(word in post["content"] for word in ("502", "Traceback", "sim-key", "Error"))


async def test_attachment_without_text_gets_text_only_reply(h: DiscordHarness) -> None:
    """An image with only a mention is answered in place with a short 'text only' line; Uppzy is not asked."""
    sent = await h.mention("", attachments=[{"filename": "screenshot.png", "content_type": "image/png"}])
    post = (await h.wait_posts(TEXT_ID))[0]

    assert post["content"].startswith("I can only read text")
    assert post["message_reference"]["message_id"] == sent["id"]
    assert h.chats() == []
    assert h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []


async def test_empty_mention_is_answered_in_place(h: DiscordHarness) -> None:
    """A bare mention gets core's 'empty message' line as a reply, without opening a thread."""
    await h.mention("")
    post = (await h.wait_posts(TEXT_ID))[0]

    assert "empty" in post["content"]
    assert h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []


async def test_idle_close_notice_lands_in_the_thread(h: DiscordHarness) -> None:
    """After the idle timeout the reaper closes the session and says so in the conversation's thread."""
    sent = await h.mention("How do returns work?")
    await h.wait_posts(sent["id"])
    await h.wait_idle()
    assert h.relay is not None
    closed = await h.relay.reaper.reap_once(now=time.time() + 3600)
    posts = await h.wait_posts(sent["id"], 2)

    assert closed == 1
    assert "closed after 30 minutes of inactivity" in posts[1]["content"]
    assert len(h.sim.calls("session_close")) == 1


async def test_answer_is_delivered_after_a_restart(h: DiscordHarness) -> None:
    """A question pending when the process stops is resumed at start and answered once the bot is connected."""
    h.sim.script("slow", answer="Here you go.", latency=0.25, score=90, level="high")
    sent = await h.mention("slow question")
    await h.fake.wait_for(lambda: h.chats(), what="question submitted")
    await h.restart_process(down_for=0.3)  # the answer is ready before the bot is back
    posts = await h.wait_posts(sent["id"])
    await h.wait_idle()

    assert [p["content"] for p in h.posts(sent["id"])] == ["Here you go."] == [p["content"] for p in posts]
    assert len(h.chats()) == 1


async def test_mentioning_the_bots_managed_role_counts_as_a_mention(h: DiscordHarness) -> None:
    """Picking the bot's integration role from the @ menu (a common slip) still asks the bot."""
    assert h.bot is not None and h.bot.client is not None
    guild = h.bot.client.get_guild(GUILD_ID)
    assert guild is not None and guild.self_role is not None
    role_id = guild.self_role.id
    base = await h.say("ignored without a mention", channel_id=TEXT_ID)
    message_id = h.fake.new_id()
    await h.fake.dispatch("MESSAGE_CREATE", {**base, "id": str(message_id), "content": f"<@&{role_id}> returns?",
                                             "mention_roles": [str(role_id)]})
    posts = await h.wait_posts(message_id)

    assert "Returns are accepted" in posts[0]["content"]
    assert [c.body["message"] for c in h.chats()] == ["returns?"]
