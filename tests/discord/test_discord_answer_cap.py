"""A 1 MB answer reaches Discord as a handful of messages, ending with the 'shortened' note."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.test_delivery_hardening import huge_answer

if TYPE_CHECKING:
    from tests.discord_support import DiscordHarness


async def test_a_1mb_answer_is_a_handful_of_discord_messages(h: DiscordHarness) -> None:
    """Capped at 12,000 characters by default: about six 2,000-character messages, not five hundred."""
    h.sim.script("everything", answer=huge_answer())
    sent = await h.mention("tell me everything")
    await h.wait_idle()
    posts = h.posts(sent["id"])
    assert 1 <= len(posts) <= 7 and all(len(p["content"]) <= 2000 for p in posts)
    assert "too long to post in full" in posts[-1]["content"]
