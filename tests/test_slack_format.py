"""Pure Slack translations: Markdown to mrkdwn, defusing pings, answer blocks, and event payloads to core types."""

from __future__ import annotations

import json
import re

import pytest

from bots.slack.admin import compact_duration, setting_value
from bots.slack.format import answer_messages, defuse, to_mrkdwn
from bots.slack.translate import (
    button_feedback,
    escalation_ids,
    plain_text,
    reaction_feedback,
    strip_mention,
    to_inbound,
    workspace_of,
)


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* but 2*3*4 and snake_case", "_italic_ but 2*3*4 and snake_case"),
        ("~~gone~~", "~gone~"),
        ("[docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&amp;c=2|docs>"),
        ("see <https://x.io>", "see <https://x.io>"),
        ("[bad](javascript:alert)", "bad (javascript:alert)"),
        ("## Heading **here**", "*Heading here*"),
        ("- one\n  - two\n* three", "• one\n    ◦ two\n• three"),
        ("- [ ] todo\n- [x] done", "☐ todo\n☑ done"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted", "&gt; quoted"),
        ("```python\nx = a < b && **c**\n```", "```\nx = a &lt; b &amp;&amp; **c**\n```"),
        ("`<!here>` **x**", "`&lt;!here&gt;` *x*"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "```\n| a | b |\n|---|---|\n| 1 | 2 |\n```"),
        ("---", "──────────"),
        ("[https://good.example](https://evil.example)", "https://good.example (<https://evil.example>)"),
        ("[**paypal.com**](https://evil.example/pay)", "*paypal.com* (<https://evil.example/pay>)"),
        ("[https://x.io/](http://www.x.io)", "<http://www.x.io|https://x.io/>"),
        ("[x.io](https://x.io/pricing)", "<https://x.io/pricing|x.io>"),
    ],
)
def test_markdown_becomes_slack_mrkdwn(markdown: str, mrkdwn: str) -> None:
    """Bold, italics, links, headings, lists, quotes, code and tables map to what Slack renders."""
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize("ping", ["<!channel>", "<!here|here>", "<!everyone>", "<!subteam^S1|@team>", "<@U123>",
                                  "<#C1|general>", "@here", "@channel", "@Everyone"])
def test_pings_are_defused_everywhere(ping: str) -> None:
    """No mention or broadcast sequence survives in prose, links, headings or list items."""
    for markdown in (ping, f"# {ping}", f"- {ping}", f"[{ping}](https://x.io)", f"**{ping}**"):
        shown = to_mrkdwn(markdown)
        assert "<!" not in shown and "<@" not in shown and "<#" not in shown
        assert not re.search(r"@(?:here|channel|everyone)", shown, re.IGNORECASE)
    assert defuse("mail me@here.com") == "mail me@here.com"


def test_answer_blocks_carry_note_buttons_and_delivery_metadata() -> None:
    """One short answer is one message: a markdown block, the low-confidence context, Slack's feedback buttons and
    "Talk to a human"; its section fallback carries the hand-made buttons."""
    [message] = answer_messages("Hi **there**", delivery_key="uppzy-turn-1", low_confidence_note="Check <!here>")
    assert [b["type"] for b in message.blocks] == ["markdown", "context", "context_actions", "actions"]
    assert message.blocks[0]["text"] == "Hi **there**"
    assert message.blocks[1]["elements"][0]["text"] == ":warning: Check &lt;!here&gt;"
    assert [b["type"] for b in message.sections] == ["section", "context", "actions", "actions"]
    assert message.metadata == {"event_type": "uppzy_answer",
                                "event_payload": {"delivery_key": "uppzy-turn-1", "part": 0, "parts": 1}}
    assert message.text == "Hi *there*"


def test_a_giant_unbroken_answer_still_fits_slack_limits() -> None:
    """Even 100,000 characters without a single space are cut into markdown blocks Slack accepts."""
    messages = answer_messages("x" * 100_000, delivery_key="k")
    parts = [b["text"] for m in messages for b in m.blocks if b["type"] == "markdown"]
    assert "".join(parts) == "x" * 100_000
    assert all(len(p) <= 12_000 for p in parts) and all(len(m.blocks) <= 50 for m in messages)


@pytest.mark.parametrize("answer", [
    "\n\n".join([f"Part {i}: " + "a < b & c > d " * 200 for i in range(12)]),  # escaping grows the mrkdwn
    "\n\n".join([f"Part {i}: " + "shipping and returns " * 140 for i in range(4)]),  # just under 12,000
])
def test_every_message_of_a_long_answer_stays_under_slacks_block_limit(answer: str) -> None:
    """Markdown blocks stay under the 12,000 characters Slack accepts per message; a section fallback, when there
    is one, under the ~12,000 of its blocks counted the strict way (their JSON), also when escaping grows it."""
    messages = answer_messages(answer, delivery_key="k", low_confidence_note=("Check this. " * 25)[:299])
    assert len(messages) >= 2
    assert all(sum(len(b["text"]) for b in m.blocks if b["type"] == "markdown") <= 12_000 for m in messages)
    assert all(len(json.dumps(m.sections, ensure_ascii=False)) <= 11_000 for m in messages)


def test_plain_text_fallback_keeps_code_fences_balanced() -> None:
    """The plain text posted when Slack refuses the blocks carries the whole part in messages under 4,000
    characters; one that opens a code block closes it, the next re-opens it. The notification text too."""
    code = "```\n" + "\n".join(f"line {i} " + "x" * 30 for i in range(200)) + "\n```"
    [message] = answer_messages("Intro\n\n" + code + "\n\nOutro", delivery_key="k")
    assert len(message.plain) >= 2
    for piece in (*message.plain, message.text):
        assert len(piece) < 4000 and piece.count("```") % 2 == 0, piece[-60:]
    joined = "".join(message.plain)
    assert all(f"line {i} " in joined for i in range(200)) and joined.endswith("Outro")


def test_user_text_is_unescaped_and_the_bot_mention_dropped() -> None:
    """Uppzy gets what the person typed: no bot mention, readable mentions and links, &lt; undone."""
    raw = "<@UBOT|uppzy>, ask <@U2|bob> about <https://x.io|this> &amp; <#C1|general> <!here> a &lt; b"
    assert plain_text(strip_mention(raw, "UBOT")) == "ask @bob about this (https://x.io) & #general @here a < b"
    assert strip_mention("hey <@UBOT> there", "UBOT") == "hey   there"


def test_events_become_reply_targets() -> None:
    """A DM thread is an assistant thread; a channel reply keeps its thread root; ids and team are carried."""
    body = {"team_id": "T1", "enterprise_id": "E1"}
    dm = to_inbound(body, {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "ts": "2.0",
                           "thread_ts": "1.0", "text": "hi"}, "UBOT")
    assert dm.event_key == "D1:2.0" and dm.target.thread_root == "1.0" and dm.target.is_dm
    assert dm.target.extra("assistant") == "1" and dm.target.extra("enterprise_id") == "E1"
    top = to_inbound(body, {"type": "app_mention", "channel": "C1", "user": "U1", "ts": "3.0", "thread_ts": "3.0",
                            "text": "<@UBOT> q"}, "UBOT")
    assert top.target.thread_id is None and top.target.thread_root == "3.0" and top.text == "q"
    assert workspace_of({"enterprise": {"id": "E9"}, "team": None}) == ("E9", (("enterprise_id", "E9"),))


def test_a_shared_channel_event_belongs_to_the_installation_that_received_it() -> None:
    """A Slack Connect channel: the envelope's team_id may be the other organisation's; the installation in
    `authorizations` is the workspace the question belongs to (its token, settings and Uppzy key), as bolt reads it.
    An org-wide install's authorization names no team: the event's own team keys the settings, as before."""
    shared = {"team_id": "TOTHER", "authorizations": [{"team_id": "TOURS", "enterprise_id": None, "is_bot": True}]}
    assert workspace_of(shared) == ("TOURS", (("team_id", "TOURS"),))
    mention = to_inbound(shared, {"type": "app_mention", "channel": "CSHARED", "user": "UOTHER", "ts": "4.0",
                                  "text": "<@UBOT> q"}, "UBOT")
    assert mention.target.workspace_id == "TOURS"
    org_wide = {"team_id": "T5", "enterprise_id": "E1", "authorizations": [{"team_id": None, "enterprise_id": "E1"}]}
    assert workspace_of(org_wide) == ("T5", (("team_id", "T5"), ("enterprise_id", "E1")))


def test_feedback_payloads() -> None:
    """Reactions carry their emoji; buttons carry their rating and the message they sit on."""
    reaction = reaction_feedback({"team_id": "T1"}, {"type": "reaction_added", "user": "U1", "reaction": "-1",
                                                     "item": {"type": "message", "channel": "C1", "ts": "5.0"}})
    assert reaction is not None and (reaction.message_id, reaction.emoji, reaction.source) == ("5.0", "-1", "reaction")
    assert reaction_feedback({}, {"type": "reaction_added", "user": "U1", "item": {"type": "file"}}) is None
    button = button_feedback({"team": {"id": "T1"}, "user": {"id": "U1"}, "container": {"message_ts": "6.0"},
                              "actions": [{"action_id": "uppzy_feedback_good"}]})
    assert button is not None and (button.rating, button.message_id, button.workspace_id) == ("good", "6.0", "T1")
    assert button_feedback({"user": {"id": "U1"}, "actions": [{"action_id": "other"}]}) is None


def test_admin_values_are_read_the_way_admins_type_them() -> None:
    """Escalation mentions become ids, escaped text is undone, and idle timeouts round-trip as 30m / 2h."""
    assert setting_value("escalation_target", "<!subteam^S1|@help> in <#C2|esc>") == "S1 C2"
    assert setting_value("fallback_text", "Ask &lt;here&gt;") == "Ask <here>"
    assert setting_value("fallback_text", "a &lt; b", escaped=False) == "a &lt; b"
    assert escalation_ids("S0123 C0456 U0789") == {"group": "S0123", "channel": "C0456", "user": "U0789"}
    assert [compact_duration(s) for s in (1800, 7200, 86400, 90)] == ["30m", "2h", "1d", "90s"]
