"""A 1 MB answer reaches Slack as at most two messages, ending with the 'shortened' note."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.test_delivery_hardening import huge_answer

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


async def test_a_1mb_answer_is_at_most_two_slack_messages(rig: SlackRig) -> None:
    """The answer is capped (UPPZY_ANSWER_MAX_CHARS, 12,000 by default) before it is split for Slack."""
    rig.sim.script("everything", huge_answer())
    event = await rig.mention("tell me everything")
    await rig.fake.wait_until(lambda: any(a["blocks"][-1]["type"] == "actions" for a in rig.answers(event["ts"])))
    parts = rig.answers(event["ts"])
    assert 1 <= len(parts) <= 2
    texts = [b["text"] for p in parts for b in p["blocks"] if b["type"] == "markdown"]
    assert "too long to post in full" in texts[-1]
    assert sum(map(len, texts)) <= 13_000
