"""Slack burst benchmark: 500 mentions through Socket Mode at once, with the real SlackBot, Relay and simulator.

Run: `python -m bench.slack_burst` (options: --mentions, --latency MIN-MAX, --seed, --poll-rate, --in-process).
The same burst first goes to a bare slack_sdk Socket Mode client that acks every envelope on arrival: the floor.

FakeSlack and the Uppzy simulator run in this process. The bot (SlackBot + Relay + a temp SQLite store, built
as `uppzy-bot run` builds them) runs in a worker process by default, as it would in production where Slack
and Uppzy are remote; `--in-process` puts it on the same event loop instead, where every ack also waits for
the fake's and the simulator's work. Every timestamp compared is taken in this process with time.monotonic():
ack latency is fake.acks[...]["at"] minus fake.event_sent_at[...]; answer-ready is the simulator's ready_at;
posted is when chat.postMessage reached the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bots.runner import build_relay, build_uppzy
from bots.slack.app import SlackBot
from core.config import Secret, Settings
from core.sqlite_store import SqliteStore
from simulator import Simulator, SimulatorConfig
from tests.fakes.slack_fake import FakeSlack

KEY, SITE = "bench-key", "demo-site"


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def _settings(uppzy_url: str, slack_url: str, fake: FakeSlack | None, poll_rate: float) -> Settings:
    tokens = fake or FakeSlack()  # the fake's default tokens, also known to the worker
    return Settings(
        uppzy_api_key=Secret(KEY), uppzy_site_id=SITE, uppzy_base_url=uppzy_url, uppzy_poll_rate=poll_rate,
        slack_bot_token=Secret(tokens.bot_token), slack_app_token=Secret(tokens.app_token),
        slack_api_base_url=slack_url,
    )


@contextlib.asynccontextmanager
async def _bot(settings: Settings, db: str):
    """The production composition: store, Uppzy client, relay, SlackBot; stopped on exit."""
    store = await SqliteStore.open(db)
    uppzy = build_uppzy(settings)
    relay = build_relay(settings, store, uppzy)
    bot = SlackBot(settings, relay)
    await relay.start(reaper=False)
    await bot.start()
    try:
        yield relay
    finally:
        await bot.stop()
        await relay.stop()
        await uppzy.aclose()
        await store.close()


async def _bare_worker(slack_url: str) -> None:
    """The floor: a bare slack_sdk Socket Mode client that acks every envelope on arrival and does nothing else."""
    tokens = FakeSlack()  # only its default tokens
    web = AsyncWebClient(base_url=slack_url, token=tokens.bot_token)
    client = SocketModeClient(app_token=tokens.app_token, web_client=web)

    async def ack(socket: SocketModeClient, req: SocketModeRequest) -> None:
        await socket.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(ack)  # type: ignore[arg-type]
    await client.connect()
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await client.close()


async def _acks_only(fake: FakeSlack, mentions: int) -> dict[str, float]:
    """Send the burst to the bare client and measure its acks (it answers nothing)."""
    envelopes = [await fake.send_event(fake.app_mention_event(f"U{i:05d}", f"C{i % 20:03d}", f"question {i}"))
                 for i in range(mentions)]
    await fake.wait_until(lambda: all(e in fake.acks for e in envelopes), timeout=30, what="every ack")
    ack_ms = [(fake.acks[e]["at"] - fake.event_sent_at[e]) * 1000 for e in envelopes]
    sent = sorted(fake.event_sent_at[e] for e in envelopes)
    return {"ack_p50": _quantile(ack_ms, 0.5), "ack_p99": _quantile(ack_ms, 0.99), "ack_max": max(ack_ms),
            "spread_ms": (sent[-1] - sent[0]) * 1000}


async def floor(mentions: int) -> dict[str, float]:
    """The bare client's acks for the same burst, in a worker process like the bot's."""
    fake = FakeSlack()
    await fake.start()
    try:
        async with _worker_process(fake, "--bare-worker", fake.api_url):
            return await _acks_only(fake, mentions)
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def _worker_process(fake: FakeSlack, *argv: str):
    """`python -m bench.slack_burst ARGV` connected to `fake`; it ends when we close its stdin."""
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.slack_burst", *argv,
                                                  stdin=asyncio.subprocess.PIPE)
    try:
        await fake.wait_connected(timeout=30)
        yield worker
    finally:
        assert worker.stdin is not None
        worker.stdin.close()
        await asyncio.wait_for(worker.wait(), 30)


async def _worker(uppzy_url: str, slack_url: str, db: str, poll_rate: float) -> None:
    """Run the bot until the parent closes our stdin."""
    async with _bot(_settings(uppzy_url, slack_url, None, poll_rate), db):
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def run(mentions: int, latency: tuple[float, float], seed: int, poll_rate: float,
              in_process: bool) -> dict[str, Any]:
    """One burst; returns the measurements."""
    sim = Simulator(SimulatorConfig(api_key=KEY, sites=(SITE,), latency=latency, seed=seed))
    base = await sim.start()
    fake = FakeSlack()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        try:
            if in_process:
                async with _bot(_settings(base, fake.api_url, fake, poll_rate), db) as relay:
                    await fake.wait_connected()
                    result = await _burst(fake, sim, mentions)
                    result["status_calls"] = relay.poller.status_calls
                    return result
            async with _worker_process(fake, "--worker", base, fake.api_url, db, str(poll_rate)):
                return await _burst(fake, sim, mentions)
        finally:
            await fake.stop()
            await sim.stop()


async def _burst(fake: FakeSlack, sim: Simulator, mentions: int) -> dict[str, Any]:
    started = time.monotonic()
    envelopes: list[str] = []
    sent_at: dict[str, float] = {}  # question ts -> when its envelope was sent
    ts_of_session: dict[str, str] = {}
    for i in range(mentions):  # one user per mention, so no session serialises another's question
        user, channel = f"U{i:05d}", f"C{i % 20:03d}"
        event = fake.app_mention_event(user, channel, f"question {i}: how do returns work?")
        envelope = await fake.send_event(event)
        envelopes.append(envelope)
        sent_at[event["ts"]] = fake.event_sent_at[envelope]
        ts_of_session[f"slack-user-{user}-{channel}"] = event["ts"]
    await fake.wait_until(lambda: all(e in fake.acks for e in envelopes), timeout=30, what="every ack")
    last_ack = max(fake.acks[e]["at"] for e in envelopes)
    ack_ms = [(fake.acks[e]["at"] - fake.event_sent_at[e]) * 1000 for e in envelopes]

    def posts(answers: bool) -> list[Any]:
        return [c for c in fake.calls_to("chat.postMessage") if c.ok and bool(c.args.get("metadata")) == answers]

    await fake.wait_until(lambda: len({c.args["thread_ts"] for c in posts(True)}) + len(posts(False)) >= mentions,
                          timeout=600, what="every answer")
    await asyncio.sleep(2.0)  # a late duplicate would show up here
    wall = time.monotonic() - started
    counts = Counter(c.args.get("thread_ts") for c in posts(True))
    notices = Counter(c.args.get("thread_ts") for c in posts(False))
    first_post: dict[str, float] = {}
    for call in posts(True):
        first_post.setdefault(call.args["thread_ts"], call.at)
    ready_to_post, ready_to_seen, seen_to_post, ask_to_post = [], [], [], []
    for chat in sim.chats.values():
        ts = ts_of_session.get(chat.session_id)
        if ts in first_post:
            ready_to_post.append((first_post[ts] - chat.ready_at) * 1000)
            ask_to_post.append(first_post[ts] - sent_at[ts])
            if chat.ready_seen_at is not None:  # the first status poll that found the answer ready
                ready_to_seen.append((chat.ready_seen_at - chat.ready_at) * 1000)
                seen_to_post.append((first_post[ts] - chat.ready_seen_at) * 1000)
    return {
        "envelopes": mentions, "acked": sum(1 for e in envelopes if e in fake.acks),
        "ack_p50": _quantile(ack_ms, 0.5), "ack_p99": _quantile(ack_ms, 0.99), "ack_max": max(ack_ms),
        "answered_during_acks": sum(1 for c in posts(True) if c.at <= last_ack),
        "answered_once": sum(1 for ts in sent_at if counts[ts] == 1),
        "duplicates": sum(max(0, counts[ts] - 1) for ts in sent_at),
        "lost": sum(1 for ts in sent_at if counts[ts] == 0 and notices[ts] == 0),
        "notices": sum(notices.values()),
        "ready_p50": _quantile(ready_to_post, 0.5), "ready_p95": _quantile(ready_to_post, 0.95),
        "poll_p50": _quantile(ready_to_seen, 0.5), "poll_p95": _quantile(ready_to_seen, 0.95),
        "post_p50": _quantile(seen_to_post, 0.5), "post_p95": _quantile(seen_to_post, 0.95),
        "ask_p50": _quantile(ask_to_post, 0.5), "ask_p95": _quantile(ask_to_post, 0.95),
        "status_calls": len(sim.calls("chat_status")), "wall": wall,
    }


def table(r: dict[str, Any], latency: tuple[float, float], poll_rate: float, in_process: bool,
          bare: dict[str, float] | None = None) -> str:
    """The results as a markdown table."""
    rows = [
        ("bot process", "same event loop as the fakes" if in_process else "separate worker process"),
        ("envelopes sent (app_mention, Socket Mode)", f"{r['envelopes']}"),
        ("acked", f"{r['acked']}"),
        ("ack latency p50 / p99 (max)", f"{r['ack_p50']:.1f} / {r['ack_p99']:.1f} ms ({r['ack_max']:.1f} ms)"),
        *([("  the floor: a bare slack_sdk client acking on arrival, same burst",
            f"{bare['ack_p50']:.1f} / {bare['ack_p99']:.1f} ms ({bare['ack_max']:.1f} ms); the fake sent the burst "
            f"in {bare['spread_ms']:.0f} ms")] if bare else []),
        ("answers posted before the last ack", f"{r['answered_during_acks']}"),
        ("answered exactly once", f"{r['answered_once']}"),
        ("duplicates", f"{r['duplicates']}"),
        ("lost (no answer, no notice)", f"{r['lost']}"),
        ("failure notices", f"{r['notices']}"),
        ("answer ready → chat.postMessage p50 / p95", f"{r['ready_p50']:.0f} / {r['ready_p95']:.0f} ms"),
        ("  of which ready → first poll that saw it (core poller)", f"{r['poll_p50']:.0f} / {r['poll_p95']:.0f} ms"),
        ("  of which that poll → chat.postMessage (store + Slack post)",
         f"{r['post_p50']:.0f} / {r['post_p95']:.0f} ms"),
        ("mention → answer posted p50 / p95", f"{r['ask_p50']:.1f} / {r['ask_p95']:.1f} s"),
        ("Uppzy status calls (poll budget)", f"{r['status_calls']} ({poll_rate:g}/s)"),
        ("wall time", f"{r['wall']:.1f} s (simulated latency {latency[0]:g}-{latency[1]:g} s)"),
    ]
    return "\n".join(["| measure | result |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one burst and print the table (exit 1 on a lost, duplicated or unacked mention)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.ERROR)
    if argv[:1] == ["--worker"]:
        asyncio.run(_worker(argv[1], argv[2], argv[3], float(argv[4])))
        return 0
    if argv[:1] == ["--bare-worker"]:
        asyncio.run(_bare_worker(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.slack_burst", description=__doc__.split("\n")[0])
    parser.add_argument("--mentions", type=int, default=500)
    parser.add_argument("--latency", type=_range, default=(2.0, 6.0), metavar="MIN-MAX")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--poll-rate", type=float, default=Settings().uppzy_poll_rate,
                        help="Uppzy status calls per second (UPPZY_POLL_RATE; default %(default)s)")
    parser.add_argument("--in-process", action="store_true", help="run the bot on the fakes' event loop")
    args = parser.parse_args(argv)
    bare = asyncio.run(floor(args.mentions))
    result = asyncio.run(run(args.mentions, args.latency, args.seed, args.poll_rate, args.in_process))
    print(table(result, args.latency, args.poll_rate, args.in_process, bare))
    print(f"\nack p99 {result['ack_p99']:.1f} ms, the bare client's {bare['ack_p99']:.1f} ms (+"
          f"{result['ack_p99'] - bare['ack_p99']:.1f} ms); every mention answered once: "
          f"{'yes' if result['answered_once'] == result['envelopes'] else 'no'}")
    ok = result["acked"] == result["envelopes"] and result["duplicates"] == 0 and result["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
