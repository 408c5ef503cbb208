"""Discord feedback end to end: raw reactions and persistent 👍/👎 buttons reach Uppzy; 👎 can escalate."""

from __future__ import annotations

from typing import Any

from core import messages
from tests.discord_support import (
    ESCALATION_ID,
    GUILD_ID,
    OTHER_ID,
    ROLE_ID,
    TEXT_ID,
    USER_ID,
    DiscordHarness,
)


async def answered(h: DiscordHarness, question: str = "How do returns work?") -> tuple[int, dict[str, Any]]:
    """Ask in the text channel and return (thread id, the answer message)."""
    sent = await h.mention(question)
    posts = await h.wait_posts(sent["id"])
    await h.wait_idle()
    return int(sent["id"]), posts[-1]


def ratings(h: DiscordHarness) -> list[str]:
    """Ratings Uppzy received."""
    return [c.body["feedback"] for c in h.sim.calls("chat_feedback")]


async def click(h: DiscordHarness, thread_id: int, answer: dict[str, Any], which: str, user_id: int) -> str:
    """Click a feedback button and return the ephemeral reply the clicker saw."""
    before = len(h.fake.webhook_edits)
    await h.fake.component_click(custom_id=f"uppzy:fb:{which}", message_id=int(answer["id"]), channel_id=thread_id,
                                 user_id=user_id, guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: len(h.fake.webhook_edits) > before, what="button reply")
    assert h.fake.interaction_responses[-1]["ephemeral"]
    return str(h.fake.webhook_edits[-1]["data"]["content"])


async def test_thumbs_up_reaction_by_the_asker_is_sent_to_uppzy(h: DiscordHarness) -> None:
    """A raw 👍 on the answer (not in discord.py's cache) becomes 'good' feedback; others' and the bot's don't count."""
    thread_id, answer = await answered(h)
    await h.fake.reaction_add(user_id=h.fake.bot_id, channel_id=thread_id, message_id=int(answer["id"]),
                              emoji_name="👍", guild_id=GUILD_ID)
    await h.fake.reaction_add(user_id=OTHER_ID, channel_id=thread_id, message_id=int(answer["id"]),
                              emoji_name="👍", guild_id=GUILD_ID)
    await h.fake.reaction_add(user_id=USER_ID, channel_id=thread_id, message_id=int(answer["id"]),
                              emoji_name="👍🏽", guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: ratings(h), what="feedback call")
    # The probe: the asker's 👎 button on the same gateway; its private reply proves the reactions were handled.
    assert await click(h, thread_id, answer, "bad", USER_ID) == messages.ALREADY_RATED

    assert ratings(h) == ["good"]
    assert h.sim.calls("chat_feedback")[0].body["session_id"] == f"discord-user-{USER_ID}-{TEXT_ID}"


async def test_buttons_record_feedback_and_thank_privately(h: DiscordHarness) -> None:
    """👍 answers with an ephemeral thank-you; a second click says it was already rated; a stranger may not rate."""
    thread_id, answer = await answered(h)

    assert await click(h, thread_id, answer, "bad", OTHER_ID) == messages.NOT_YOUR_ANSWER
    assert await click(h, thread_id, answer, "good", USER_ID) == messages.THANKS_GOOD
    assert await click(h, thread_id, answer, "bad", USER_ID) == messages.ALREADY_RATED
    assert ratings(h) == ["good"]


async def test_buttons_keep_working_after_a_restart(h: DiscordHarness) -> None:
    """A click on an answer posted by the previous process is still handled (persistent custom ids)."""
    thread_id, answer = await answered(h)
    assert h.bot is not None
    await h.bot.stop()
    await h.start_bot()

    assert await click(h, thread_id, answer, "bad", USER_ID) == messages.THANKS_BAD
    assert ratings(h) == ["bad"]


async def test_thumbs_down_pings_the_escalation_role_in_the_thread(h: DiscordHarness) -> None:
    """With escalation_target set to a role, 👎 posts in the thread pinging exactly that role, with a link."""
    assert h.relay is not None
    await h.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<@&{ROLE_ID}>", by="test")
    thread_id, answer = await answered(h)
    await click(h, thread_id, answer, "bad", USER_ID)
    posts = await h.wait_posts(thread_id, 2)

    assert posts[-1]["content"].startswith(f"<@&{ROLE_ID}> ")
    assert f"https://discord.com/channels/{GUILD_ID}/{thread_id}/{answer['id']}" in posts[-1]["content"]
    allowed = posts[-1]["allowed_mentions"]
    assert allowed["parse"] == [] and allowed["roles"] == [ROLE_ID] and not allowed.get("users")


async def test_thumbs_down_posts_a_jump_link_in_the_escalation_channel(h: DiscordHarness) -> None:
    """With escalation_target set to a channel, 👎 posts a link there and pings nobody."""
    assert h.relay is not None
    await h.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<#{ESCALATION_ID}>", by="test")
    thread_id, answer = await answered(h)
    await h.fake.reaction_add(user_id=USER_ID, channel_id=thread_id, message_id=int(answer["id"]),
                              emoji_name="👎", guild_id=GUILD_ID)
    post = (await h.wait_posts(ESCALATION_ID))[0]

    assert f"https://discord.com/channels/{GUILD_ID}/{thread_id}/{answer['id']}" in post["content"]
    assert post["allowed_mentions"]["parse"] == []
    assert ratings(h) == ["bad"]
