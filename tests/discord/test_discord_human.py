"""Discord "Talk to a human": a third button under every answer escalates like 👎 and tells the asker privately."""

from __future__ import annotations

from typing import Any

from bots.discord import strings as msgs
from tests.discord_support import ESCALATION_ID, GUILD_ID, OTHER_ID, ROLE_ID, USER_ID, DiscordHarness

HUMAN = "uppzy:human"


def requests(h: DiscordHarness, outcome: str) -> float:
    """uppzy_bot_human_requests_total{platform="discord",outcome=…}."""
    assert h.relay is not None
    registry = h.relay.parts.feedback._metrics.registry
    return registry.get_sample_value("uppzy_bot_human_requests_total",
                                     {"platform": "discord", "outcome": outcome}) or 0.0


async def answered(h: DiscordHarness) -> tuple[int, dict[str, Any]]:
    """Ask in the text channel and return (thread id, the answer message)."""
    sent = await h.mention("How do returns work?")
    posts = await h.wait_posts(sent["id"])
    await h.wait_idle()
    return int(sent["id"]), posts[-1]


async def ask_human(h: DiscordHarness, thread_id: int, answer: dict[str, Any], user_id: int = USER_ID) -> str:
    """Click "Talk to a human" and return the private reply the clicker saw."""
    before = len(h.fake.webhook_edits)
    await h.fake.component_click(custom_id=HUMAN, message_id=int(answer["id"]), channel_id=thread_id,
                                 user_id=user_id, guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: len(h.fake.webhook_edits) > before, what="the private reply")
    assert h.fake.interaction_responses[-1]["ephemeral"]
    return str(h.fake.webhook_edits[-1]["data"]["content"])


async def test_every_answer_offers_a_human_beside_the_ratings(h: DiscordHarness) -> None:
    """The answer's action row: 👍, 👎, then "Talk to a human"."""
    _thread, answer = await answered(h)
    buttons = [c for row in answer["components"] for c in row["components"]]
    assert [b["custom_id"] for b in buttons] == ["uppzy:fb:good", "uppzy:fb:bad", HUMAN]
    assert buttons[2]["label"] == "Talk to a human"


async def test_talk_to_a_human_pings_the_role_and_tells_the_asker_who(h: DiscordHarness) -> None:
    """The role is pinged in the thread with a link; the asker is told privately; a second click notifies nobody."""
    assert h.relay is not None
    await h.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<@&{ROLE_ID}>", by="test")
    thread_id, answer = await answered(h)

    reply = await ask_human(h, thread_id, answer)
    posts = await h.wait_posts(thread_id, 2)
    assert reply == msgs.human_line("sent", f"<@&{ROLE_ID}>")
    assert posts[-1]["content"].startswith(f"<@&{ROLE_ID}> someone here asked to talk to a human")
    assert f"https://discord.com/channels/{GUILD_ID}/{thread_id}/{answer['id']}" in posts[-1]["content"]
    assert posts[-1]["allowed_mentions"]["roles"] == [ROLE_ID]
    assert requests(h, "sent") == 1

    assert await ask_human(h, thread_id, answer) == msgs.human_line("already_sent", f"<@&{ROLE_ID}>")
    assert len(h.posts(thread_id)) == 2 and requests(h, "already_sent") == 1
    assert h.sim.calls("chat_feedback") == []  # asking for a human is not a rating


async def test_escalation_channel_gets_the_link(h: DiscordHarness) -> None:
    """With a channel as escalation_target, the request lands there, pinging nobody."""
    assert h.relay is not None
    await h.relay.workspaces.set("discord", str(GUILD_ID), "escalation_target", f"<#{ESCALATION_ID}>", by="test")
    thread_id, answer = await answered(h)
    assert await ask_human(h, thread_id, answer) == msgs.human_line("sent", f"<#{ESCALATION_ID}>")
    posted = (await h.wait_posts(ESCALATION_ID))[-1]
    assert posted["content"].startswith("Someone asked to talk to a human")
    assert posted["allowed_mentions"]["parse"] == []


async def test_nobody_configured_is_told_so(h: DiscordHarness) -> None:
    """No escalation_target: whoever asks (the asker or another member: anyone who sees an answer may want a
    person) learns nobody is set up, and nothing is posted."""
    thread_id, answer = await answered(h)
    assert await ask_human(h, thread_id, answer) == msgs.HUMAN_NOBODY
    assert await ask_human(h, thread_id, answer, user_id=OTHER_ID) == msgs.HUMAN_NOBODY
    assert len(h.posts(thread_id)) == 1
    assert requests(h, "not_configured") == 2
