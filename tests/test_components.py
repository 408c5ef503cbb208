"""Core components on their own: the routing rule every adapter relies on, session ids, backoff and the supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.backoff import Backoff
from core.config import Settings
from core.models import InboundMessage, MessagePlace, ReplyTarget
from core.routing import Route, Router
from core.session_ids import belongs_to_user, conversation_key, session_id, user_prefix
from core.sqlite_store import SqliteStore
from core.supervisor import TaskSupervisor
from core.workspace import WorkspaceSettingsService


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[tuple[Router, WorkspaceSettingsService, SqliteStore]]:
    """A router on a real store, with C-all set to `all` and C-off to `off`; U1 asked in threads 500 and 510.

    U1's question 500 was top-level (its answer started thread 500), in the `mention` channel and in `all`;
    U1's question 501 was a mention inside thread 510, which somebody else started.
    """
    store = await SqliteStore.open(str(tmp_path / "route.db"))
    workspaces = WorkspaceSettingsService(store, Settings(uppzy_site_id="site"))
    await workspaces.set_channel_mode("slack", "T1", "C-all", "all", by="admin")
    await workspaces.set_channel_mode("slack", "T1", "C-off", "off", by="admin")
    asked = [ReplyTarget("slack", "T1", "C-mention", "C-mention", "500", "U1"),
             ReplyTarget("slack", "T1", "C-all", "C-all", "500", "U1"),
             ReplyTarget("slack", "T1", "C-mention", "C-mention", "501", "U1", thread_id="510")]
    for n, target in enumerate(asked):
        await store.record_question(InboundMessage(target, "q", f"seed-{n}"), key=f"k{n}", site_id="site",
                                    idle_timeout=60, now=1.0)
    yield Router(store, workspaces), workspaces, store
    await store.close()


# (place, channel, user, mentioned, thread) → answered?
RULES = [
    (MessagePlace.DIRECT, "D1", "U1", False, None, True),
    (MessagePlace.CHANNEL, "C-mention", "U1", True, None, True),
    (MessagePlace.CHANNEL, "C-mention", "U1", False, None, False),
    (MessagePlace.CHANNEL, "C-all", "U2", False, None, True),
    (MessagePlace.CHANNEL, "C-off", "U1", True, None, False),
    (MessagePlace.THREAD, "C-mention", "U1", False, "500", True),  # the asker's follow-up
    (MessagePlace.THREAD, "C-mention", "U1", False, "510", True),  # asked by mention in a human's thread
    (MessagePlace.THREAD, "C-mention", "U2", False, "500", False),  # no hijack: others must mention
    (MessagePlace.THREAD, "C-mention", "U2", False, "510", False),  # ... also in the human's thread
    (MessagePlace.THREAD, "C-mention", "U2", True, "510", True),  # a mention works anywhere but `off`
    (MessagePlace.THREAD, "C-mention", "U1", False, "600", False),  # someone else's thread
    (MessagePlace.THREAD, "C-all", "U1", False, "500", True),  # `all`: the asker's follow-up
    (MessagePlace.THREAD, "C-all", "U2", False, "500", False),  # `all` means new top-level messages
    (MessagePlace.THREAD, "C-all", "U1", False, "600", False),
    (MessagePlace.THREAD, "C-mention", "U1", True, "600", True),
    (MessagePlace.THREAD, "C-off", "U1", False, "500", False),
    (MessagePlace.FORUM_POST, "C-mention", "U2", False, "700", True),
    (MessagePlace.FORUM_POST, "C-off", "U2", False, "700", False),
]


@pytest.mark.parametrize(("place", "channel", "user", "mentioned", "thread", "answered"), RULES)
async def test_the_routing_rule(router: tuple[Router, WorkspaceSettingsService, SqliteStore], place: MessagePlace,
                                channel: str, user: str, mentioned: bool, thread: str | None,
                                answered: bool) -> None:
    """One rule for every platform: DMs always, `off` never, mentions and forum posts, askers' follow-ups, `all`."""
    rule, _, _ = router
    target = ReplyTarget("slack", "T1", channel, channel, "900", user, thread_id=thread)
    route = await rule.route(InboundMessage(target, "hi", "e", place=place, mentioned=mentioned))
    assert isinstance(route, Route) is answered, route


async def test_a_route_carries_the_settings_and_the_conversation_key(
        router: tuple[Router, WorkspaceSettingsService, SqliteStore]) -> None:
    """The workspace's strategy picks the key, read once with the rest of its settings."""
    rule, workspaces, _ = router
    target = ReplyTarget("slack", "T1", "C-all", "C-all", "900", "U1")
    route = await rule.route(InboundMessage(target, "hi", "e", place=MessagePlace.CHANNEL))
    assert isinstance(route, Route) and route.key == "slack-user-U1-C-all" and route.settings.site_id == "site"
    await workspaces.set("slack", "T1", "session_strategy", "user", by="admin")
    route = await rule.route(InboundMessage(target, "hi", "e", place=MessagePlace.CHANNEL))
    assert isinstance(route, Route) and route.key == "slack-user-U1"


def test_session_ids_are_made_and_read_in_one_place() -> None:
    """Keys per strategy, numbered successors, and which listed sessions are a user's."""
    target = ReplyTarget("discord", "G", "C 1", "C 1", "M", "U/1", thread_id="T")
    assert conversation_key(target, "user-channel") == "discord-user-U_1-C_1"
    assert conversation_key(target, "thread") == "discord-thread-C_1-T"
    assert conversation_key(target, "user") == user_prefix("discord", "U/1") == "discord-user-U_1"
    assert [session_id("k", n) for n in (1, 2, 3)] == ["k", "k-2", "k-3"]
    with pytest.raises(ValueError):
        session_id("k", 0)
    assert belongs_to_user("slack-user-U1", "slack", "U1")
    assert belongs_to_user("slack-user-U1-C1-2", "slack", "U1")
    assert not belongs_to_user("slack-user-U12-C1", "slack", "U1")
    assert not belongs_to_user("discord-user-U1-C1", "slack", "U1")


def test_backoff_follows_stamina_formula() -> None:
    """initial * base**(n-1), capped; the production delivery schedule keeps trying for about two minutes."""
    backoff = Backoff(attempts=9, initial=1.0, maximum=30.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert 110 <= backoff.total <= 130


async def test_backoff_retries_then_raises_the_last_error() -> None:
    """run() tries `attempts` times; success stops it early; after the last failure the error surfaces."""
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("down")
        return "ok"

    fast = Backoff(attempts=3, initial=0.001, maximum=0.001)
    assert await fast.run(flaky, what="flaky") == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(OSError):
        await Backoff(attempts=2, initial=0.001, maximum=0.001).run(flaky, what="flaky")
    assert len(calls) == 2


async def test_supervisor_tracks_logs_drains_and_cancels(caplog: pytest.LogCaptureFixture) -> None:
    """Spawned failures are logged with the supervisor's name; drain waits; cancel_all ends the rest."""
    tasks = TaskSupervisor("unit")
    gate = asyncio.Event()

    async def boom() -> None:
        raise RuntimeError("bad")

    async def wait() -> None:
        await gate.wait()

    failing = tasks.spawn(boom(), name="boom")
    await asyncio.gather(failing, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    assert any("unit task boom failed" in r.getMessage() for r in caplog.records)
    waiter = tasks.spawn(wait())
    assert not tasks.idle and not await tasks.drain(0.01)
    gate.set()
    assert await tasks.drain(1.0) and tasks.idle and waiter.done()
    hanging = tasks.spawn(asyncio.Event().wait())
    await tasks.cancel_all()
    assert hanging.cancelled() and tasks.idle
