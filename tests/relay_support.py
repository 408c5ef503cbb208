"""Builds a real relay (SQLite in tmp_path, Uppzy simulator over loopback) with the console adapter attached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.console.adapter import ConsoleAdapter
from bots.runner import build_relay
from core.backoff import Backoff
from core.config import Secret, Settings
from core.latency import LatencyModel
from core.models import ReplyTarget
from core.ports import Store
from core.relay import Relay
from core.retry import RetryPolicy
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from core.uppzy import UppzyClient
from core.uppzy_types import Timeouts
from simulator import Simulator


class QuietConsole(ConsoleAdapter):
    """The console adapter writing to nowhere, keeping only its transcript."""

    def __init__(self, user_id: str = "you") -> None:
        import io

        super().__init__(io.StringIO(), color=False, user_id=user_id)

    def answers(self) -> list[tuple[str, str]]:
        """(question id, text) of every answer posted."""
        return [(qid, text) for kind, qid, text in self.transcript if kind == "answer"]

    def notices(self, kind: str | None = None) -> list[tuple[str, str, str]]:
        """Every non-answer line, optionally of one kind."""
        return [t for t in self.transcript if t[0] != "answer" and (kind is None or t[0] == kind)]


@dataclass
class Harness:
    """A started relay and what it talks to."""

    relay: Relay
    console: QuietConsole
    store: SqliteStore
    uppzy: UppzyClient
    sim: Simulator
    settings: Settings
    closed: bool = False

    async def ask(self, text: str, *, user: str | None = None, channel: str = "terminal",
                  thread: str | None = None) -> tuple[Any, str]:
        """Send one question as the console would; returns (result, question id)."""
        msg = self.console.message(text)
        if user is not None or channel != "terminal" or thread is not None:
            t = msg.target
            msg = type(msg)(target=ReplyTarget(t.platform, t.workspace_id, channel, channel, t.message_id,
                                               user or t.user_id, thread_id=thread),
                            text=text, event_key=msg.event_key)
        return await self.relay.handle_message(msg), msg.target.message_id

    async def until(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `check()` holds, polling every 10 ms."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; transcript: {self.console.transcript}")
            await asyncio.sleep(0.01)


FAST = Tuning(poll_interval=0.05, delivery=Backoff(attempts=3, initial=0.01, maximum=0.02),
              latency=LatencyModel(prior=(0.01,) * 6, floor=0.01), first_poll_floor=0.01)


def fast_settings(sim: Simulator, **overrides: Any) -> Settings:
    """Settings pointing at the simulator, with a generous poll budget for tests."""
    values: dict[str, Any] = {"uppzy_api_key": Secret("sim-key"), "uppzy_site_id": "demo-site",
                              "uppzy_base_url": sim.base_url, "uppzy_poll_rate": 500.0, "session_close_rate": 500.0}
    values.update(overrides)
    return Settings(**values)


async def build(tmp_path: Path, sim: Simulator, *, db: str = "relay.db", user_id: str = "you",
                api_key: str = "sim-key", retry: RetryPolicy | None = None,
                clock: Callable[[], float] = time.time, tuning: Tuning = FAST, pg_url: str | None = None,
                holder: str = "replica-a", **overrides: Any) -> Harness:
    """A started relay on a SQLite file in tmp_path (or, with `pg_url`, on PostgreSQL as replica `holder`); call
    `close(h)` when done."""
    settings = fast_settings(sim, **overrides)
    if pg_url is not None:
        from core.postgres_store import PostgresStore

        store: Store = await PostgresStore.open(pg_url, holder=holder)
    else:
        store = await SqliteStore.open(str(tmp_path / db))
    uppzy = UppzyClient(base_url=sim.base_url, api_key=Secret(api_key), site_id="demo-site",
                        retry=retry or RetryPolicy.no_wait(), timeouts=Timeouts(1, 2, 3))
    relay = build_relay(settings, store, uppzy, clock=clock, tuning=tuning)
    console = QuietConsole(user_id)
    relay.register(console)
    await relay.start(reaper=False)
    return Harness(relay, console, store, uppzy, sim, settings)


async def close(h: Harness) -> None:
    """Stop everything the harness started, once (the simulator belongs to its fixture): the process ends."""
    if h.closed:
        return
    h.closed = True
    await h.relay.stop()
    await h.uppzy.aclose()
    await h.store.close()


Build = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness(tmp_path: Path, sim: Simulator) -> AsyncIterator[Build]:
    """Factory for started relays on one database in tmp_path; whatever a test left running is closed after it."""
    made: list[Harness] = []

    async def factory(**kwargs: Any) -> Harness:
        h = await build(tmp_path, sim, **kwargs)
        made.append(h)
        return h

    yield factory
    for h in made:
        await close(h)
