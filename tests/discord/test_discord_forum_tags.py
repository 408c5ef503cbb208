"""Discord forums as a help desk: every new post answered, tagged `answered_tag`, then `escalated_tag` on 👎."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import ESCALATION_ID, FORUM_ID, GUILD_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_fake import FakeDiscord

TAGS = ["Billing", "Answered", "Escalated", "Bug", "Idea", "Docs", "Urgent"]
PATCH_TAGS = r"/channels/\d+"


@pytest.fixture
async def desk(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """The forum has tags, is in `all` mode, and the server names its answered/escalated tags."""
    fake.set_forum_tags(FORUM_ID, TAGS)
    fake.bot_manages_threads = True
    harness = DiscordHarness(fake, sim, uppzy, tmp_path)
    try:
        await harness.start()
        ws = harness.relay.workspaces
        await ws.set_channel_mode("discord", str(GUILD_ID), str(FORUM_ID), "all", by="test")
        await ws.set("discord", str(GUILD_ID), "answered_tag", "answered", by="test")  # any case matches
        await ws.set("discord", str(GUILD_ID), "escalated_tag", "Escalated", by="test")
        yield harness
    finally:
        await harness.aclose()


async def new_post(h: DiscordHarness, text: str, tags: list[str]) -> int:
    """A member opens a forum post with these tags; returns the post (thread) id."""
    post_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, post_id, type=11, name=text[:20], parent_id=FORUM_ID, owner_id=USER_ID)
    h.fake.tag_post(post_id, tags)
    await h.fake.dispatch("THREAD_CREATE", {**h.fake.channel(post_id), "newly_created": True})
    await h.say(text, channel_id=post_id, message_id=post_id)
    return post_id


async def test_new_post_is_answered_and_tagged_answered_keeping_its_tags(desk: DiscordHarness) -> None:
    """The post's own tag stays; the answered tag is added once the answer is there."""
    post_id = await new_post(desk, "I forgot my password", ["Billing"])
    posts = await desk.wait_posts(post_id)
    assert "Forgot password" in posts[0]["content"]
    await desk.fake.wait_for(lambda: desk.fake.applied_tag_names(post_id) == ["Billing", "Answered"],
                             what="the answered tag")


async def test_a_follow_up_in_a_tagged_post_makes_no_tag_calls(desk: DiscordHarness) -> None:
    """Once this process has put the answered tag on a post, the answers to follow-ups there read nothing and
    patch nothing for it (the tagging used to read the post, and maybe its forum, on every answer)."""
    post_id = await new_post(desk, "I forgot my password", ["Billing"])
    await desk.wait_posts(post_id)
    await desk.fake.wait_for(lambda: desk.fake.applied_tag_names(post_id) == ["Billing", "Answered"],
                             what="the answered tag")
    reads, patches = len(desk.fake.calls("GET", rf"/channels/{post_id}")), len(desk.fake.calls("PATCH", PATCH_TAGS))
    await desk.say("and how do returns work?", channel_id=post_id)
    await desk.wait_posts(post_id, 2)  # the follow-up's answer
    await desk.wait_idle(2)
    assert len(desk.fake.calls("GET", rf"/channels/{post_id}")) == reads
    assert len(desk.fake.calls("PATCH", PATCH_TAGS)) == patches
    assert desk.fake.applied_tag_names(post_id) == ["Billing", "Answered"]


async def test_thumbs_down_tags_the_post_escalated(desk: DiscordHarness) -> None:
    """👎 with an escalation target: the link goes to the escalation channel and the post gets the escalated tag."""
    await desk.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<#{ESCALATION_ID}>", by="test")
    post_id = await new_post(desk, "How do returns work?", [])
    answer = (await desk.wait_posts(post_id))[-1]
    await desk.fake.wait_for(lambda: desk.fake.applied_tag_names(post_id) == ["Answered"], what="answered tag")
    await desk.fake.component_click(custom_id="uppzy:fb:bad", message_id=int(answer["id"]), channel_id=post_id,
                                    user_id=USER_ID, guild_id=GUILD_ID)
    await desk.wait_posts(ESCALATION_ID)
    await desk.fake.wait_for(lambda: desk.fake.applied_tag_names(post_id) == ["Answered", "Escalated"],
                             what="escalated tag")


async def test_a_full_post_keeps_its_five_tags(desk: DiscordHarness) -> None:
    """Five tags already (Discord's limit): nothing is added, and the answer is posted as usual."""
    full = ["Billing", "Bug", "Idea", "Docs", "Urgent"]
    post_id = await new_post(desk, "I forgot my password", full)
    await desk.wait_posts(post_id)
    await desk.wait_idle()
    assert desk.fake.applied_tag_names(post_id) == full
    assert desk.fake.calls("PATCH", PATCH_TAGS) == []


async def test_escalated_replaces_answered_on_a_full_post(desk: DiscordHarness) -> None:
    """At the limit, the escalated tag takes the answered tag's place rather than being dropped."""
    await desk.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<#{ESCALATION_ID}>", by="test")
    post_id = await new_post(desk, "How do returns work?", ["Billing", "Bug", "Idea", "Docs", "Answered"])
    answer = (await desk.wait_posts(post_id))[-1]
    await desk.wait_idle()
    await desk.fake.component_click(custom_id="uppzy:fb:bad", message_id=int(answer["id"]), channel_id=post_id,
                                    user_id=USER_ID, guild_id=GUILD_ID)
    await desk.fake.wait_for(lambda: "Escalated" in desk.fake.applied_tag_names(post_id), what="escalated tag")
    assert desk.fake.applied_tag_names(post_id) == ["Billing", "Bug", "Idea", "Docs", "Escalated"]


async def test_without_manage_threads_the_answer_still_arrives(desk: DiscordHarness,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Discord refuses the tag (no Manage Threads): one warning naming the permission, the answer is unaffected."""
    desk.fake.bot_manages_threads = False
    with caplog.at_level(logging.WARNING, logger="bots.discord.forum"):
        post_id = await new_post(desk, "I forgot my password", ["Billing"])
        await desk.wait_posts(post_id)
        await desk.fake.wait_for(lambda: any("Manage Threads" in r.getMessage() for r in caplog.records),
                                 what="the warning")
    assert desk.fake.applied_tag_names(post_id) == ["Billing"]


async def test_untagged_forums_and_text_channels_are_left_alone(desk: DiscordHarness) -> None:
    """A thread under a text channel gets no tag calls; no setting means no tag either."""
    sent = await desk.mention("How do returns work?", channel_id=TEXT_ID)
    await desk.wait_posts(sent["id"])
    await desk.relay.workspaces.set("discord", str(GUILD_ID), "answered_tag", "none", by="test")
    post_id = await new_post(desk, "I forgot my password", [])
    await desk.wait_posts(post_id)
    await desk.wait_idle(2)
    assert desk.fake.calls("PATCH", PATCH_TAGS) == []
    assert desk.fake.applied_tag_names(post_id) == []


async def test_talk_to_a_human_tags_the_post_escalated(desk: DiscordHarness) -> None:
    """"Talk to a human" on a forum answer escalates it like 👎, so the post gets the escalated tag too."""
    await desk.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<#{ESCALATION_ID}>", by="test")
    post_id = await new_post(desk, "How do returns work?", ["Billing"])
    answer = (await desk.wait_posts(post_id))[-1]
    await desk.fake.wait_for(lambda: "Answered" in desk.fake.applied_tag_names(post_id), what="answered tag")
    await desk.fake.component_click(custom_id="uppzy:human", message_id=int(answer["id"]), channel_id=post_id,
                                    user_id=USER_ID, guild_id=GUILD_ID)
    await desk.fake.wait_for(lambda: desk.fake.applied_tag_names(post_id) == ["Billing", "Answered", "Escalated"],
                             what="escalated tag")
