"""Typing on Discord follows the ⏳ rule: only for an answer not there within a moment, stopped by the answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import DiscordHarness
from tests.fakes.discord_fake import FakeDiscord

MOMENT = 0.2  # Tuning.working_after in the slow test: well below the scripted latency, so the order is certain
TYPING = r"/channels/\d+/typing"


@pytest.fixture
async def slow(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """The bot with typing due MOMENT after a question is recorded, beating every 0.05 s."""
    harness = DiscordHarness(fake, sim, uppzy, tmp_path)
    harness.working_after = MOMENT
    try:
        await harness.start(typing_interval=0.05)
        yield harness
    finally:
        await harness.aclose()


async def test_fast_answer_is_posted_without_typing(h: DiscordHarness) -> None:
    """An answer there before the moment (production's; the simulator answers at once): no typing call at all."""
    sent = await h.mention("How do returns work?")
    await h.wait_posts(sent["id"])
    await h.wait_idle()  # the question is finished, so its typing can no longer start
    assert h.fake.calls("POST", TYPING) == []


async def test_slow_answer_types_after_the_moment_until_the_answer(slow: DiscordHarness) -> None:
    """Not answered within the moment: typing starts (not sooner), is kept alive, and stops with the answer."""
    slow.sim.script("slow", answer="Done.", latency=1.0)
    started = time.monotonic()
    sent = await slow.mention("a slow question")
    thread_id = int(sent["id"])
    await slow.fake.wait_for(lambda: slow.fake.typing_count(thread_id) >= 2, what="typing kept alive")
    first = slow.fake.calls("POST", TYPING)[0]
    assert first.path == f"/channels/{thread_id}/typing" and first.at - started >= MOMENT
    assert slow.posts(thread_id) == []
    await slow.wait_posts(thread_id)
    count = slow.fake.typing_count(thread_id)
    # The probe: a slow DM types meanwhile; after 3 of its beats, a loop left running here would have beaten too.
    dm_id = slow.fake.new_id()
    await slow.say("another slow one", channel_id=dm_id, guild=False)
    await slow.fake.wait_for(lambda: slow.fake.typing_count(dm_id) >= 3, what="3 typing beats for the probe")
    assert slow.fake.typing_count(thread_id) == count
