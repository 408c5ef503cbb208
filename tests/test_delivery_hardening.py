"""Answers that are odd, huge or refused by the platform still end as exactly one answer (or one notice)."""

from __future__ import annotations

import dataclasses

from core import messages
from core.backoff import Backoff
from core.models import Answer, ReplyTarget, TurnState
from core.text import shorten_answer
from simulator import Simulator
from tests.relay_support import FAST, Build, Harness, QuietConsole, close

# Refused posts give up fast; the sweep looks every 50 ms and retries a kept answer 100 ms later.
SWEEPING = dataclasses.replace(FAST, delivery=Backoff(attempts=2, initial=0.01, maximum=0.01),
                               redelivery=Backoff(attempts=1, initial=0.01, maximum=0.01),
                               redeliver_every=0.1, sweep_every=0.05)


class RefusingConsole(QuietConsole):
    """The console, but its platform refuses every answer post while `down` (a deleted thread, an outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.refused = 0

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Refuse while down, else post as the console does."""
        if self.down:
            self.refused += 1
            raise RuntimeError("channel_not_found")
        return await super().post_answer(target, answer, recovering=recovering)


def attach(h: Harness, console: QuietConsole) -> None:
    """Replace the harness's console with another one (same platform name)."""
    h.relay.register(console)
    h.console = console


# ---- item 4: odd characters ---------------------------------------------------------------------------------


async def test_answer_with_lone_surrogate_and_nul_is_cleaned_and_delivered(harness: Build, sim: Simulator) -> None:
    """Uppzy's answer holds a lone surrogate and a NUL: it is posted once, cleaned, without waiting for a timeout."""
    sim.script("broken", answer="Half an emoji \ud83d here,\x00 and a NUL.")
    h = await harness(uppzy_answer_timeout=5.0)
    await h.ask("broken characters?")
    await h.until(lambda: bool(h.console.answers()), timeout=3.0)
    await h.relay.wait_idle()
    assert [t for _, t in h.console.answers()] == ["Half an emoji \ufffd here, and a NUL."]
    assert h.console.notices() == []
    assert len(sim.calls("chat_status")) == 1  # not re-polled


# ---- item 8: size cap -----------------------------------------------------------------------------------------


def huge_answer() -> str:
    """About 1 MB of paragraphs with code blocks among them."""
    paragraph = "Returns are accepted within thirty days of delivery when the item is unused. " * 12
    code = "```python\n" + "\n".join(f"print({i})  # step" for i in range(80)) + "\n```"
    blocks = [paragraph.strip() if i % 5 else code for i in range(1100)]
    return "\n\n".join(blocks)


def test_shorten_cuts_at_a_paragraph_outside_code_and_says_so() -> None:
    """The cut lands on a boundary, never leaves a code fence open, and the note ends the text."""
    text = huge_answer()
    assert len(text) > 1_000_000
    for limit in (1000, 1500, 5000, 12000, 12345):
        short = shorten_answer(text, limit, messages.ANSWER_SHORTENED)
        assert len(short) <= limit and short.endswith(messages.ANSWER_SHORTENED)
        body = short[: -len(messages.ANSWER_SHORTENED)].rstrip()
        assert body.count("```") % 2 == 0, limit
        assert text.startswith(body[:-4] if body.endswith("\n```") else body)
    one_block = "```\n" + "x = 1\n" * 5000 + "```"
    short = shorten_answer(one_block, 2000, "(cut)")
    assert len(short) <= 2000 and short.count("```") == 2 and short.endswith("```\n\n(cut)")
    assert shorten_answer("short", 2000, "(cut)") == "short"


async def test_a_1mb_answer_is_capped_with_a_shortened_note(harness: Build, sim: Simulator) -> None:
    """Through the relay: the posted answer is at most UPPZY_ANSWER_MAX_CHARS and ends with the note."""
    sim.script("everything", answer=huge_answer())
    h = await harness()
    await h.ask("tell me everything")
    await h.until(lambda: bool(h.console.answers()))
    [(_, text)] = h.console.answers()
    assert h.settings.uppzy_answer_max_chars == 12000
    assert 10_000 < len(text) <= 12000 and text.endswith(messages.ANSWER_SHORTENED)
    assert text.startswith("```python\nprint(0)")


async def test_the_cap_is_a_setting(harness: Build, sim: Simulator) -> None:
    """UPPZY_ANSWER_MAX_CHARS changes where an answer is cut."""
    sim.script("everything", answer=huge_answer())
    h = await harness(uppzy_answer_max_chars=3000)
    await h.ask("tell me everything")
    await h.until(lambda: bool(h.console.answers()))
    [(_, text)] = h.console.answers()
    assert len(text) <= 3000 and text.endswith(messages.ANSWER_SHORTENED)


# ---- item 5 (core): refused answers are kept and swept ----------------------------------------------------------


async def test_refused_answer_is_kept_and_delivered_once_when_the_platform_recovers(harness: Build) -> None:
    """The platform refuses every post for longer than the delivery backoff: no failure, no notice; the sweep
    posts the answer exactly once after the platform is back."""
    h = await harness(tuning=SWEEPING)
    console = RefusingConsole()
    attach(h, console)
    await h.ask("how do returns work?")
    await h.until(lambda: console.refused >= 6)  # the delivery backoff (2) and at least two sweeps (1 each)
    [turn] = await h.store.active_turns()
    assert turn.state in (TurnState.READY, TurnState.DELIVERING) and turn.answer
    assert console.notices() == [] and console.answers() == []
    console.down = False
    await h.until(lambda: bool(console.answers()))
    await h.relay.wait_idle()
    assert len(console.answers()) == 1 and console.notices() == []
    assert (await h.store.get_turn(turn.id)).state is TurnState.ANSWERED  # type: ignore[union-attr]


async def test_a_kept_answer_is_delivered_once_after_a_restart(harness: Build, sim: Simulator) -> None:
    """Refused until the process stops; the next process (same database) posts it once, with no notice."""
    h = await harness(tuning=SWEEPING)
    refusing = RefusingConsole()
    attach(h, refusing)
    await h.ask("how do returns work?")
    await h.until(lambda: refusing.refused >= 3)
    await close(h)
    h2 = await harness(tuning=SWEEPING)
    await h2.until(lambda: bool(h2.console.answers()))
    await h2.relay.wait_idle()
    assert len(h2.console.answers()) == 1 and h2.console.notices() == [] and refusing.notices() == []
    assert len(sim.calls("chat_async")) == 1


async def test_an_answer_refused_for_the_whole_retry_window_ends_with_one_notice(harness: Build) -> None:
    """After `redeliver_for` since the question, the kept answer is given up: one failure notice, never both."""
    h = await harness(tuning=dataclasses.replace(SWEEPING, redeliver_for=0.4))
    console = RefusingConsole()
    attach(h, console)
    await h.ask("how do returns work?")
    await h.until(lambda: bool(console.notices()), timeout=5.0)
    await h.relay.wait_idle()
    assert [k for k, _, _ in console.notices()] == ["failed"] and console.answers() == []
    assert console.refused >= 3
    assert await h.store.undelivered(1e12, 10) == []
