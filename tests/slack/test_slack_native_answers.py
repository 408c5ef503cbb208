"""Answers as Slack renders them: a markdown block, Slack's own 👍/👎 (feedback_buttons), "Talk to a human", and
section blocks when Slack refuses the markdown block. End to end through FakeSlack (which validates the blocks as
Slack documents them) and the simulator."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bots.slack import strings as text
from core import messages

if TYPE_CHECKING:
    from tests.slack_support import SlackRig


async def _answered(rig: SlackRig, question: str = "how do refunds work?", answer: str | None = None,
                    user: str = "U1") -> tuple[dict[str, Any], dict[str, Any]]:
    if answer is not None:
        rig.sim.script(question, answer, score=95, level="high")
    event = await rig.mention(question, user=user)
    [posted] = await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    return event, posted


def _stored(rig: SlackRig, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as Slack holds it now (after updates)."""
    return rig.fake.messages[answer["channel"]][answer["ts"]]


def _human_requests(rig: SlackRig, outcome: str) -> float:
    rendered = rig.relay.parts.feedback._metrics.render().decode()
    found = re.search(rf'uppzy_bot_human_requests_total{{outcome="{outcome}",platform="slack"}} (\S+)', rendered)
    return float(found.group(1)) if found else 0.0


async def test_an_answer_is_a_markdown_block_with_native_feedback_and_talk_to_a_human(rig: SlackRig) -> None:
    """Standard Markdown goes to Slack as written (Slack renders it), with every ping defused, followed by a
    context_actions block holding feedback_buttons and a "Talk to a human" button; the fake accepted the blocks."""
    _, answer = await _answered(rig, "pings", "Use **bold** and `code`. Hey <!channel>, ask <@U2> or @here.")
    markdown, rate, human = answer["blocks"]
    assert markdown["type"] == "markdown"
    assert markdown["text"] == "Use **bold** and `code`. Hey <\u200b!channel>, ask <\u200b@U2> or @\u200bhere."
    assert rate["type"] == "context_actions"
    [buttons] = rate["elements"]
    assert buttons["type"] == "feedback_buttons"
    assert (buttons["positive_button"]["value"], buttons["negative_button"]["value"]) == ("good", "bad")
    assert human["type"] == "actions" and human["elements"][0]["text"]["text"] == text.HUMAN_LABEL
    assert "&lt;\u200b!channel&gt;" in answer["text"]  # the notification text is mrkdwn, escaped
    assert all(c.ok for c in rig.fake.calls_to("chat.postMessage"))


async def test_a_feedback_buttons_click_rates_and_marks_the_answer_rated(rig: SlackRig) -> None:
    """The asker's 👎 on Slack's feedback buttons sends 'bad' to Uppzy, replaces the buttons with "rating
    received" (Talk to a human stays), and thanks the asker privately; a second click is "already rated"."""
    _, answer = await _answered(rig)
    fake = rig.fake
    await fake.wait_for_ack(await fake.send_interactive(fake.feedback_click(answer, "bad")))
    await fake.wait_until(lambda: len(fake.ephemerals) == 1, what="thanks")
    [update] = await fake.wait_for("chat.update")
    assert update.ok
    blocks = _stored(rig, answer)["blocks"]
    assert [b["type"] for b in blocks] == ["markdown", "context", "actions"]
    assert blocks[1]["elements"][0]["text"] == text.RATED_BAD
    assert [c.body["feedback"] for c in rig.sim.calls("chat_feedback")] == ["bad"]
    assert fake.ephemerals[0]["user"] == "U1" and fake.ephemerals[0]["text"] == messages.THANKS_BAD
    await fake.send_interactive(fake.feedback_click(answer, "good"))
    await fake.wait_until(lambda: len(fake.ephemerals) == 2, what="already rated")
    assert "already rated" in fake.ephemerals[1]["text"] and len(fake.calls_to("chat.update")) == 1


async def test_someone_elses_click_is_refused_and_changes_nothing(rig: SlackRig) -> None:
    """Asker-only by default: U2's 👍 is refused privately; Uppzy hears nothing and the buttons stay."""
    _, answer = await _answered(rig)
    fake = rig.fake
    await fake.send_interactive(fake.feedback_click(answer, "good", user="U2"))
    [refusal] = await fake.wait_until(lambda: fake.ephemerals, what="refusal")
    assert refusal["user"] == "U2" and refusal["text"] == messages.NOT_YOUR_ANSWER
    await rig.drain()
    assert rig.sim.calls("chat_feedback") == [] and fake.calls_to("chat.update") == []
    assert _stored(rig, answer)["blocks"][1]["type"] == "context_actions"


async def test_anyone_may_rate_when_the_workspace_says_so(rig: SlackRig) -> None:
    """With `feedback_raters anyone`, a colleague's 👍 counts."""
    await rig.command("set feedback_raters anyone", user="U9")
    _, answer = await _answered(rig)
    await rig.fake.send_interactive(rig.fake.feedback_click(answer, "good", user="U2"))
    await rig.fake.wait_for("chat.update")
    assert [c.body["feedback"] for c in rig.sim.calls("chat_feedback")] == ["good"]
    assert _stored(rig, answer)["blocks"][1]["elements"][0]["text"] == text.RATED_GOOD


async def test_a_refused_markdown_block_falls_back_to_sections_once(rig: SlackRig) -> None:
    """Slack refuses the markdown block (invalid_blocks): the answer is posted once as mrkdwn sections with the
    hand-made buttons, which rate and update it as before; the workspace's next answer goes straight to sections."""
    fake = rig.fake
    fake.refuse_markdown = "invalid_blocks"
    event, answer = await _answered(rig, "fallback", "It ships **tomorrow** <!here>.")
    assert [b["type"] for b in answer["blocks"]] == ["section", "actions", "actions"]
    assert answer["blocks"][0]["text"]["text"] == "It ships *tomorrow* &lt;\u200b!here&gt;."
    assert len(rig.answers(event["ts"])) == 1 and fake.refused_markdown == 1
    await fake.send_interactive(fake.button_click(answer, "uppzy_feedback_good"))
    await fake.wait_for("chat.update")
    assert _stored(rig, answer)["blocks"][1]["elements"][0]["text"] == text.RATED_GOOD
    second, again = await _answered(rig, "again", "Still **fine**.")
    assert again["blocks"][0]["type"] == "section" and fake.refused_markdown == 1
    assert len(rig.answers(second["ts"])) == 1


async def test_talk_to_a_human_notifies_the_escalation_target_and_tells_the_asker(rig: SlackRig) -> None:
    """With escalation_target a group in a channel, "Talk to a human" posts a ping there naming the asker with a
    link to the thread, tells the asker privately who was notified, and counts as a sent human request."""
    await rig.command("set escalation_target <!subteam^S0123|@support> <#C0456|escalations>", user="U9")
    event, answer = await _answered(rig)
    fake = rig.fake
    await fake.send_interactive(fake.button_click(answer, "uppzy_human"))
    [ping] = await fake.wait_until(lambda: fake.posted_messages("C0456"), what="escalation")
    assert ping["text"].startswith("<!subteam^S0123> <@U1> asked to talk to a human")
    assert f"archives/C1/p{answer['ts'].replace('.', '')}" in ping["text"]
    [told] = await fake.wait_until(lambda: fake.ephemerals, what="who was notified")
    assert told["user"] == "U1" and told["thread_ts"] == event["ts"]
    assert told["text"] == text.human_notified("<!subteam^S0123> in <#C0456>")
    assert _human_requests(rig, "sent") == 1.0
    assert rig.sim.calls("chat_feedback") == []  # asking for a human is not a rating


async def test_talk_to_a_human_without_an_escalation_target_says_so(rig: SlackRig) -> None:
    """Nobody configured: nothing is posted anywhere, the clicker is told privately, and it is counted."""
    _, answer = await _answered(rig)
    fake = rig.fake
    await fake.send_interactive(fake.button_click(answer, "uppzy_human", user="U2"))
    [told] = await fake.wait_until(lambda: fake.ephemerals, what="nobody configured")
    assert told["user"] == "U2" and told["text"] == text.HUMAN_NOBODY
    await rig.drain()
    assert len([m for m in fake.posted_messages() if not m.get("metadata")]) == 1  # only the probe's notice
    assert _human_requests(rig, "not_configured") == 1.0
