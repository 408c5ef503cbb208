"""Shared pieces of the fault suite: a loopback door to the simulator that can cut connections, the
"nothing lost, nothing doubled" check applied to what a platform fake received (only after a drain probe proved
the bot is done), and `wait_until` for polling state that no fake announces.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bots.slack.format import to_mrkdwn
from core import messages
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import GUILD_ID, TEXT_ID, DiscordHarness, build_world
from tests.fakes.discord_fake import FakeDiscord

__all__ = [
    "FRIENDLY",
    "LEAKS",
    "MEMBER_BASE",
    "CuttingFront",
    "asked_once",
    "check_texts",
    "discord_ask",
    "discord_harness",
    "discord_outcomes",
    "marker",
    "script_answers",
    "settle_discord",
    "settle_slack",
    "slack_burst",
    "slack_outcomes",
    "tag",
    "wait_until",
]

MEMBER_BASE = 900_000_000_000_000_000  # Discord members MEMBER_BASE + i, one per question of a burst

# Every line core may post instead of an answer; anything else in a thread is a bug.
FRIENDLY = (messages.DEFAULT_FALLBACK, messages.TIMED_OUT, messages.UNAVAILABLE, messages.LOST_IN_RESTART)
# What must never reach a user: status codes, stack traces, exception names, keys, tokens, request ids.
LEAKS = re.compile(r"\b[45]\d\d\b|Traceback|Exception|Error\b|\bHTTP\b|X-API-Key|api.?key|\breq_[0-9a-f]{6,}|"
                   r"sim-key|xox[abpr]-|xapp-", re.IGNORECASE)


@dataclass
class _Cut:
    path_part: str
    times: int
    after_processing: bool


class CuttingFront:
    """The simulator's own app served on a second loopback port, behind one outer layer that can reset the TCP
    connection of chosen requests (before the simulator saw them, or after it acted but before the reply).

    It shares the Simulator object, so `sim.calls()`, `sim.chats` and `sim.inject()` see every request that
    got through. `close()` stops listening, so the port refuses connections until `open()` binds it again.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cuts: list[_Cut] = []
        self.cut_count = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def cut_next(self, path_part: str, *, times: int = 1, after_processing: bool = False) -> None:
        """Reset the connection of the next `times` requests whose path contains `path_part`."""
        self.cuts.append(_Cut(path_part, times, after_processing))

    @property
    def base_url(self) -> str:
        """UPPZY_BASE_URL for a client that should go through this door."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def open(self) -> str:
        """Listen (on the same port as before, if there was one)."""
        app = self.sim.app()
        app.middlewares.insert(0, self._middleware)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.base_url

    async def close(self) -> None:
        """Stop listening: connections to the port are refused from now on."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _take(self, path: str) -> _Cut | None:
        for cut in self.cuts:
            if cut.times > 0 and cut.path_part in path:
                cut.times -= 1
                return cut
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        cut = self._take(request.path)
        if cut is None:
            return await handler(request)
        response = await handler(request) if cut.after_processing else web.Response(status=204)
        self.cut_count += 1
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, a real "connection reset by peer"
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.close()
        return response


def tag(i: int) -> str:
    """A marker no other question of a burst contains, so scripts and Uppzy's records match one question each."""
    return f"[q{i:02d}]"


def marker(text: str) -> str:
    """The [qNN] marker of a question as the platform delivered it ('<@bot> [qNN] …')."""
    return text.split()[1]


def script_answers(sim: Simulator, n: int) -> None:
    """Question i of a burst is answered 'Answer [qii]: …' by the simulator."""
    for i in range(n):
        sim.script(tag(i), f"Answer {tag(i)}: returns are free.")


def asked_once(sim: Simulator, texts: Iterable[str]) -> None:
    """Uppzy received each of these questions (found by marker) exactly once."""
    for text in texts:
        sent = [c for c in sim.calls("chat_async") if marker(text) in c.body["message"]]
        assert len(sent) == 1, f"{marker(text)} reached Uppzy {len(sent)} times"


def check_texts(texts: Iterable[str]) -> None:
    """No posted text may carry a status code, a stack trace, an exception name, a key or a token."""
    for text in texts:
        leak = LEAKS.search(text)
        assert leak is None, f"posted text leaks {leak.group(0)!r}: {text!r}"


async def wait_until(condition: Callable[[], Any], *, timeout: float = 5.0, what: str | Callable[[], str] = "condition",
                     interval: float = 0.02) -> Any:
    """Poll `condition()` (plain or async) every `interval` seconds until it is truthy, and return it.

    For state no fake announces (the simulator's records, a database file, a subprocess's metrics); fails with
    `what` (a callable is asked for the description only then, so it can show the latest state).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(interval)


async def slack_burst(rig: Any, n: int) -> list[dict[str, Any]]:
    """`n` scripted mentions from `n` people in one channel (separate sessions, so they run side by side)."""
    script_answers(rig.sim, n)
    return [await rig.mention(f"{tag(i)} how do returns work?", user=f"U{100 + i}") for i in range(n)]


async def settle_slack(rig: Any, events: list[dict[str, Any]], timeout: float = 8.0) -> list[str]:
    """Wait for a post in every question's thread, then drain (a probe through the same socket, then an idle
    relay) so a second post, a redelivery's answer included, would already be there; return each outcome."""
    await rig.fake.wait_until(lambda: all(rig.posts_in(e["ts"]) for e in events), timeout=timeout,
                              what="a post in every question's thread")
    await rig.drain(timeout=timeout)
    kinds = slack_outcomes(rig.fake, events)
    for event, kind in zip(events, kinds, strict=True):
        if kind == "answer":
            assert marker(event["text"]) in rig.posts_in(event["ts"])[0]["text"], "an answer in the wrong thread"
    return kinds


def slack_outcomes(fake: Any, events: list[dict[str, Any]]) -> list[str]:
    """Per question: 'answer' or 'error' — asserting it got exactly one post in its thread, of a known kind."""
    friendly = {to_mrkdwn(line) for line in FRIENDLY}
    kinds = []
    for event in events:
        posts = [m for m in fake.posted_messages() if m.get("thread_ts") == event["ts"]]
        assert len(posts) == 1, f"question {event['text']!r} got {len(posts)} posts: {[p['text'] for p in posts]}"
        post = posts[0]
        check_texts([post["text"], *(str(b) for b in post.get("blocks") or [])])
        if post.get("metadata"):
            kinds.append("answer")
        else:
            assert post["text"] in friendly, f"unexpected notice {post['text']!r}"
            kinds.append("error")
    return kinds


@contextlib.asynccontextmanager
async def discord_harness(sim: Simulator, uppzy: UppzyClient, tmp_path: Path, *, members: int = 20,
                          **bot_kwargs: Any) -> AsyncIterator[DiscordHarness]:
    """The real DiscordBot + relay + store against a FakeDiscord world with `members` extra members."""
    async with FakeDiscord() as fake:
        build_world(fake)
        for i in range(members):
            fake.add_member(GUILD_ID, MEMBER_BASE + i, name=f"member{i}")
        harness = DiscordHarness(fake, sim, uppzy, tmp_path)
        # A burst needs more than the default 20 status polls per second to be answered without queueing.
        harness.settings = dataclasses.replace(harness.settings, uppzy_poll_rate=500.0)
        try:
            await harness.start(**bot_kwargs)
            yield harness
        finally:
            await harness.aclose()


async def discord_ask(h: DiscordHarness, i: int) -> dict[str, Any]:
    """Question i of a burst, mentioning the bot in the text channel, from member MEMBER_BASE + i."""
    return await h.fake.user_message(channel_id=TEXT_ID, guild_id=GUILD_ID, author_id=MEMBER_BASE + i,
                                     mentions_bot=True, content=f"<@{h.fake.bot_id}> {tag(i)} how do returns work?")


async def settle_discord(h: DiscordHarness, sent: list[dict[str, Any]]) -> list[str]:
    """Wait for a post in every question's thread, then drain (a probe DM through the same gateway, then an idle
    relay) so a second post, a replayed message's answer included, would already be there; return each outcome.
    The probe's reply is in its own DM channel, outside every count made here."""
    await h.fake.wait_for(lambda: all(h.posts(m["id"]) for m in sent), timeout=8, what="a post per question")
    await h.drain()
    kinds = discord_outcomes(h, sent)
    for message, kind in zip(sent, kinds, strict=True):
        if kind == "answer":
            assert marker(message["content"]) in h.posts(message["id"])[0]["content"], "an answer in the wrong thread"
    return kinds


def discord_outcomes(h: DiscordHarness, sent: list[dict[str, Any]]) -> list[str]:
    """Per question: 'answer' or 'error', asserting exactly one post in its thread and nothing leaked."""
    kinds = []
    for message in sent:
        posts = h.posts(message["id"])
        assert len(posts) == 1, f"{message['content']!r} got {[p['content'] for p in posts]}"
        check_texts([posts[0]["content"]])
        if posts[0]["components"]:
            kinds.append("answer")
        else:
            assert posts[0]["content"] in FRIENDLY, f"unexpected notice {posts[0]['content']!r}"
            kinds.append("error")
    assert h.posts(TEXT_ID) == [], "something was posted in the channel instead of a thread"
    return kinds
