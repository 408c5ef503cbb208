"""The Store contract (core/ports.py), pinned once and run against every implementation.

Every backend has a factory in STORES and passes every test here unchanged; PostgreSQL runs on a fresh database
per test (the `pg_url` fixture: skipped with one line where there is no server, required under CI).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.models import Counts, FeedbackClaim, InboundMessage, MessagePlace, ReplyTarget, Turn, TurnState
from core.ports import Store
from core.postgres_store import PostgresStore
from core.session_ids import session_id
from core.sqlite_store import SqliteStore

T0 = 1_000_000.0


async def _sqlite_file(where: str, holder: str) -> Store:
    return await SqliteStore.open(where)


async def _postgres(where: str, holder: str) -> Store:
    return await PostgresStore.open(where, holder=holder)


STORES: dict[str, Callable[[str, str], Awaitable[Store]]] = {
    "sqlite-file": _sqlite_file, "sqlite-memory": _sqlite_file, "postgres": _postgres,
}


@pytest.fixture(params=sorted(STORES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Which implementation, and where: a file, ':memory:' or a fresh PostgreSQL database (the pg_url fixture)."""
    if request.param == "postgres":
        return request.param, request.getfixturevalue("pg_url")
    return request.param, ":memory:" if request.param == "sqlite-memory" else str(tmp_path / "contract.db")


@pytest.fixture
async def store(backend: tuple[str, str]) -> AsyncIterator[Store]:
    """Each Store implementation, freshly migrated."""
    opened = await STORES[backend[0]](backend[1], "contract-1")
    yield opened
    await opened.close()


def message(event: str, *, user: str = "U1", channel: str = "C1", thread: str | None = None,
            text: str = "how do returns work?") -> InboundMessage:
    """A question as an adapter hands it to core."""
    target = ReplyTarget("slack", "T1", channel, channel, event, user, thread_id=thread)
    return InboundMessage(target=target, text=text, event_key=f"{channel}:{event}", place=MessagePlace.CHANNEL)


async def ask(store: Store, event: str, *, key: str = "slack-user-U1-C1", now: float = T0, **kw: str) -> Turn | None:
    """Record one question under `key`."""
    return await store.record_question(message(event, **kw), key=key, site_id="site", idle_timeout=60.0, now=now)


# ---- questions -------------------------------------------------------------------------------------------------


async def test_record_opens_a_session_named_by_core_and_reuses_it(store: Store) -> None:
    """The first question opens generation 1 (id = key), the next one joins it; both are QUEUED, in order."""
    first = await ask(store, "1")
    second = await ask(store, "2")
    assert first is not None and second is not None
    assert first.session_id == second.session_id == session_id("slack-user-U1-C1", 1)
    assert (first.opened_session, second.opened_session) == (True, False)
    assert first.state is second.state is TurnState.QUEUED and second.id > first.id
    assert first.target == message("1").target and first.text == "how do returns work?"
    assert (await store.head_turn(first.session_id)).id == first.id  # type: ignore[union-attr]
    assert [t.id for t in await store.active_turns()] == [first.id, second.id]


async def test_a_redelivered_event_is_stored_once_even_when_concurrent(store: Store) -> None:
    """The same (platform, event_key) ten times at once: exactly one Turn, nine None, one row."""
    results = await asyncio.gather(*(ask(store, "dup") for _ in range(10)))
    assert sum(r is not None for r in results) == 1
    assert len(await store.active_turns()) == 1
    assert await ask(store, "dup") is None


async def test_concurrent_questions_keep_sessions_and_duplicates_exact(store: Store) -> None:
    """At once: five questions of one conversation, two copies of one event and one other conversation's question
    (recorded together where the store groups commits): one session per conversation, opened once, one Turn per
    event."""
    results = await asyncio.gather(*(ask(store, f"a{i}") for i in range(5)), ask(store, "dup"), ask(store, "dup"),
                                   ask(store, "b", key="slack-user-U2-C1", user="U2"))
    turns = [r for r in results if r is not None]
    assert len(turns) == 7 and results[5:7].count(None) == 1
    mine = [t for t in turns if t.target.user_id == "U1"]
    assert {t.session_id for t in mine} == {session_id("slack-user-U1-C1", 1)}
    assert sum(t.opened_session for t in mine) == 1 and results[7].opened_session  # type: ignore[union-attr]
    assert len({t.id for t in turns}) == 7 and len(await store.active_turns()) == 7
    for turn in turns:  # each caller's Turn is the row as stored
        assert replace(turn, opened_session=False) == await store.get_turn(turn.id)


async def test_a_question_that_cannot_be_stored_fails_alone(store: Store) -> None:
    """A question the database refuses (a NULL workspace) raises for its caller only: the questions sent with it
    are recorded, and its conversation has no session left behind."""
    bad = InboundMessage(target=ReplyTarget("slack", None, "C9", "C9", "x", "U9"),  # type: ignore[arg-type]
                         text="hi", event_key="C9:x")
    results = await asyncio.gather(
        ask(store, "1"), store.record_question(bad, key="bad", site_id="site", idle_timeout=60.0, now=T0),
        ask(store, "2", key="slack-user-U2-C1", user="U2"), return_exceptions=True)
    assert isinstance(results[0], Turn) and isinstance(results[2], Turn)
    assert isinstance(results[1], Exception)
    assert await store.live_session("bad") is None and len(await store.active_turns()) == 2


async def test_claim_submit_is_compare_and_set(store: Store) -> None:
    """Of ten concurrent claims exactly one wins; a repeat after it is refused."""
    turn = await ask(store, "1")
    assert turn is not None
    wins = await asyncio.gather(*(store.claim_submit(turn.id) for _ in range(10)))
    assert wins.count(True) == 1
    assert await store.claim_submit(turn.id) is False
    assert (await store.get_turn(turn.id)).state is TurnState.SUBMITTING  # type: ignore[union-attr]
    assert await store.store_answer(turn.id, "too soon", None, None, now=T0) is None  # not submitted yet


async def test_a_question_walks_the_states_and_its_answer_is_found_by_message(store: Store) -> None:
    """submitted → pending (request id kept), answer → ready, answered → found by message id, texts dropped."""
    turn = await ask(store, "1")
    assert turn is not None and await store.claim_submit(turn.id)
    await store.mark_submitted(turn.id, "req-1", now=T0 + 1)
    pending = await store.get_turn(turn.id)
    assert pending is not None and pending.state is TurnState.PENDING and pending.request_id == "req-1"
    assert pending.submitted_at == T0 + 1
    stored = await store.store_answer(turn.id, "Within 30 days.", 88.0, "high", now=T0 + 2)
    ready = await store.get_turn(turn.id)
    # Kept and claimed for posting in one write: no separate claim_delivery on the way to the post.
    assert ready is not None and ready.state is TurnState.DELIVERING and ready.answer == "Within 30 days."
    assert (ready.confidence_score, ready.confidence_level) == (88.0, "high")
    assert stored == ready  # returned as stored: the caller posts it without reading it again
    assert await store.store_answer(turn.id, "again", None, None, now=T0 + 2) is None  # not pending any more
    assert (await store.get_turn(turn.id)).answer == "Within 30 days."  # type: ignore[union-attr]
    await store.mark_answered(turn.id, ["A1", "A2"], now=T0 + 3)
    await store.mark_answered(turn.id, ["A1", "A2"], now=T0 + 3)  # a repeat changes nothing
    done = await store.get_turn(turn.id)
    assert done is not None and done.state is TurnState.ANSWERED and done.text is None and done.answer is None
    assert (await store.turn_for_message("slack", "A2", "C1")).id == turn.id  # type: ignore[union-attr]
    assert await store.turn_for_message("slack", "A2", "C9") is None
    assert await store.turn_for_message("slack", "nope") is None
    assert await store.active_turns() == []
    assert await store.counts() == Counts(pending=0, open_sessions=1)


async def test_failure_notice_is_durable_until_marked_failed(store: Store) -> None:
    """begin_failure keeps the notice (resumable); mark_failed ends the question and drops it."""
    turn = await ask(store, "1")
    assert turn is not None
    await store.begin_failure(turn.id, "timeout", "timeout", "Taking much longer than usual.")
    notifying = (await store.active_turns())[0]
    assert notifying.state is TurnState.NOTIFYING and notifying.notice == "Taking much longer than usual."
    assert (notifying.error_kind, notifying.notice_kind) == ("timeout", "timeout")
    await store.mark_failed(turn.id, "timeout", now=T0 + 5)
    assert await store.active_turns() == []
    assert (await store.get_turn(turn.id)).state is TurnState.FAILED  # type: ignore[union-attr]


async def _ready(store: Store, event: str, *, at: float) -> Turn:
    turn = await ask(store, event, key=f"k{event}")
    assert turn is not None and await store.claim_submit(turn.id)
    await store.mark_submitted(turn.id, f"req-{event}", now=at)
    await store.store_answer(turn.id, f"answer {event}", None, None, now=at)
    return turn


async def test_undelivered_answers_come_due_by_when_they_were_stored_or_postponed(store: Store) -> None:
    """undelivered lists READY/DELIVERING answers due by `before`, longest waiting first, within `limit`;
    postpone keeps the answer (DELIVERING: a part may be out) and makes it due again only from `until`."""
    first, second, third = [await _ready(store, e, at=T0 + i) for i, e in enumerate("123")]
    pending = await ask(store, "4", key="k4")  # not fetched yet: never listed
    assert pending is not None
    await store.set_state(second.id, TurnState.DELIVERING)
    assert [t.id for t in await store.undelivered(T0 + 10, 10)] == [first.id, second.id, third.id]
    assert [t.id for t in await store.undelivered(T0 + 1, 10)] == [first.id, second.id]
    assert [t.id for t in await store.undelivered(T0 + 10, 1)] == [first.id]
    await store.postpone(second.id, until=T0 + 300)
    kept = await store.get_turn(second.id)
    assert kept is not None and kept.state is TurnState.DELIVERING and kept.answer == "answer 2"
    assert [t.id for t in await store.undelivered(T0 + 10, 10)] == [first.id, third.id]
    assert [t.id for t in await store.undelivered(T0 + 300, 10)] == [first.id, third.id, second.id]
    await store.mark_answered(first.id, ["A1"], now=T0 + 11)
    await store.postpone(first.id, until=T0 + 400)  # a finished question stays finished
    assert (await store.get_turn(first.id)).state is TurnState.ANSWERED  # type: ignore[union-attr]
    assert [t.id for t in await store.undelivered(T0 + 1000, 10)] == [third.id, second.id]
    assert second.id in {t.id for t in await store.active_turns()}  # a kept answer is resumed after a restart
    await store.postpone(third.id, until=T0 + 2000)  # a READY one too
    assert (await store.get_turn(third.id)).state is TurnState.DELIVERING  # type: ignore[union-attr]
    assert [t.id for t in await store.undelivered(T0 + 1000, 10)] == [second.id]


async def test_rebind_moves_unsubmitted_questions_to_the_next_generation(store: Store) -> None:
    """Uppzy closed the session: it is closed here too and its waiting questions move to `<key>-2`."""
    first = await ask(store, "1")
    second = await ask(store, "2")
    assert first is not None and second is not None and await store.claim_submit(first.id)
    new_id = await store.rebind_session(first.id, now=T0 + 1)
    assert new_id == session_id("slack-user-U1-C1", 2)
    assert {t.session_id for t in await store.active_turns()} == {new_id}
    assert (await store.live_session("slack-user-U1-C1")).id == new_id  # type: ignore[union-attr]


async def test_knows_thread_after_a_question_there(store: Store) -> None:
    """A thread root or a reply in it counts; other threads and channels do not."""
    await ask(store, "100")
    await ask(store, "101", thread="200")
    assert await store.knows_thread("slack", "C1", "100")
    assert await store.knows_thread("slack", "C1", "200")
    assert not await store.knows_thread("slack", "C1", "300")
    assert not await store.knows_thread("slack", "C2", "100")


async def test_asked_in_thread_names_the_askers_only(store: Store) -> None:
    """Who started a thread with a question or asked inside it counts, in that thread only; nobody else does."""
    await ask(store, "100")
    await ask(store, "101", user="U2", key="slack-user-U2-C1", thread="200")
    assert await store.asked_in_thread("slack", "C1", "100", "U1")
    assert await store.asked_in_thread("slack", "C1", "200", "U2")
    assert not await store.asked_in_thread("slack", "C1", "100", "U2")
    assert not await store.asked_in_thread("slack", "C1", "200", "U1")
    assert not await store.asked_in_thread("slack", "C2", "100", "U1")
    assert not await store.asked_in_thread("discord", "C1", "100", "U1")



async def test_session_ids_are_the_workspaces_own(store: Store) -> None:
    """Ids of sessions a workspace opened, by key prefix; other workspaces' and platforms' sessions stay out."""
    await ask(store, "1", key="slack-user-U1-C1")
    await ask(store, "2", key="slack-user-U1-D1")
    await ask(store, "3", key="slack-user-U12-C1", user="U12")
    other = InboundMessage(ReplyTarget("slack", "T2", "C9", "C9", "4", "U1"), "q", "C9:4")
    await store.record_question(other, key="slack-user-U1-C9", site_id="site", idle_timeout=60.0, now=T0)
    assert await store.session_ids("slack", "T1", "slack-user-U1-") == {"slack-user-U1-C1", "slack-user-U1-D1"}
    assert await store.session_ids("slack", "T2", "slack-user-U1") == {"slack-user-U1-C9"}
    assert await store.session_ids("discord", "T1", "slack-user-U1") == set()
    assert await store.session_ids("slack", "T1", "slack-user-U_") == set()  # a prefix, never a pattern

# ---- feedback --------------------------------------------------------------------------------------------------


async def test_feedback_claim_is_first_wins_and_the_store_applies_no_takeover_rule(store: Store) -> None:
    """The first claim wins; later ones see it (even days later: taking over is core's decision)."""
    turn = await ask(store, "1")
    assert turn is not None
    claims = await asyncio.gather(*(store.claim_feedback(turn.id, "good", f"U{i}", "button", now=T0)
                                    for i in range(5)))
    assert claims.count(None) == 1
    assert all(c == FeedbackClaim("good", "sending", T0) for c in claims if c is not None)
    later = await store.claim_feedback(turn.id, "bad", "U9", "reaction", now=T0 + 86400)
    assert later == FeedbackClaim("good", "sending", T0)


async def test_take_over_feedback_is_compare_and_set_on_the_seen_claim(store: Store) -> None:
    """Only a `sending` claim still stamped `seen_at` can be replaced, by exactly one caller."""
    turn = await ask(store, "1")
    assert turn is not None and await store.claim_feedback(turn.id, "good", "U1", "button", now=T0) is None
    assert not await store.take_over_feedback(turn.id, seen_at=T0 - 1, rating="bad", user_id="U1",
                                              source="reaction", now=T0 + 200)
    wins = await asyncio.gather(*(store.take_over_feedback(turn.id, seen_at=T0, rating="bad", user_id="U1",
                                                           source="reaction", now=T0 + 200) for _ in range(5)))
    assert wins.count(True) == 1
    assert await store.claim_feedback(turn.id, "good", "U1", "button", now=T0 + 201) == \
        FeedbackClaim("bad", "sending", T0 + 200)
    await store.finish_feedback(turn.id, sent=True)
    assert not await store.take_over_feedback(turn.id, seen_at=T0 + 200, rating="good", user_id="U1",
                                              source="button", now=T0 + 999)
    assert (await store.claim_feedback(turn.id, "good", "U1", "button", now=T0 + 1000)).state == "sent"  # type: ignore[union-attr]


async def test_feedback_not_sent_frees_the_claim(store: Store) -> None:
    """finish_feedback(sent=False) removes a `sending` claim so the user can try again."""
    turn = await ask(store, "1")
    assert turn is not None and await store.claim_feedback(turn.id, "good", "U1", "button", now=T0) is None
    await store.finish_feedback(turn.id, sent=False)
    assert await store.claim_feedback(turn.id, "bad", "U1", "button", now=T0 + 1) is None


# ---- sessions --------------------------------------------------------------------------------------------------


async def test_idle_sessions_close_by_claim_and_the_next_question_opens_a_new_generation(store: Store) -> None:
    """Busy sessions cannot be claimed; an idle one is claimed by exactly one caller, closed once, never reused."""
    turn = await ask(store, "1")
    assert turn is not None
    row = await store.live_session("slack-user-U1-C1")
    assert row is not None and row.last_target == turn.target and row.idle_timeout == 60.0
    assert not await store.claim_for_close(row.id, idle_at=None)  # a question is unfinished
    await store.mark_failed(turn.id, "x", now=T0)
    assert await store.idle_sessions(T0 + 30, 10) == []
    assert [r.id for r in await store.idle_sessions(T0 + 61, 10)] == [row.id]
    assert not await store.claim_for_close(row.id, idle_at=T0 + 30)  # not idle at that time
    wins = await asyncio.gather(*(store.claim_for_close(row.id, idle_at=T0 + 61) for _ in range(5)))
    assert wins.count(True) == 1
    assert [r.id for r in await store.closing_sessions()] == [row.id]
    await store.mark_closed(row.id, "idle", now=T0 + 62)
    await store.mark_closed(row.id, "user", now=T0 + 63)
    assert await store.closing_sessions() == [] and await store.live_session("slack-user-U1-C1") is None
    again = await ask(store, "2", now=T0 + 70)
    assert again is not None and again.opened_session and again.session_id == session_id("slack-user-U1-C1", 2)


async def test_idle_sessions_are_stalest_first_within_the_limit(store: Store) -> None:
    """Ordered by last activity + idle timeout; set_idle_timeout moves a workspace's open sessions."""
    for i in range(3):
        turn = await ask(store, str(i), key=f"k{i}", now=T0 + i, channel=f"C{i}")
        assert turn is not None
        await store.mark_failed(turn.id, "x", now=T0 + i)
    assert [r.id for r in await store.idle_sessions(T0 + 100, 2)] == ["k0", "k1"]
    await store.set_idle_timeout("slack", "T1", 1000.0)
    assert await store.idle_sessions(T0 + 100, 10) == []


async def test_counts_are_typed_and_scoped(store: Store) -> None:
    """Counts per workspace and overall."""
    await ask(store, "1")
    assert await store.counts() == Counts(1, 1)
    assert await store.counts("slack", "T1") == Counts(1, 1)
    assert await store.counts("slack", "T2") == Counts(0, 0)


async def test_prune_forgets_closed_sessions_and_keeps_open_and_recent_ones(store: Store) -> None:
    """Old finished questions and every session closed before the cutoff go; an open session and one closed
    after the cutoff stay; a key with nothing left starts at generation 1 again."""
    for generation in range(2):
        turn = await ask(store, f"q{generation}", now=T0 + generation)
        assert turn is not None
        await store.mark_failed(turn.id, "x", now=T0 + generation)
        assert await store.claim_for_close(turn.session_id, idle_at=None)
        await store.mark_closed(turn.session_id, "user", now=T0 + generation)
    recent = await ask(store, "r1", key="slack-user-U2-C1", user="U2", now=T0)
    assert recent is not None
    await store.mark_failed(recent.id, "x", now=T0 + 50)
    assert await store.claim_for_close(recent.session_id, idle_at=None)
    await store.mark_closed(recent.session_id, "user", now=T0 + 50)
    live = await ask(store, "o1", key="slack-user-U3-C1", user="U3", now=T0)
    assert live is not None
    assert await store.prune(T0 + 10) == 2
    assert await store.get_turn(1) is None
    assert (await store.live_session("slack-user-U3-C1")).id == live.session_id  # type: ignore[union-attr]
    assert (await ask(store, "r2", key="slack-user-U2-C1", user="U2", now=T0 + 60)).session_id == session_id(  # type: ignore[union-attr]
        "slack-user-U2-C1", 2)  # closed after the cutoff: kept, so its id is not reused
    newest = await ask(store, "q9", now=T0 + 20)
    assert newest is not None and newest.session_id == session_id("slack-user-U1-C1", 1)


async def test_a_stamped_rebind_gets_an_id_no_earlier_session_had(store: Store) -> None:
    """`stamped=True` names the new session with core's stamp: neither the key nor any `<key>-<n>`."""
    first = await ask(store, "1")
    assert first is not None and await store.claim_submit(first.id)
    second = await store.rebind_session(first.id, now=T0 + 1)
    third = await store.rebind_session(first.id, now=T0 + 2, stamped=True)
    assert third == session_id("slack-user-U1-C1", 3, stamp=T0 + 2) != second
    assert third not in {session_id("slack-user-U1-C1", n) for n in range(1, 100)}
    assert (await store.get_turn(first.id)).session_id == third  # type: ignore[union-attr]
    assert (await store.live_session("slack-user-U1-C1")).id == third  # type: ignore[union-attr]


async def test_probe_writes_and_leaves_the_store_healthy(store: Store) -> None:
    """A fresh store passes its readiness probe (a real write) and reports healthy; data is untouched."""
    assert await ask(store, "1") is not None
    for _ in range(3):
        await store.probe()
    assert store.health.ok and store.health.reason is None
    assert len(await store.active_turns()) == 1


# ---- settings --------------------------------------------------------------------------------------------------


async def test_workspace_settings_and_channel_modes_round_trip(store: Store) -> None:
    """Overrides are stored, replaced and removed; channel modes likewise; nothing leaks across workspaces."""
    await store.put_workspace_setting("slack", "T1", "reply_mode", "all", by="U1", now=T0)
    await store.put_workspace_setting("slack", "T1", "reply_mode", "off", by="U1", now=T0)
    assert await store.workspace_settings("slack", "T1") == {"reply_mode": "off"}
    assert await store.workspace_settings("slack", "T2") == {}
    await store.put_workspace_setting("slack", "T1", "reply_mode", None, by="U1", now=T0)
    assert await store.workspace_settings("slack", "T1") == {}
    assert await store.channel_mode("slack", "T1", "C1") is None
    await store.put_channel_mode("slack", "T1", "C1", "all", by="U1", now=T0)
    await store.put_channel_mode("slack", "T1", "C1", "off", by="U1", now=T0)
    assert await store.channel_mode("slack", "T1", "C1") == "off"
    assert await store.channel_mode("discord", "T1", "C1") is None
    await store.ping()


async def test_a_finished_question_never_changes_state_again(store: Store) -> None:
    """Writes retried late (after the store recovered) cannot reopen an answered or failed question."""
    answered, failed = await ask(store, "1"), await ask(store, "2", user="U2", key="k2")
    assert answered is not None and failed is not None
    await store.mark_answered(answered.id, ["A1"], now=T0 + 1)
    await store.mark_failed(failed.id, "timeout", now=T0 + 1)
    for turn in (answered, failed):
        assert not await store.begin_failure(turn.id, "late", "failed", "Sorry")  # nobody is told twice
        assert not await store.claim_delivery(turn.id)  # nothing is posted again
        await store.store_answer(turn.id, "late answer", None, None, now=T0 + 2)
        await store.mark_submitted(turn.id, "req-late", now=T0 + 2)
        await store.set_state(turn.id, TurnState.DELIVERING)
        await store.postpone(turn.id, until=T0 + 3)
    await store.mark_failed(answered.id, "late", now=T0 + 4)
    await store.mark_answered(failed.id, ["A2"], now=T0 + 4)
    assert (await store.get_turn(answered.id)).state is TurnState.ANSWERED  # type: ignore[union-attr]
    assert (await store.get_turn(failed.id)).state is TurnState.FAILED  # type: ignore[union-attr]
    assert await store.active_turns() == [] and (await store.counts()).pending == 0


# ---- holders, leases, singleton jobs and budgets ---------------------------------------------------------------


@pytest.fixture(params=[name for name in sorted(STORES) if name != "sqlite-memory"])
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The implementations whose database outlives the process (an in-memory one does not)."""
    if request.param == "postgres":
        return request.param, request.getfixturevalue("pg_url")
    return request.param, str(tmp_path / "contract.db")


async def test_a_reopened_store_adopts_every_unfinished_question(durable_backend: tuple[str, str]) -> None:
    """After a clean stop, the next process start (a new holder) gets every unfinished question with `mine`,
    oldest first; finished ones stay finished."""
    backend = durable_backend
    first = await STORES[backend[0]](backend[1], "contract-1")
    assert await first.renew(now=T0, lease=10.0)
    asked = [await ask(first, str(i), key=f"k{i}") for i in range(3)]
    assert all(asked)
    await first.mark_failed(asked[1].id, "x", now=T0)  # type: ignore[union-attr]
    await first.close()
    second = await STORES[backend[0]](backend[1], "contract-2")
    try:
        assert await second.renew(now=T0 + 1, lease=10.0)
        taken = await second.adopt(now=T0 + 1, mine=True)
        assert [t.id for t in taken] == [asked[0].id, asked[2].id]  # type: ignore[union-attr]
        assert await second.adopt(now=T0 + 2) == []  # nothing left that is not already this process's
    finally:
        await second.close()


async def test_a_live_process_keeps_its_own_questions(store: Store) -> None:
    """Without `mine`, adopt never returns what this process already holds under a running lease."""
    assert await store.renew(now=T0, lease=10.0)
    for i in range(3):
        assert await ask(store, str(i), key=f"k{i}") is not None
    assert await store.adopt(now=T0 + 1) == []
    assert len(await store.adopt(now=T0 + 1, mine=True)) == 3
    assert await store.renew(now=T0 + 2, lease=10.0)  # renewed in time


async def test_the_first_process_leads_a_job_and_keeps_it(store: Store) -> None:
    """lead is True for the first caller, and again while it renews."""
    assert await store.lead("idle-reaper", now=T0, lease=5.0)
    assert await store.lead("idle-reaper", now=T0 + 1, lease=5.0)
    assert await store.lead("prune", now=T0 + 1, lease=5.0)


async def test_a_budget_grants_at_most_its_rate_in_a_second_and_pause_stops_it(store: Store) -> None:
    """Back-to-back grants never add up to more than `rate`; once empty, wait_time says when to ask again;
    after pause nothing is granted."""
    budget = store.budget("contract", 5.0)
    assert budget.rate == 5.0
    first = await budget.grant(10)
    assert first >= 1
    total = first + sum([await budget.grant(10) for _ in range(5)])
    assert total <= 5
    assert budget.wait_time() > 0
    other = store.budget("other", 5.0)
    await other.pause(5.0)
    assert await other.grant(1) == 0
    assert other.wait_time() > 0


async def test_a_close_in_flight_is_not_resumed_until_it_is_old(store: Store) -> None:
    """closing_sessions(before=…) lists a claimed close only once it was claimed before that time: a close another
    process has in flight right now is not sent to Uppzy a second time."""
    turn = await ask(store, "1")
    assert turn is not None
    await store.mark_answered(turn.id, ["A1"], now=T0)
    assert await store.claim_for_close(turn.session_id, idle_at=None, now=T0 + 10)
    assert await store.closing_sessions(before=T0 + 10) == []
    assert [r.id for r in await store.closing_sessions(before=T0 + 11)] == [turn.session_id]
    assert [r.id for r in await store.closing_sessions()] == [turn.session_id]


# ---- many workspaces: installations, OAuth states, per-workspace credentials, rotation (issue 12) ---------------


async def test_installations_save_find_replace_and_delete(store: Store) -> None:
    """An installation is found by exactly its (enterprise, team), replaced by a later save, deleted once."""
    assert await store.find_installation(None, "T1") is None
    await store.save_installation(None, "T1", "sealed-1", now=T0)
    await store.save_installation(None, "T2", "sealed-2", now=T0)
    await store.save_installation("E1", "T1", "sealed-e1-t1", now=T0)
    assert await store.find_installation(None, "T1") == "sealed-1"
    assert await store.find_installation("E1", "T1") == "sealed-e1-t1"
    await store.save_installation(None, "T1", "sealed-1b", now=T0 + 1)
    assert await store.find_installation(None, "T1") == "sealed-1b"
    assert await store.delete_installation(None, "T1") is True
    assert await store.delete_installation(None, "T1") is False
    assert await store.find_installation(None, "T1") is None
    assert await store.find_installation(None, "T2") == "sealed-2"


async def test_an_org_wide_install_is_found_for_any_team_of_its_enterprise(store: Store) -> None:
    """Enterprise Grid: an org-wide install (team None) answers a lookup with that enterprise and any team, unless a
    team-specific row exists; another enterprise, or no enterprise, never finds it. Deleting a team's row never
    deletes the org's."""
    await store.save_installation("E1", None, "org", now=T0)
    assert await store.find_installation("E1", "T7") == "org"
    assert await store.find_installation("E1", None) == "org"
    assert await store.find_installation("E2", "T7") is None and await store.find_installation(None, "T7") is None
    await store.save_installation("E1", "T8", "team-8", now=T0)
    assert await store.find_installation("E1", "T8") == "team-8"
    assert await store.delete_installation("E1", "T7") is False
    assert await store.find_installation("E1", "T7") == "org"
    assert await store.delete_installation("E1", None) is True
    assert await store.find_installation("E1", "T7") is None and await store.find_installation("E1", "T8") == "team-8"


async def test_concurrent_refreshes_of_one_installation_run_one_after_the_other(store: Store) -> None:
    """Two refreshes of the same row at once: the second runs only after the first saved, and sees its result;
    a refresh returning None keeps the value; a failing refresh saves nothing; no row: None, refresh not called."""
    await store.save_installation("E1", None, "v0", now=T0)
    steps: list[tuple[str, str]] = []

    async def rotate(current: str) -> str:
        steps.append(("start", current))
        await asyncio.sleep(0.05)  # a window in which an unguarded second refresh would start
        steps.append(("end", current))
        return current + "+"

    results = await asyncio.gather(store.refresh_installation("E1", "T1", rotate),
                                   store.refresh_installation("E1", "T1", rotate))
    assert sorted(results) == ["v0+", "v0++"]  # type: ignore[type-var]
    assert steps == [("start", "v0"), ("end", "v0"), ("start", "v0+"), ("end", "v0+")]
    assert await store.find_installation("E1", "T1") == "v0++" == await store.find_installation("E1", None)

    async def unchanged(current: str) -> None:
        return None

    async def broken(current: str) -> str:
        raise RuntimeError("slack said no")

    assert await store.refresh_installation("E1", "T1", unchanged) == "v0++"
    with pytest.raises(RuntimeError, match="slack said no"):
        await store.refresh_installation("E1", "T1", broken)
    assert await store.find_installation("E1", None) == "v0++"
    assert await store.refresh_installation("E9", "T9", broken) is None


async def test_an_oauth_state_is_consumed_exactly_once_and_never_after_it_expired(store: Store) -> None:
    """An issued state: True once (of concurrent consumers, one), then False; an expired one is False and gone;
    an unknown one False; prune removes states expired before the cutoff."""
    await store.issue_oauth_state("s-ok", expires_at=T0 + 600)
    results = await asyncio.gather(*(store.consume_oauth_state("s-ok", now=T0 + 1) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    assert await store.consume_oauth_state("s-ok", now=T0 + 2) is False
    await store.issue_oauth_state("s-late", expires_at=T0 + 600)
    assert await store.consume_oauth_state("s-late", now=T0 + 600) is False
    await store.issue_oauth_state("s-late", expires_at=T0 + 1200)  # gone: issuing it again is a new state
    assert await store.consume_oauth_state("s-late", now=T0 + 601) is True
    assert await store.consume_oauth_state("never-issued", now=T0) is False
    await store.issue_oauth_state("s-kept", expires_at=T0 + 600)
    await store.issue_oauth_state("s-kept", expires_at=T0 + 9000)  # still there: its expiry is not extended
    assert await store.consume_oauth_state("s-kept", now=T0 + 601) is False
    await store.issue_oauth_state("s-old", expires_at=T0 + 10)
    await store.issue_oauth_state("s-new", expires_at=T0 + 5000)
    await store.prune(T0 + 100)
    # Pruned: issuing it again is a new state (had it stayed, it would keep its old expiry and be refused).
    await store.issue_oauth_state("s-old", expires_at=T0 + 20_000)
    assert await store.consume_oauth_state("s-old", now=T0 + 50) is True
    assert await store.consume_oauth_state("s-new", now=T0 + 60) is True


async def test_an_expired_state_goes_when_another_is_consumed(store: Store) -> None:
    """Consuming any state also deletes every state expired by then: abandoned installs do not pile up."""
    await store.issue_oauth_state("abandoned", expires_at=T0 + 10)
    await store.issue_oauth_state("used", expires_at=T0 + 600)
    assert await store.consume_oauth_state("used", now=T0 + 20) is True
    # The abandoned state is gone: issued anew it is a new state (had it stayed, it would keep its old expiry).
    await store.issue_oauth_state("abandoned", expires_at=T0 + 700)
    assert await store.consume_oauth_state("abandoned", now=T0 + 30) is True


async def test_workspace_credentials_round_trip_and_forget_removes_settings_too(store: Store) -> None:
    """set/get credentials per (platform, workspace); forget_workspace removes its credentials, settings and
    channel modes (another workspace's stay) and keeps its conversation records."""
    assert await store.get_credentials("slack", "T1") is None
    await store.set_credentials("slack", "T1", site_id="site-a", sealed_key="sealed-a", now=T0)
    await store.set_credentials("slack", "T1", site_id="site-b", sealed_key="sealed-b", now=T0 + 1)
    await store.set_credentials("slack", "T2", site_id="site-c", sealed_key="sealed-c", now=T0)
    await store.set_credentials("discord", "T1", site_id="site-d", sealed_key="sealed-d", now=T0)
    assert await store.get_credentials("slack", "T1") == ("site-b", "sealed-b")
    for workspace in ("T1", "T2"):
        await store.put_workspace_setting("slack", workspace, "reply_mode", "all", by="U1", now=T0)
        await store.put_channel_mode("slack", workspace, "C1", "off", by="U1", now=T0)
    turn = await ask(store, "1")  # workspace T1 of slack
    assert turn is not None
    await store.forget_workspace("slack", "T1")
    assert await store.get_credentials("slack", "T1") is None
    assert await store.workspace_settings("slack", "T1") == {}
    assert await store.channel_mode("slack", "T1", "C1") is None
    assert await store.get_credentials("slack", "T2") == ("site-c", "sealed-c")
    assert await store.get_credentials("discord", "T1") == ("site-d", "sealed-d")
    assert await store.workspace_settings("slack", "T2") == {"reply_mode": "all"}
    assert await store.channel_mode("slack", "T2", "C1") == "off"
    assert await store.get_turn(turn.id) is not None


async def test_workspace_connections_list_every_connection_in_key_order_by_pages(store: Store) -> None:
    """workspace_connections pages through (platform, workspace, site, sealed key) in key order; a replaced
    connection is listed once with its new site; a forgotten one is gone."""
    assert await store.workspace_connections() == []
    for platform, workspace in (("slack", "T2"), ("discord", "G1"), ("slack", "T10"), ("slack", "T1")):
        await store.set_credentials(platform, workspace, site_id=f"site-{workspace}", sealed_key=f"k-{workspace}",
                                    now=T0)
    await store.set_credentials("slack", "T1", site_id="site-new", sealed_key="k-new", now=T0 + 1)
    everything = await store.workspace_connections()
    assert everything == [("discord", "G1", "site-G1", "k-G1"), ("slack", "T1", "site-new", "k-new"),
                          ("slack", "T10", "site-T10", "k-T10"), ("slack", "T2", "site-T2", "k-T2")]
    first = await store.workspace_connections(limit=3)
    rest = await store.workspace_connections(after=first[-1][:2], limit=3)
    assert first + rest == everything and len(rest) == 1
    assert await store.workspace_connections(after=("slack", "T2")) == []
    await store.forget_workspace("slack", "T10")
    assert [row[1] for row in await store.workspace_connections()] == ["G1", "T1", "T2"]


async def test_reseal_walks_every_sealed_column_in_batches_and_a_rerun_rewrites_nothing(store: Store) -> None:
    """Every installation and credential passes through `reseal` once, `batch` rows per read (never all at once);
    what it returns is stored, None leaves the row; the count is of rewritten values; a rerun finds none to do."""
    for i in range(5):
        await store.save_installation(None, f"T{i}", f"old-inst-{i}", now=T0)
        await store.set_credentials("slack", f"T{i}", site_id=f"site-{i}", sealed_key=f"old-key-{i}", now=T0)
    await store.save_installation("E1", None, "old-org", now=T0)
    await store.set_credentials("discord", "G1", site_id="site-g", sealed_key="new-key-g", now=T0)
    seen: list[str] = []

    def reseal(value: str) -> str | None:
        seen.append(value)
        return None if value.startswith("new-") else "new-" + value.removeprefix("old-")

    assert await store.reseal_secrets(reseal, batch=2) == 11
    assert sorted(seen) == sorted([f"old-inst-{i}" for i in range(5)] + [f"old-key-{i}" for i in range(5)]
                                  + ["old-org", "new-key-g"])
    assert await store.find_installation(None, "T3") == "new-inst-3"
    assert await store.find_installation("E1", "T9") == "new-org"
    assert await store.get_credentials("slack", "T4") == ("site-4", "new-key-4")
    assert await store.get_credentials("discord", "G1") == ("site-g", "new-key-g")
    seen.clear()
    assert await store.reseal_secrets(reseal, batch=2) == 0 and len(seen) == 12
    assert await store.reseal_secrets(reseal) == 0  # one batch of 200


async def test_reseal_never_overwrites_a_value_changed_since_it_was_read(store: Store,
                                                                        backend: tuple[str, str]) -> None:
    """Compare-and-set: a row saved anew by someone else between the batch's read and its write keeps the new value
    (not counted as rewritten); the rest of the batch is rewritten."""
    if backend[0] == "sqlite-memory":
        pytest.skip("a :memory: database has no second connection to change a row from behind the store's back")
    for team in ("T1", "T2"):
        await store.save_installation(None, team, f"old-{team}", now=T0)

    def change_behind_the_store() -> None:
        sql = "UPDATE installations SET sealed='saved-meanwhile' WHERE team_id='T2'"
        if backend[0] == "postgres":
            async def write() -> None:
                import asyncpg

                conn = await asyncpg.connect(backend[1])
                try:
                    await conn.execute(sql)
                finally:
                    await conn.close()

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, write()).result()
        else:
            with contextlib.closing(sqlite3.connect(backend[1])) as conn, conn:
                conn.execute(sql)

    def reseal(value: str) -> str | None:
        if value == "old-T2":
            change_behind_the_store()
        return "new-" + value

    assert await store.reseal_secrets(reseal) == 1
    assert await store.find_installation(None, "T1") == "new-old-T1"
    assert await store.find_installation(None, "T2") == "saved-meanwhile"
