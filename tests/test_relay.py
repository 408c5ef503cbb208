"""The relay end to end through the console adapter and the Uppzy simulator over loopback HTTP."""

from __future__ import annotations

import time

import pytest

from core import messages
from core.models import FeedbackEvent, FeedbackOutcome, Rejected
from core.relay import EndResult
from simulator import Simulator
from tests.relay_support import Build, close
from tests.replica_support import max_in_window


async def test_question_gets_one_answer_with_confidence(harness: Build, sim: Simulator) -> None:
    """A question is submitted with async chat and its answer posted once, with Uppzy's confidence."""
    h = await harness()
    result, qid = await h.ask("how do returns work?")
    assert result.session_id == "console-user-you-terminal"
    await h.until(lambda: h.console.answers())
    await h.relay.wait_idle()
    assert [q for q, _ in h.console.answers()] == [qid]
    assert "30 days" in h.console.answers()[0][1]
    assert len(sim.calls("chat_async")) == 1
    assert sim.calls("chat_async")[0].body["session_id"] == "console-user-you-terminal"
    assert not h.console.working


async def test_answers_in_question_order_and_one_in_flight_per_session(harness: Build, sim: Simulator) -> None:
    """A second question waits for the first; answers arrive in asking order even when a later one is faster."""
    sim.script("first", "answer one", latency=0.4)
    sim.script("second", "answer two", latency=0.0)
    sim.script("third", "answer three", latency=0.1)
    h = await harness()
    ids = [(await h.ask(q))[1] for q in ("first question", "second question", "third question")]
    await h.until(lambda: len(h.console.answers()) == 3)
    assert [q for q, _ in h.console.answers()] == ids
    assert [t for _, t in h.console.answers()] == ["answer one", "answer two", "answer three"]
    submits = sim.calls("chat_async")
    first_request = next(iter(sim.chats.values()))
    # The second question is submitted only once the first one's answer existed (it waited its turn).
    assert submits[1].at >= first_request.ready_at


async def test_other_users_run_in_parallel_sessions(harness: Build, sim: Simulator) -> None:
    """Different users (or channels) get their own sessions and do not wait for each other."""
    sim.script("slow", "slow answer", latency=0.5)
    h = await harness()
    await h.ask("slow one", user="alice")
    await h.ask("quick one", user="bob")
    await h.until(lambda: len(h.console.answers()) == 2)
    assert h.console.answers()[0][1] != "slow answer"
    sessions = {r.body["session_id"] for r in sim.calls("chat_async")}
    assert sessions == {"console-user-alice-terminal", "console-user-bob-terminal"}


async def test_redelivered_event_never_asks_twice_even_after_restart(harness: Build, sim: Simulator) -> None:
    """The same event key is answered once, including when it is redelivered to a restarted process."""
    h = await harness()
    msg = h.console.message("how do returns work?")
    assert not isinstance(await h.relay.handle_message(msg), Rejected)
    again = await h.relay.handle_message(msg)
    assert isinstance(again, Rejected) and again.duplicate
    await h.until(lambda: h.console.answers())
    await close(h)  # the process ends: one process per database file
    h2 = await harness()  # same database file
    later = await h2.relay.handle_message(msg)
    assert isinstance(later, Rejected) and later.duplicate
    await h2.relay.wait_idle()  # the probe: nothing is in flight, so nothing more can be posted
    assert len(sim.calls("chat_async")) == 1
    assert h2.console.answers() == []


async def test_empty_and_oversized_questions_get_a_clear_notice(harness: Build, sim: Simulator) -> None:
    """Blank and over-long messages are answered with one friendly notice and never reach Uppzy."""
    h = await harness()
    empty, _ = await h.ask("   \n\t ")
    huge, _ = await h.ask("x" * 40_000)
    assert isinstance(empty, Rejected) and isinstance(huge, Rejected)
    await h.until(lambda: len(h.console.notices()) == 2)  # posted after the event is acked
    assert sorted(k for k, _, _ in h.console.notices()) == ["empty", "too_long"]
    assert "4,000" in h.console.notices("too_long")[0][2]
    assert sim.calls("chat_async") == []


async def test_failed_request_ends_with_the_fallback_text(harness: Build, sim: Simulator) -> None:
    """An async request that ends 'failed' gets the workspace's fallback text, never API details."""
    sim.script("broken", fail=True)
    h = await harness()
    await h.relay.workspaces.set("console", "local", "fallback_text", "Ask #help-desk instead.", by="admin")
    _, qid = await h.ask("broken question")
    await h.until(lambda: h.console.notices())
    assert h.console.notices() == [("failed", qid, "Ask #help-desk instead.")]
    assert h.console.answers() == []


async def test_request_past_the_answer_budget_times_out_once(harness: Build, sim: Simulator) -> None:
    """A request still pending when the overall budget runs out ends with one timeout notice."""
    sim.script("slow", "too late", latency=30)
    h = await harness(uppzy_answer_timeout=0.3)
    _, qid = await h.ask("slow question")
    await h.until(lambda: h.console.notices())
    await h.relay.wait_idle()
    assert h.console.notices() == [("timeout", qid, messages.TIMED_OUT)]


async def test_submit_retried_on_503_then_answered(harness: Build, sim: Simulator) -> None:
    """A transient 503 on submit is retried (Uppzy did not take it) and the question is answered once."""
    sim.inject("chat_async", 503, times=2)
    h = await harness()
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    assert [r.status for r in sim.calls("chat_async")] == [503, 503, 202]


async def test_uppzy_down_for_good_gives_one_friendly_error(harness: Build, sim: Simulator) -> None:
    """When submit keeps failing past the budget the user gets one clear message, no status codes."""
    sim.inject("chat_async", 503, times=1000)
    h = await harness(uppzy_answer_timeout=0.5)
    _, qid = await h.ask("hello?")
    await h.until(lambda: h.console.notices(), timeout=10)
    await h.relay.wait_idle()
    (kind, question, text), = h.console.notices()
    assert question == qid and kind == "failed" and "503" not in text


async def test_submit_timeout_is_never_resubmitted(harness: Build, sim: Simulator) -> None:
    """A submit that stalls past the timeout may have been taken, so it is not sent again; the user is told."""
    sim.inject("chat_async", stall=3.0)
    h = await harness()
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.notices(), timeout=8)
    await h.until(lambda: sim.calls("chat_async"), timeout=3)  # the simulator records a stalled call at its end
    await h.relay.wait_idle()
    assert len(sim.calls("chat_async")) == 1
    assert [k for k, _, _ in h.console.notices()] == ["failed"]


async def test_bad_key_tells_users_assistant_unavailable(harness: Build, sim: Simulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A refused API key (401) gives users a clear 'unavailable' line and operators an error log."""
    h = await harness(api_key="wrong-key-123456")
    _, qid = await h.ask("hi")
    await h.until(lambda: h.console.notices())
    assert h.console.notices() == [("unavailable", qid, messages.UNAVAILABLE)]
    assert "check UPPZY_API_KEY" in caplog.text and "wrong-key-123456" not in caplog.text


async def test_session_closed_upstream_moves_to_a_fresh_id(harness: Build, sim: Simulator) -> None:
    """If Uppzy already closed the session (409), the question moves to a new session id and is answered."""
    h = await harness()
    await h.uppzy.close_session("console-user-you-terminal")
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    assert [r.body["session_id"] for r in sim.calls("chat_async")] == [
        "console-user-you-terminal", "console-user-you-terminal-2"]


async def test_feedback_rules(harness: Build, sim: Simulator) -> None:
    """The asker's first rating is sent once; repeats, others' ratings and non-answers are not sent."""
    h = await harness()
    _, qid = await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    answer_id = h.console.last_answer_id
    assert answer_id is not None

    def event(user: str = "you", **kw: object) -> FeedbackEvent:
        return FeedbackEvent(platform="console", workspace_id="local", message_id=answer_id, user_id=user,
                             source="reaction", **kw)  # type: ignore[arg-type]

    assert (await h.relay.handle_feedback(event(emoji="rocket"))).outcome is FeedbackOutcome.IGNORED
    assert (await h.relay.handle_feedback(event("mallory", emoji="good"))).outcome is FeedbackOutcome.NOT_ALLOWED
    first = await h.relay.handle_feedback(event(emoji="good"))
    assert first.outcome is FeedbackOutcome.RECORDED and first.rating == "good"
    changed = await h.relay.handle_feedback(event(emoji="bad"))
    assert changed.outcome is FeedbackOutcome.ALREADY_RATED and changed.rating == "good"
    assert (await h.relay.handle_feedback(event(emoji="good", removed=True))).outcome is FeedbackOutcome.IGNORED
    not_answer = FeedbackEvent(platform="console", workspace_id="local", message_id=qid, user_id="you",
                               source="button", rating="good")
    assert (await h.relay.handle_feedback(not_answer)).outcome is FeedbackOutcome.NOT_AN_ANSWER
    sent = sim.calls("chat_feedback")
    assert len(sent) == 1 and sent[0].body["feedback"] == "good"
    assert sent[0].body["session_id"] == "console-user-you-terminal"


async def test_feedback_failure_frees_the_rating_and_anyone_setting(harness: Build, sim: Simulator) -> None:
    """A rating Uppzy could not take can be given again; with raters=anyone others may rate too."""
    h = await harness()
    await h.relay.workspaces.set("console", "local", "feedback_raters", "anyone", by="admin")
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    answer_id = h.console.last_answer_id
    sim.inject("chat_feedback", 503, times=10)
    event = FeedbackEvent(platform="console", workspace_id="local", message_id=answer_id or "",
                          user_id="someone-else", source="button", rating="bad")
    assert (await h.relay.handle_feedback(event)).outcome is FeedbackOutcome.FAILED
    sim.faults.clear()
    assert (await h.relay.handle_feedback(event)).outcome is FeedbackOutcome.RECORDED


async def test_idle_close_posts_notice_and_next_question_starts_fresh(harness: Build, sim: Simulator) -> None:
    """The reaper closes an idle session at Uppzy, posts the notice, and the next question gets a new id."""
    h = await harness()
    _, qid = await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    assert await h.relay.reaper.reap_once(now=time.time() + 60) == 0  # not idle yet
    assert await h.relay.reaper.reap_once(now=time.time() + 1801) == 1
    assert [r.body["session_id"] for r in sim.calls("session_close")] == ["console-user-you-terminal"]
    assert h.console.notices() == [("idle_closed", qid, messages.idle_closed(1800, direct=True))]  # console = a DM
    assert "30 minutes" in h.console.notices()[0][2]
    assert await h.relay.reaper.reap_once(now=time.time() + 4000) == 0  # closed once
    await h.ask("and shipping?")
    await h.until(lambda: len(h.console.answers()) == 2)
    assert sim.calls("chat_async")[-1].body["session_id"] == "console-user-you-terminal-2"


async def test_workspace_idle_override_and_busy_sessions(harness: Build, sim: Simulator) -> None:
    """A workspace's own idle timeout applies, and a session with a question in flight is never closed."""
    sim.script("slow", "slow", latency=5)
    h = await harness()
    await h.relay.workspaces.set("console", "local", "idle_timeout", "5m", by="admin")
    await h.ask("slow question")
    await h.until(lambda: len(sim.calls("chat_async")) == 1)
    assert await h.relay.reaper.reap_once(now=time.time() + 400) == 0  # busy
    sim.complete_now()
    await h.until(lambda: h.console.answers())
    assert await h.relay.reaper.reap_once(now=time.time() + 200) == 0
    assert await h.relay.reaper.reap_once(now=time.time() + 301) == 1
    assert "5 minutes" in h.console.notices("idle_closed")[0][2]


async def test_session_close_is_rate_limited(harness: Build, sim: Simulator) -> None:
    """Many sessions expiring together are closed at the configured pace: never more than SESSION_CLOSE_RATE in any
    one-second window (the token bucket used to allow twice that: a full bucket plus a second of refill)."""
    h = await harness(session_close_rate=100.0)
    for i in range(150):
        await h.ask("how do returns work?", user=f"u{i}")
    await h.until(lambda: len(h.console.answers()) == 150, timeout=20)
    started = time.monotonic()
    assert await h.relay.reaper.reap_once(now=time.time() + 1801) == 150
    assert time.monotonic() - started >= 1.0  # 150 closes at 100/s
    stamps = sorted(r.at for r in sim.calls("session_close"))
    assert max_in_window(stamps) <= 100 + 2  # 2: loopback arrival jitter


async def test_end_conversation(harness: Build, sim: Simulator) -> None:
    """/end closes the session now; with nothing open it says so; the next question starts a new session."""
    sim.script("slow", "slow", latency=5)
    h = await harness()
    target = h.console.message("x").target
    assert await h.relay.end_conversation(target) is EndResult.NO_SESSION
    await h.ask("slow question")
    await h.until(lambda: len(sim.calls("chat_async")) == 1)
    assert await h.relay.end_conversation(target) is EndResult.BUSY
    sim.complete_now()
    await h.until(lambda: h.console.answers())
    assert await h.relay.end_conversation(target) is EndResult.ENDED
    assert len(sim.calls("session_close")) == 1
    await h.ask("how do returns work?")
    await h.until(lambda: len(h.console.answers()) == 2)
    assert sim.calls("chat_async")[-1].body["session_id"].endswith("-2")


@pytest.mark.parametrize(("strategy", "expected"), [
    ("user-channel", {"console-user-you-a", "console-user-you-b"}),
    ("user", {"console-user-you"}),
    ("thread", {"console-thread-a-t1", "console-thread-a-t2", "console-thread-b-t3"}),
])
async def test_session_strategies(harness: Build, sim: Simulator, strategy: str, expected: set[str]) -> None:
    """Admins choose one session per user per channel, per user, or per thread."""
    h = await harness()
    await h.relay.workspaces.set("console", "local", "session_strategy", strategy, by="admin")
    for channel, thread in (("a", "t1"), ("a", "t2"), ("b", "t3")):
        await h.ask("how do returns work?", channel=channel, thread=thread)
    await h.until(lambda: len(h.console.answers()) == 3)
    assert {r.body["session_id"] for r in sim.calls("chat_async")} == expected


async def test_email_sent_only_when_workspace_allows(harness: Build, sim: Simulator) -> None:
    """The asker's email reaches Uppzy only after an admin turns send_email on."""
    h = await harness()
    msg = h.console.message("how do returns work?")
    await h.relay.handle_message(type(msg)(target=msg.target, text=msg.text, event_key="e1", email="a@example.com"))
    await h.until(lambda: len(h.console.answers()) == 1)
    await h.relay.workspaces.set("console", "local", "send_email", "on", by="admin")
    await h.relay.handle_message(type(msg)(target=msg.target, text=msg.text, event_key="e2", email="a@example.com"))
    await h.until(lambda: len(h.console.answers()) == 2)
    assert ["email" in r.body for r in sim.calls("chat_async")] == [False, True]


async def test_low_confidence_note(harness: Build, sim: Simulator) -> None:
    """A low-confidence answer carries the admins' note; a confident one does not."""
    h = await harness()
    notes: list[str | None] = []
    original = h.console.post_answer

    async def spy(target, answer, *, recovering=False):  # type: ignore[no-untyped-def]
        notes.append(answer.low_confidence_note)
        return await original(target, answer, recovering=recovering)

    h.console.post_answer = spy  # type: ignore[method-assign]
    await h.ask("zzqx unknown words")
    await h.until(lambda: len(h.console.answers()) == 1)
    await h.ask("how do returns work?")
    await h.until(lambda: len(h.console.answers()) == 2)
    assert notes == [messages.DEFAULT_LOW_CONFIDENCE_NOTE, None]
