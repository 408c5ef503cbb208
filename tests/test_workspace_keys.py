"""Issue 12: each workspace's questions go to its own Uppzy site with its own key (else the deployment's), through
the console adapter, a real relay on SQLite and the simulator with several keys."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bots.runner import build_relay
from core import messages
from core.config import Secret, Settings
from core.credentials import key_id
from core.models import FeedbackEvent, FeedbackOutcome, InboundMessage, ReplyTarget
from core.relay import Relay
from core.retry import RetryPolicy
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from core.uppzy import UppzyClient
from core.uppzy_types import Timeouts
from simulator import Simulator
from simulator.keys import key_fingerprint
from tests.fault_support import wait_until
from tests.relay_support import FAST, QuietConsole
from tests.test_secrets_rotate import assert_nothing_in_clear

DEPLOY_KEY = "sim-key"
KEY_B = "wsb-uppzy-key-0123456789abcdef"  # workspace B's own key, bound to site-b only
SECRETS = Fernet.generate_key().decode()


class Rig:
    """A started relay (console adapter) on one SQLite file, with or without the deployment's key."""

    def __init__(self, relay: Relay, console: QuietConsole, store: SqliteStore, uppzy: UppzyClient | None) -> None:
        self.relay, self.console, self.store, self.uppzy = relay, console, store, uppzy
        self._ids = 0
        self.closed = False

    async def ask(self, workspace: str, text: str, *, user: str | None = None) -> tuple[Any, str]:
        """A DM question from `user` (by default the workspace's own user) in `workspace`; returns (result,
        message id)."""
        user = user or f"u-{workspace}"
        self._ids += 1
        mid = f"{workspace}-{time.monotonic_ns()}-{self._ids}"
        target = ReplyTarget("console", workspace, f"dm-{user}", f"dm-{user}", mid, user, is_dm=True)
        return await self.relay.handle_message(InboundMessage(target, text, event_key=mid)), mid

    def answered(self, mid: str) -> bool:
        return any(qid == mid for qid, _ in self.console.answers())

    async def until(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        await wait_until(check, timeout=timeout, interval=0.01,
                         what=lambda: f"the condition; transcript: {self.console.transcript}")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.relay.stop()
        if self.uppzy is not None:
            await self.uppzy.aclose()
        await self.relay.connections.pool.aclose()
        await self.store.close()


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    """Factory: `await rigs(sim, deploy_key=True)` starts a relay on tmp_path/relay.db; closed after the test."""
    made: list[Rig] = []

    async def factory(sim: Simulator, *, deploy_key: bool = True, **overrides: Any) -> Rig:
        values: dict[str, Any] = {"uppzy_base_url": sim.base_url, "uppzy_poll_rate": 500.0,
                                  "session_close_rate": 500.0, "secrets_key": Secret(SECRETS)}
        if deploy_key:
            values |= {"uppzy_api_key": Secret(DEPLOY_KEY), "uppzy_site_id": "demo-site"}
        values.update(overrides)
        settings = Settings(**values)
        store = await SqliteStore.open(str(tmp_path / "relay.db"))
        uppzy = UppzyClient(base_url=sim.base_url, api_key=Secret(DEPLOY_KEY), site_id="demo-site",
                            retry=RetryPolicy.no_wait(), timeouts=Timeouts(1, 2, 3)) if deploy_key else None
        relay = build_relay(settings, store, uppzy, tuning=FAST)
        console = QuietConsole()
        relay.register(console)
        await relay.start(reaper=False)
        rig = Rig(relay, console, store, uppzy)
        made.append(rig)
        return rig

    yield factory
    for rig in made:
        await rig.close()


async def connect(store: SqliteStore, workspace: str, site: str, key: str) -> None:
    """What the connect modal stores: the workspace's own site and its key sealed with SECRETS_KEY."""
    await store.set_credentials("console", workspace, site_id=site, sealed_key=SecretBox([SECRETS]).seal(key),
                                now=time.time())


def keys_of(sim: Simulator, endpoint: str, site: str | None = None) -> set[str | None]:
    """Key fingerprints of the answered calls to `endpoint` (on `site`)."""
    return {r.key_id for r in sim.calls(endpoint) if site is None or f"/sites/{site}/" in r.path + "/"}


async def test_each_workspace_uses_its_own_key_for_every_call(make_sim, rigs, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    rig = await rigs(sim)
    await connect(rig.store, "ws-b", "site-b", KEY_B)
    (_, mid_a), (_, mid_b) = await rig.ask("ws-a", "how do returns work?"), await rig.ask("ws-b", "shipping?")
    await rig.until(lambda: rig.answered(mid_a) and rig.answered(mid_b))
    deploy, own = key_fingerprint(DEPLOY_KEY), key_fingerprint(KEY_B)
    for endpoint in ("chat_async", "chat_status"):
        assert keys_of(sim, endpoint, "demo-site") == {deploy}, endpoint
        assert keys_of(sim, endpoint, "site-b") == {own}, endpoint
        assert all(r.status < 300 for r in sim.calls(endpoint)), endpoint
    # Feedback and the session close of each answer go with the key it was asked with.
    for ws, mid in (("ws-a", mid_a), ("ws-b", mid_b)):
        user = f"u-{ws}"
        result = await rig.relay.handle_feedback(FeedbackEvent("console", ws, f"a-{mid}", user, "button",
                                                               rating="good"))
        assert result.outcome is FeedbackOutcome.RECORDED, ws
        target = ReplyTarget("console", ws, f"dm-{user}", f"dm-{user}", "end", user, is_dm=True)
        assert (await rig.relay.end_conversation(target)).name == "ENDED"
    for endpoint in ("chat_feedback", "session_close"):
        assert keys_of(sim, endpoint, "demo-site") == {deploy}, endpoint
        assert keys_of(sim, endpoint, "site-b") == {own}, endpoint
        assert all(r.status < 300 for r in sim.calls(endpoint)), endpoint
    # The workspace's own key: in no log line, and nowhere in the database files in clear (nor hex/base64).
    assert KEY_B not in caplog.text
    await rig.close()
    assert_nothing_in_clear(tmp_path, KEY_B)


async def test_no_connection_and_no_deployment_key_gets_one_reply_and_no_call(make_sim, rigs) -> None:
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    rig = await rigs(sim, deploy_key=False)
    await connect(rig.store, "ws-b", "site-b", KEY_B)
    msg = InboundMessage(ReplyTarget("console", "ws-c", "dm-u1", "dm-u1", "m-c", "u1", is_dm=True), "hello?",
                         event_key="m-c")
    first, again = await rig.relay.handle_message(msg), await rig.relay.handle_message(msg)  # redelivered
    assert first.reason == "not_connected" and again.duplicate
    _, mid_b = await rig.ask("ws-b", "shipping?")  # the connected workspace is answered all the same
    await rig.until(lambda: rig.answered(mid_b))
    await rig.until(lambda: bool(rig.console.notices("not_connected")))
    assert [n[2] for n in rig.console.notices("not_connected")] == [messages.NOT_CONNECTED]
    assert "not connected yet — ask an admin" in messages.NOT_CONNECTED
    assert {r.key_id for r in sim.requests} == {key_fingerprint(KEY_B)}  # nothing of ws-c reached Uppzy
    status = await rig.relay.status_report("console", "ws-c")
    assert not status.uppzy_ok and "not connected" in status.uppzy_detail
    assert {r.key_id for r in sim.requests} == {key_fingerprint(KEY_B)}


async def test_a_429_on_one_key_slows_only_that_keys_budget(make_sim, rigs) -> None:
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    rig = await rigs(sim)
    await connect(rig.store, "ws-b", "site-b", KEY_B)
    sim.inject("chat_status", 429, retry_after="1")
    _, mid_b = await rig.ask("ws-b", "shipping?")
    await rig.until(lambda: any(r.status == 429 for r in sim.calls("chat_status")))
    started = time.monotonic()
    _, mid_a = await rig.ask("ws-a", "how do returns work?")
    await rig.until(lambda: rig.answered(mid_a))
    assert not rig.answered(mid_b) and time.monotonic() - started < 0.8  # B waits out its Retry-After; A does not
    lane_b = rig.relay.poller.lanes()[key_id(Secret(KEY_B))]
    assert lane_b.budget.decreases == 1 and rig.relay.poller.budget.decreases == 0  # type: ignore[attr-defined]
    assert lane_b.rate < rig.relay.poller.rate
    await rig.until(lambda: rig.answered(mid_b))


async def test_restart_polls_each_pending_question_with_the_key_it_was_asked_with(make_sim, rigs) -> None:
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    sim.script("slow", latency=1.0)
    rig = await rigs(sim)
    await connect(rig.store, "ws-b", "site-b", KEY_B)
    (_, mid_a), (_, mid_b) = await rig.ask("ws-a", "slow a"), await rig.ask("ws-b", "slow b")
    await rig.until(lambda: len(sim.calls("chat_async")) == 2)
    # Then ws-a connects its own key (site-b) and the bot restarts: ws-a's question already at Uppzy finishes with
    # the deployment key on demo-site; its next question goes to site-b with its own key.
    await connect(rig.store, "ws-a", "site-b", KEY_B)
    await rig.close()
    before = len(sim.requests)
    again = await rigs(sim)
    await again.until(lambda: sum(1 for qid, _ in again.console.answers() if qid in (mid_a, mid_b)) == 2)
    after = sim.requests[before:]
    polls = {(r.key_id, "/sites/site-b/" in r.path) for r in after if r.endpoint == "chat_status"}
    assert polls == {(key_fingerprint(DEPLOY_KEY), False), (key_fingerprint(KEY_B), True)}
    assert all(r.status < 300 for r in after)
    _, mid_next = await again.ask("ws-a", "next question", user="u2")
    await again.until(lambda: again.answered(mid_next))
    last = sim.calls("chat_async")[-1]
    assert last.key_id == key_fingerprint(KEY_B) and "/sites/site-b/" in last.path


async def test_a_connection_applies_from_the_next_question(make_sim, rigs) -> None:
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    sim.script("slow", latency=0.5)
    rig = await rigs(sim)
    _, first = await rig.ask("ws-a", "slow first")
    await rig.until(lambda: len(sim.calls("chat_async")) == 1)
    await connect(rig.store, "ws-a", "site-b", KEY_B)
    rig.relay.connections.credentials.invalidate("console", "ws-a")  # what the connect modal's handler does
    _, second = await rig.ask("ws-a", "second", user="u2")
    await rig.until(lambda: rig.answered(first) and rig.answered(second))
    submits = [(r.key_id, r.path.split("/sites/")[1].split("/")[0]) for r in sim.calls("chat_async")]
    assert submits == [(key_fingerprint(DEPLOY_KEY), "demo-site"), (key_fingerprint(KEY_B), "site-b")]
    assert keys_of(sim, "chat_status", "demo-site") == {key_fingerprint(DEPLOY_KEY)}
    assert all(r.status < 300 for r in sim.requests)


async def test_the_same_user_and_channel_in_two_workspaces_never_share_a_session(make_sim, rigs) -> None:
    """The same user and channel ids in ws-a (on the deployment's key) and ws-b (its own site and key): two
    sessions, ws-a's with the id it always had. When ws-a then connects its own site, its next question starts a
    new session there instead of carrying the old session's id (and context) to another site; the old one stays
    recorded on its own site, to be closed there."""
    sim = await make_sim(keys={KEY_B: ("site-b",)})
    rig = await rigs(sim)
    await connect(rig.store, "ws-b", "site-b", KEY_B)
    (_, a1), (_, b1) = await rig.ask("ws-a", "first", user="same"), await rig.ask("ws-b", "second", user="same")
    await rig.until(lambda: rig.answered(a1) and rig.answered(b1))
    ids_a = await rig.store.session_ids("console", "ws-a", "console-user-same")
    ids_b = await rig.store.session_ids("console", "ws-b", "console-user-same")
    assert ids_a == {"console-user-same-dm-same"}  # the deployment's single-tenant format, unchanged
    assert ids_b == {"console-user-same-dm-same:ws-b:site-b"}
    await connect(rig.store, "ws-a", "site-b", KEY_B)
    rig.relay.connections.credentials.invalidate("console", "ws-a")  # what the connect modal does
    _, a2 = await rig.ask("ws-a", "third", user="same")
    await rig.until(lambda: rig.answered(a2))
    assert await rig.store.session_ids("console", "ws-a", "console-user-same") == {
        "console-user-same-dm-same", "console-user-same-dm-same:ws-a:site-b"}
    by_session = {sim.chats[r].session_id: r for r in sim.chats}
    assert set(by_session) == {"console-user-same-dm-same", "console-user-same-dm-same:ws-b:site-b",
                               "console-user-same-dm-same:ws-a:site-b"}


def test_separate_platforms_keep_workspaces_apart_and_others_keep_their_ids() -> None:
    """With "Add to Slack" (Slack in `separate`), the same user and channel in two teams are two conversations;
    Discord, and Slack with one bot token, keep `<platform>-user-<user>-<channel>`."""
    from core.routing import conversation_scope
    from core.session_ids import belongs_to_user, conversation_key

    def target(platform: str, workspace: str) -> ReplyTarget:
        return ReplyTarget(platform, workspace, "C1", "C1", "1.0", "U1")

    slack = frozenset({"slack"})
    keys = {conversation_key(target("slack", ws), "user-channel", conversation_scope(target("slack", ws), None, slack))
            for ws in ("T2", "T3")}
    assert keys == {"slack-user-U1-C1:T2", "slack-user-U1-C1:T3"}
    assert conversation_key(target("slack", "T2"), "user-channel",
                            conversation_scope(target("slack", "T2"), None)) == "slack-user-U1-C1"
    assert conversation_key(target("discord", "G1"), "user",
                            conversation_scope(target("discord", "G1"), None, slack)) == "discord-user-U1"
    assert all(belongs_to_user(key, "slack", "U1") for key in keys | {"slack-user-U1:T2", "slack-user-U1:T2-3"})
    assert not belongs_to_user("slack-user-U12-C1:T2", "slack", "U1")
