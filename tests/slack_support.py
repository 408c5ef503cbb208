"""Shared rig for the Slack tests: FakeSlack + the Uppzy simulator + a real Relay/SqliteStore + the real SlackBot.

Import the fixtures into a test module (``from tests.slack_support import fake, make_rig, rig  # noqa: F401``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.runner import build_relay
from bots.slack.app import EVENTS_PATH, SlackBot
from core.backoff import Backoff
from core.config import Secret, Settings
from core.latency import LatencyModel
from core.relay import Relay
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.conftest import SIM_KEY, SITE_ID
from tests.fakes.slack_fake import FakeSlack, event_callback_body, sign

__all__ = ["SlackRig", "fake", "make_rig", "parse_manifest", "rig"]


class SlackRig:
    """One running bot against the fakes, with helpers that speak in Slack terms."""

    def __init__(self, fake: FakeSlack, sim: Simulator, relay: Relay, bot: SlackBot, http_url: str | None) -> None:
        self.fake = fake
        self.sim = sim
        self.relay = relay
        self.bot = bot
        self.http_url = http_url

    async def mention(self, text: str, *, user: str = "U1", channel: str = "C1", thread_ts: str | None = None,
                      **kwargs: Any) -> dict[str, Any]:
        """Send an app_mention over Socket Mode and return the event."""
        event = self.fake.app_mention_event(user, channel, text, thread_ts=thread_ts)
        await self.fake.send_event(event, **kwargs)
        return event

    async def message(self, text: str, *, user: str = "U1", channel: str = "C1", **kwargs: Any) -> dict[str, Any]:
        """Send a plain message event over Socket Mode and return the event."""
        event = self.fake.message_event(user, channel, text, **kwargs)
        await self.fake.send_event(event)
        return event

    def answers(self, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Answer messages the bot posted (they carry delivery metadata), optionally in one thread."""
        return [m for m in self.fake.posted_messages()
                if m.get("metadata") and (thread_ts is None or m.get("thread_ts") == thread_ts)]

    def posts_in(self, thread_ts: str) -> list[dict[str, Any]]:
        """Every message the bot posted in one thread (answers and notices)."""
        return [m for m in self.fake.posted_messages() if m.get("thread_ts") == thread_ts]

    async def wait_answer(self, thread_ts: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` answer messages are in the thread."""
        return await self.fake.wait_until(lambda: (a := self.answers(thread_ts)) and len(a) >= count and a,
                                          timeout=timeout, what=f"{count} answer(s) in thread {thread_ts}")

    async def wait_post(self, thread_ts: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the first message the bot posts in a thread."""
        posts = await self.fake.wait_until(lambda: self.posts_in(thread_ts), timeout=timeout,
                                           what=f"a post in thread {thread_ts}")
        return posts[0]

    def questions(self) -> list[dict[str, Any]]:
        """What reached Uppzy's async chat endpoint."""
        return [c.body for c in self.sim.calls("chat_async")]

    async def drain(self, *, channel: str = "C1", user: str = "U1", timeout: float = 5.0) -> dict[str, Any]:
        """Prove that every event sent so far has been handled, without asking Uppzy; returns the probe event.

        The probe is a blank mention on the same socket (in a channel where mentions are answered): the bot
        replies at once, in the probe's own thread, with the 'empty message' notice. Envelopes arrive in the
        order they were sent and bolt starts their handlers in that order, each through the same store, so once
        the probe's notice is posted the earlier events have been handled; the idle relay awaited next means the
        work they started is finished too. Only then is "nothing more happened" worth asserting.
        """
        probe = await self.mention("", user=user, channel=channel)
        await self.fake.wait_until(lambda: self.posts_in(probe["ts"]), timeout=timeout,
                                   what=f"the probe's notice in thread {probe['ts']}")
        await self.relay.wait_idle(timeout)
        return probe

    async def command(self, text: str, *, user: str = "U1", channel: str = "C1") -> str:
        """Run /uppzy over Socket Mode and return the ephemeral reply posted to the response_url."""
        envelope = await self.fake.send_slash_command("/uppzy", text, user_id=user, channel_id=channel)
        url = self.fake.envelopes[envelope]["payload"]["response_url"]
        bodies = await self.fake.wait_until(lambda: self.fake.response_urls[url], what="/uppzy reply")
        await self.fake.wait_for_ack(envelope)  # bolt polls for a command's ack, so it may trail the reply
        assert bodies[0]["response_type"] == "ephemeral"
        return str(bodies[0]["text"])

    async def post_http(self, body: dict[str, Any] | str, *, secret: str | None = None, timestamp: int | None = None,
                        form: bool = False, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """POST a signed request to the bot's /slack/events and return (status, body)."""
        assert self.http_url is not None
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = "application/x-www-form-urlencoded" if form else "application/json"
        signed = {**sign(secret or self.fake.signing_secret, raw, timestamp), "Content-Type": kind, **(headers or {})}
        async with aiohttp.ClientSession() as session, session.post(self.http_url, data=raw, headers=signed) as r:
            return r.status, await r.text()

    def event_body(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """An event_callback body for HTTP mode, remembered by the fake like a delivered event."""
        self.fake.remember_message(event)
        return event_callback_body(event, team_id=self.fake.team_id, event_id=event_id, api_app_id=self.fake.app_id,
                                   bot_user_id=self.fake.bot_user_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack, stopped after the test."""
    async with FakeSlack() as server:
        yield server


RigFactory = Callable[..., Awaitable[SlackRig]]


@pytest.fixture
async def make_rig(fake: FakeSlack, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Factory: ``await make_rig(http=False, admins=("U9",), working_after=None, **Settings overrides)`` starts the
    real bot (`working_after`: Tuning's delay before the ⏳, production's by default)."""
    started: list[tuple[SlackBot, Relay, SqliteStore]] = []

    async def factory(*, http: bool = False, admins: tuple[str, ...] = (), working_after: float | None = None,
                      **overrides: Any) -> SlackRig:
        settings = Settings(**{
            "uppzy_api_key": Secret(SIM_KEY), "uppzy_site_id": SITE_ID,
            "slack_bot_token": Secret(fake.bot_token),
            "slack_app_token": None if http else Secret(fake.app_token),
            "slack_signing_secret": Secret(fake.signing_secret), "slack_api_base_url": fake.api_url,
            "slack_admin_user_ids": frozenset(admins), **overrides,
        })
        store = await SqliteStore.open(str(tmp_path / f"slack-{len(started)}.db"))
        # The simulator answers at once, so poll early and often; retry a failed post quickly.
        relay = build_relay(settings, store, uppzy, tuning=Tuning(
            poll_interval=0.05, delivery=Backoff(attempts=3, initial=0.2, maximum=0.5),
            latency=LatencyModel(prior=(0.05,), floor=0.05), first_poll_floor=0.05,
            **({} if working_after is None else {"working_after": working_after})))
        bot = SlackBot(settings, relay, ping_interval=1.0)
        await relay.start(reaper=False)
        started.append((bot, relay, store))
        await bot.start()
        url = None
        if http:
            url = f"http://127.0.0.1:{await bot.serve_http('127.0.0.1', 0)}{EVENTS_PATH}"
        else:
            await fake.wait_connected()
        return SlackRig(fake, sim, relay, bot, url)

    yield factory
    for bot, relay, store in reversed(started):
        await bot.stop()
        await relay.stop()
        await store.close()


@pytest.fixture
async def rig(make_rig: RigFactory) -> SlackRig:
    """The bot in Socket Mode with default settings and U9 as a configured admin."""
    return await make_rig(admins=("U9",))


_KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z_][\w.-]*):(?: +(?P<value>.*))?$")


def _scalar(raw: str) -> Any:
    raw = raw.split(" #", 1)[0].strip()
    if raw[:1] in ("'", '"'):
        return raw[1:-1]
    return {"true": True, "false": False}.get(raw, raw)


def parse_manifest(source: str) -> dict[str, Any]:
    """A minimal YAML reader for manifest.yml (maps, lists of scalars, lists of maps); PyYAML is not installed."""
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    root: dict[str, Any] = {}
    stack: list[tuple[int, Any]] = [(-1, root)]
    for index, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        match = _KEY.match(line)
        if line.lstrip(" ").startswith("- "):
            if not match:  # "- scalar"
                parent.append(_scalar(line.strip()[2:]))
                continue
            entry: dict[str, Any] = {}  # "- key: value" opens a map inside the list
            parent.append(entry)
            stack.append((indent, entry))
            parent, indent = entry, indent + 2
        assert match, f"manifest line not understood: {line!r}"
        key, value = match.group("key"), match.group("value")
        if value is not None and value.strip():
            parent[key] = _scalar(value)
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        child: Any = [] if following.lstrip(" ").startswith("- ") else {}
        parent[key] = child
        stack.append((indent, child))
    return root
