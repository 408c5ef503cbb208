"""Answers a Discord thread refuses still reach the asker, once: an archived thread is reopened where the bot may,
a locked, deleted or forbidden one moves the answer to its channel (as a reply to the question), else to a DM."""

from __future__ import annotations

from typing import Any

import pytest

from core.models import TurnState
from tests.discord_support import FORUM_ID, GUILD_ID, TEXT_ID, USER_ID, DiscordHarness


async def _ask(h: DiscordHarness, question: str, answer: str | None = None, **script: Any) -> int:
    """Mention the bot with Uppzy's answer held back; returns the question's id (= its thread's id)."""
    h.sim.script(question, answer, latency=60, **script)
    sent = await h.mention(question)
    thread_id = int(sent["id"])
    await h.fake.wait_for(lambda: h.fake.channel(thread_id) and h.chats(), what="the thread and the question")
    return thread_id


async def _finish(h: DiscordHarness, turn_id: int = 1) -> TurnState:
    """Let Uppzy answer now; returns the question's state once it is answered or failed."""
    h.sim.complete_now()
    assert h.relay is not None and h.relay.store is not None
    store = h.relay.store

    async def done() -> TurnState | None:
        turn = await store.get_turn(turn_id)
        return turn.state if turn is not None and not turn.state.active else None

    state = await h.fake.wait_for(done, what="the question answered or failed")
    await h.relay.wait_idle(5)
    return state


def _dm_posts(h: DiscordHarness) -> list[dict[str, Any]]:
    """What the bot posted in DM channels with the asker."""
    channels = [c for c in h.fake._channels.values()
                if c["type"] == 1 and any(r["id"] == str(USER_ID) for r in c["recipients"])]
    return [p for c in channels for p in h.posts(c["id"])]


async def test_archived_thread_is_reopened_and_answered_in_place(h: DiscordHarness) -> None:
    """The thread auto-archived while Uppzy worked (posting answers 50083): the bot unarchives it, which it may
    since the thread is not locked, and answers there once."""
    thread_id = await _ask(h, "how do I reset my password", "Use the *Forgot password* link.")
    h.fake.archive_thread(thread_id)
    assert await _finish(h) is TurnState.ANSWERED
    [answer] = h.posts(thread_id)
    assert "Forgot password" in answer["content"]
    assert [c.json for c in h.fake.calls("PATCH", rf"/channels/{thread_id}")] == [{"archived": False}]
    assert h.posts(TEXT_ID) == []


@pytest.mark.parametrize("closed", ["locked", "deleted", "50001", "50013"])
async def test_closed_thread_moves_the_answer_to_the_channel_as_a_reply(h: DiscordHarness, closed: str) -> None:
    """The thread is archived and locked, deleted, or denies the bot (Missing Access / Missing Permissions): the
    answer goes to the channel as a reply to the question, after a line that pings only the asker; once."""
    thread_id = await _ask(h, "what are the opening hours", "We open at **9:00**.")
    if closed == "locked":
        h.fake.archive_thread(thread_id, locked=True)
    elif closed == "deleted":
        h.fake.delete_channel(thread_id)
    else:
        h.fake.deny_send(thread_id, int(closed))
    assert await _finish(h) is TurnState.ANSWERED
    await h.drain()
    lead, answer = h.posts(TEXT_ID)
    assert lead["content"].startswith(f"<@{USER_ID}> ") and f"/{TEXT_ID}/{thread_id}" in lead["content"]
    assert lead["message_reference"]["message_id"] == str(thread_id)  # a reply to the question
    assert lead["allowed_mentions"]["users"] == [USER_ID] and lead["allowed_mentions"]["parse"] == []
    assert "9:00" in answer["content"] and answer["components"]  # the answer, with its feedback buttons
    assert not answer["allowed_mentions"].get("users")
    tried = [c for c in h.fake.calls("POST", rf"/channels/{thread_id}/messages")]
    assert len(tried) == 1  # the thread was tried once, not again on retries


async def test_channel_closed_too_sends_the_answer_by_dm(h: DiscordHarness) -> None:
    """Thread locked and the channel denies the bot: the asker gets the answer in their DMs with a jump link."""
    thread_id = await _ask(h, "where is the invoice", "Under *Billing*.")
    h.fake.archive_thread(thread_id, locked=True)
    h.fake.deny_send(TEXT_ID, 50013)
    assert await _finish(h) is TurnState.ANSWERED
    lead, answer = _dm_posts(h)
    assert f"/{TEXT_ID}/{thread_id}" in lead["content"] and "Billing" in answer["content"]
    assert h.posts(TEXT_ID) == [] and h.posts(thread_id) == []


async def test_locked_forum_post_sends_the_answer_by_dm(h: DiscordHarness) -> None:
    """A forum post locked by a moderator: a forum takes no messages itself, so the answer goes to the DMs."""
    post_id = h.fake.new_id()
    h.fake.add_channel(GUILD_ID, post_id, type=11, name="Password help", parent_id=FORUM_ID, owner_id=USER_ID)
    await h.fake.dispatch("THREAD_CREATE", {**h.fake.channel(post_id), "newly_created": True})
    h.sim.script("I forgot my password", "Use the reset link.", latency=60)
    await h.say("I forgot my password", channel_id=post_id, message_id=post_id)
    await h.fake.wait_for(lambda: h.chats(), what="the question at Uppzy")
    h.fake.archive_thread(post_id, locked=True)
    assert await _finish(h) is TurnState.ANSWERED
    lead, answer = _dm_posts(h)
    assert f"/{post_id}/{post_id}" in lead["content"] and "reset link" in answer["content"]
    assert h.posts(post_id) == [] and h.posts(FORUM_ID) == []


async def test_failure_notice_follows_the_same_fallback(h: DiscordHarness) -> None:
    """Uppzy fails the question after a moderator locked the thread: the friendly error reaches the channel."""
    thread_id = await _ask(h, "break please", fail=True)
    h.fake.archive_thread(thread_id, locked=True)
    assert await _finish(h) is TurnState.FAILED
    [notice] = h.posts(TEXT_ID)
    assert notice["content"].startswith(f"<@{USER_ID}> ") and "\n" in notice["content"]
    assert h.posts(thread_id) == []


async def test_misleading_masked_link_shows_the_real_target(h: DiscordHarness) -> None:
    """`[https://good.example](https://evil.example)` reaches Discord as the text followed by the real target."""
    thread_id = await _ask(h, "which site", "Log in at [https://good.example](https://evil.example/login).")
    assert await _finish(h) is TurnState.ANSWERED
    [answer] = h.posts(thread_id)
    assert "https://good.example (<https://evil.example/login>)" in answer["content"]
    assert "](https://evil.example/login)" not in answer["content"]
