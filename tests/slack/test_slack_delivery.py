"""How answers reach Slack: formatting, defused pings, splitting, rate limits, recovery and closing notices."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from core.models import Answer, ReplyTarget

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig


PINGS = re.compile(r"<[!@#]|(?<!\u200b)@(?:here|channel|everyone)\b", re.IGNORECASE)


def _texts(message: dict) -> list[str]:
    """Every string Slack would render or notify from one posted message."""
    texts = [message["text"]]
    for block in message.get("blocks") or []:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "markdown":
            texts.append(block["text"])
        elif block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
    return texts


async def test_broadcasts_and_mentions_written_by_the_model_never_ping(rig: SlackRig) -> None:
    """<!channel>, <!here>, <!everyone>, <!subteam^…>, <@U…>, <#C…> and raw @here in an answer reach Slack defused."""
    rig.sim.script("ping", "Hey <!channel> <!here> <!everyone>, ask <!subteam^S123|@support> or <@U2> in <#C9>. "
                   "Also @here and @Channel!", level="low")
    assert "is now" in await rig.command("set low_confidence_note Careful <!here> and <!channel|channel>", user="U9")
    event = await rig.mention("ping everyone")
    [answer] = await rig.wait_answer(event["ts"])
    texts = _texts(answer)
    assert len(texts) == 3  # fallback, markdown block, low-confidence context
    for shown in texts:
        assert not PINGS.search(shown), shown
    assert "<\u200b!channel>" in texts[1] and "@\u200bhere" in texts[1] and "&lt;" in texts[0]
    assert texts[2].startswith(":warning: Careful @\u200bhere")


async def test_long_answer_is_split_at_paragraphs_and_code_fences(make_rig: RigFactory) -> None:
    """With the answer cap raised, a 30,000-character answer arrives as several messages, each one markdown block
    under Slack's 12,000 characters, fences intact."""
    rig = await make_rig(admins=("U9",), uppzy_answer_max_chars=50_000)
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor " * 110 for i in range(12)]
    code = "```python\n" + "\n".join(f"print({i})  # line" for i in range(300)) + "\n```"
    long_answer = "\n\n".join([*paragraphs[:6], code, *paragraphs[6:]])
    assert len(long_answer) > 28_000
    rig.sim.script("everything", long_answer)
    event = await rig.mention("tell me everything")
    await rig.fake.wait_until(lambda: any(a["blocks"][-1]["type"] == "actions" for a in rig.answers(event["ts"])))
    parts = rig.answers(event["ts"])
    assert len(parts) >= 3
    for index, part in enumerate(parts):
        [markdown] = [b["text"] for b in part["blocks"] if b["type"] == "markdown"]
        assert 0 < len(markdown) <= 12_000 and markdown.count("```") % 2 == 0
        assert len(part["text"]) <= 3000
        has_buttons = part["blocks"][-1]["type"] == "actions"
        assert has_buttons == (index == len(parts) - 1)
        assert part["metadata"]["event_payload"]["part"] == index
    joined = "".join(b["text"] for p in parts for b in p["blocks"] if b["type"] == "markdown")
    assert all(f"Paragraph {i}:" in joined for i in range(12)) and "print(299)" in joined


async def test_rate_limited_post_is_delivered_later_exactly_once(rig: SlackRig) -> None:
    """A 429 with Retry-After on chat.postMessage is waited out and the answer is posted once."""
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    event = await rig.mention("rate limit me")
    started = time.monotonic()
    await rig.wait_answer(event["ts"], timeout=8)
    assert time.monotonic() - started >= 0.9
    first, second = rig.fake.calls_to("chat.postMessage")
    assert (first.status, first.scripted) == (429, True) and second.ok
    await rig.relay.wait_idle()
    assert len(rig.answers(event["ts"])) == 1


async def test_idle_session_close_is_announced_in_the_thread(rig: SlackRig) -> None:
    """When the reaper closes an idle conversation, its thread gets the closing notice."""
    event = await rig.mention("a question before lunch")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    assert await rig.relay.reaper.reap_once(now=time.time() + 3600) == 1
    notice = [m for m in rig.posts_in(event["ts"]) if not m.get("metadata")]
    assert len(notice) == 1 and "closed after 30 minutes of inactivity" in notice[0]["text"]
    assert rig.sim.calls("session_close")


async def test_recovering_post_reuses_parts_already_in_the_thread(rig: SlackRig) -> None:
    """After a crash mid-post, post_answer(recovering=True) finds posted parts by metadata and posts only the rest."""
    root = rig.fake.next_ts()
    rig.fake.messages.setdefault("C1", {})[root] = {"type": "message", "user": "U1", "text": "q", "ts": root}
    target = ReplyTarget("slack", "T1", "C1", "C1", root, "U1")
    answer = Answer("\n\n".join(["word " * 2000] * 5), "req_1", None, None, None, "uppzy-turn-77")
    first = await rig.bot.adapter.post_answer(target, answer)
    assert len(first) >= 2
    del rig.fake.messages["C1"][first[-1]]  # the last part never made it
    again = await rig.bot.adapter.post_answer(target, answer, recovering=True)
    assert again[:-1] == first[:-1] and again[-1] != first[-1]
    assert await rig.bot.adapter.post_answer(target, answer, recovering=True) == again
    assert len(rig.fake.calls_to("chat.postMessage")) == len(first) + 1


