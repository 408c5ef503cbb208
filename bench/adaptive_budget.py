"""Poll schedule and adaptive status budget, against the simulator, in one invocation.

Run: `python -m bench.adaptive_budget`. Two parts, each bot with a fresh simulator and SQLite database in this
process (the relay as build_relay wires it, answers recorded by a platform that posts nowhere):

1. Schedule, budget not binding: bursts of questions whose answers are ready 2-6 s after submit; status calls per
   answer and the delay from "ready" to "posted", p50 / p95. A cold burst (fresh process, the prior only), then a
   warm ones (same process, after it). The guide's 1-s loop (aiohttp) runs beside it on the same bursts.
2. Adaptive budget: a burst that needs more than the hidden limit (the simulator answers 429 above `--limit` status
   calls per second), the adaptive bot (UPPZY_POLL_RATE=`--ceiling`, a ceiling) vs a bot configured with exactly
   the limit (UPPZY_POLL_RATE=`--limit`, starting there).

The schedule part also runs on an older checkout (`PYTHONPATH=<checkout> python <this file> --schedule-only`, from
the checkout's directory) for a before/after comparison: it uses only what both have.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

KEY, SITE = "bench-key", "demo-site"


class _Recorder:
    """A ChatPlatform that remembers when each answer was posted."""

    platform = "bench"

    def __init__(self) -> None:
        self.posted: dict[str, tuple[float, str]] = {}
        self.notices: dict[str, str] = {}

    async def show_working(self, target: Any) -> None:
        """Nothing to show."""

    async def clear_working(self, target: Any) -> None:
        """Nothing to clear."""

    async def post_answer(self, target: Any, answer: Any, *, recovering: bool = False) -> list[str]:
        """Record the post time against the question."""
        self.posted.setdefault(target.message_id, (time.monotonic(), answer.request_id))
        return [f"a-{target.message_id}"]

    async def post_notice(self, target: Any, notice: Any) -> None:
        """Record a failure notice."""
        self.notices.setdefault(target.message_id, notice.kind.value)

    async def escalate(self, target: Any, escalation_target: str, answer_message_id: str) -> None:
        """Not used."""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclasses.dataclass
class Row:
    """One bot on one burst."""

    name: str
    asked: int
    answered: int
    seconds: float
    status_calls: int
    limited: int
    delays: list[float]
    found: list[float]
    rates: list[float] = dataclasses.field(default_factory=list)
    note: str = ""

    def cells(self) -> list[str]:
        """Table cells."""
        return [self.name, f"{self.answered}/{self.asked}", f"{self.answered / self.seconds:.1f}",
                f"{self.status_calls}", f"{self.status_calls / max(1, self.answered):.2f}",
                f"{100 * self.limited / max(1, self.status_calls):.2f}%",
                f"{self.rates[-1]:.1f} / {statistics.fmean(self.rates):.1f}" if self.rates else "—",
                f"{_pct(self.found, 0.5):.2f} / {_pct(self.found, 0.95):.2f}",
                f"{_pct(self.delays, 0.5):.2f} / {_pct(self.delays, 0.95):.2f}"]


HEADER = ["bot", "answered", "answers/s", "status calls", "calls / answer", "429 share", "rate final / mean",
          "found after ready p50 / p95 (s)", "posted after ready p50 / p95 (s)"]


def _table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    lines += [f"({r.name}: {r.note})" for r in rows if r.note]
    return "\n".join(lines)


async def _relay_bursts(name: str, bursts: list[int], *, latency: tuple[float, float], ceiling: float,
                        start: float | None, limit: float | None, gap: float = 0.0) -> list[Row]:
    """Bursts of questions through one relay (its own simulator and database); a row per burst."""
    from bots.runner import build_relay
    from core.config import Secret, Settings
    from core.metrics import Metrics
    from core.models import InboundMessage, ReplyTarget
    from core.sqlite_store import SqliteStore
    from core.tuning import Tuning
    from core.uppzy import UppzyClient
    from simulator import Simulator, SimulatorConfig

    config: dict[str, Any] = {"api_key": KEY, "sites": (SITE,), "latency": latency, "seed": 7}
    if limit is not None:
        config["status_rate_limit"] = limit
    sim = Simulator(SimulatorConfig(**config))
    base = await sim.start()
    tuning: dict[str, Any] = {}
    if start is not None and "poll_rate_start" in {f.name for f in dataclasses.fields(Tuning)}:
        tuning["poll_rate_start"] = start
    settings = Settings(uppzy_api_key=Secret(KEY), uppzy_site_id=SITE, uppzy_base_url=base, uppzy_poll_rate=ceiling)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(os.path.join(tmp, "bench.db"))
        uppzy = UppzyClient(base_url=base, api_key=Secret(KEY), site_id=SITE, max_connections=64)
        metrics = Metrics()
        relay = build_relay(settings, store, uppzy, metrics=metrics, tuning=Tuning(**tuning))
        recorder = _Recorder()
        relay.register(recorder)  # type: ignore[arg-type]
        await relay.start(reaper=False)
        offset = 0
        for n in bursts:
            calls_before = len(sim.requests)
            rates: list[float] = []
            started = time.monotonic()
            for i in range(offset, offset + n):
                target = ReplyTarget("bench", "w", f"c{i}", f"c{i}", f"q{i}", f"u{i}")
                await relay.handle_message(InboundMessage(target=target, text="how do returns work?",
                                                          event_key=f"q{i}"))
            keys = {f"q{i}" for i in range(offset, offset + n)}
            while sum(1 for k in keys if k in recorder.posted or k in recorder.notices) < n:
                rate = metrics.registry.get_sample_value("uppzy_bot_poll_rate")
                if rate is not None:
                    rates.append(rate)
                if time.monotonic() - started > 600:
                    break
                await asyncio.sleep(0.25)
            done = [recorder.posted[k] for k in keys if k in recorder.posted]
            seconds = max(at for at, _ in done) - started if done else float("nan")
            calls = [r for r in sim.requests[calls_before:] if r.endpoint == "chat_status"]
            delays = [at - sim.chats[rid].ready_at for at, rid in done]
            found = [(sim.chats[rid].ready_seen_at or at) - sim.chats[rid].ready_at for at, rid in done]
            model = getattr(relay.parts.poller, "model", None)
            note = f"first poll at {model(SITE).first_poll_offset():.2f} s" if model else ""
            rows.append(Row(f"{name}, burst {len(rows) + 1}", n, len(done), seconds, len(calls),
                            sum(1 for r in calls if r.status == 429), delays, found, rates, note))
            offset += n
            await asyncio.sleep(gap)
        await relay.stop()
        await uppzy.aclose()
        await store.close()
    await sim.stop()
    return rows


async def _loop_bursts(bursts: list[int], latency: tuple[float, float], gap: float) -> list[Row]:
    """The guide's loop on aiohttp: a task per question, status every second until done."""
    import aiohttp

    from simulator import Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig(api_key=KEY, sites=(SITE,), latency=latency, seed=7))
    base = await sim.start()
    rows: list[Row] = []
    async with aiohttp.ClientSession(base + "/", headers={"X-API-Key": KEY},
                                     connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(i: int, done: list[tuple[float, str]]) -> None:
            async with http.post(f"m2m/sites/{SITE}/chat/async", json={
                    "session_id": f"s{i}", "message": "how do returns work?"}) as res:
                request_id = (await res.json())["request_id"]
            for _ in range(120):
                async with http.get(f"m2m/sites/{SITE}/chat/requests/{request_id}") as res:
                    status = await res.json()
                if status.get("status") in ("completed", "failed"):
                    done.append((time.monotonic(), request_id))
                    return
                await asyncio.sleep(1)

        offset = 0
        for n in bursts:
            calls_before = len(sim.requests)
            done: list[tuple[float, str]] = []
            started = time.monotonic()
            await asyncio.gather(*(one(i, done) for i in range(offset, offset + n)))
            calls = [r for r in sim.requests[calls_before:] if r.endpoint == "chat_status"]
            rows.append(Row(f"1-s loop (aiohttp), burst {len(rows) + 1}", n, len(done),
                            max(at for at, _ in done) - started, len(calls), 0,
                            [at - sim.chats[rid].ready_at for at, rid in done],
                            [(sim.chats[rid].ready_seen_at or at) - sim.chats[rid].ready_at for at, rid in done]))
            offset += n
            await asyncio.sleep(gap)
    await sim.stop()
    return rows


async def schedule_part(args: argparse.Namespace) -> list[Row]:
    """Part 1: budget not binding (a ceiling far above need, starting there)."""
    bursts = [args.schedule_burst] * args.schedule_bursts
    rows = await _relay_bursts("bot", bursts, latency=(2.0, 6.0), ceiling=5000.0, start=5000.0, limit=None, gap=2.0)
    if not args.no_loop:
        rows += await _loop_bursts(bursts, (2.0, 6.0), 2.0)
    return rows


async def budget_part(args: argparse.Namespace) -> list[Row]:
    """Part 2: the hidden limit; adaptive vs exactly the limit."""
    latency = (0.5, 1.5)
    adaptive = await _relay_bursts(f"adaptive (ceiling {args.ceiling:g})", [args.burst], latency=latency,
                                   ceiling=args.ceiling, start=None, limit=args.limit)
    exact = await _relay_bursts(f"exactly {args.limit:g}/s", [args.burst], latency=latency, ceiling=args.limit,
                                start=args.limit, limit=args.limit)
    return adaptive + exact


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000, help="questions in the hidden-limit burst")
    parser.add_argument("--limit", type=float, default=50.0, help="the simulator's hidden status-call limit (/s)")
    parser.add_argument("--ceiling", type=float, default=200.0, help="UPPZY_POLL_RATE of the adaptive bot")
    parser.add_argument("--schedule-burst", type=int, default=400, help="questions per burst in the schedule part")
    parser.add_argument("--schedule-bursts", type=int, default=4, help="bursts in the schedule part (cold, warm...)")
    parser.add_argument("--schedule-only", action="store_true", help="only part 1 (runs on older checkouts too)")
    parser.add_argument("--no-loop", action="store_true", help="part 1 without the 1-s loop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the 429s the adaptive bot meets are counted, not logged
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at start\n")
    print(f"Part 1: schedule, budget not binding; latency 2-6 s; {args.schedule_bursts} bursts of "
          f"{args.schedule_burst} (the first on a fresh process), 2 s apart\n")
    print(_table(asyncio.run(schedule_part(args))), flush=True)
    if args.schedule_only:
        return 0
    print(f"\nPart 2: hidden limit {args.limit:g} status calls/s (429 + Retry-After above it); a burst of "
          f"{args.burst}; latency 0.5-1.5 s\n")
    rows = asyncio.run(budget_part(args))
    print(_table(rows))
    adaptive, exact = rows
    share = adaptive.limited / max(1, adaptive.status_calls)
    ratio = (adaptive.answered / adaptive.seconds) / (exact.answered / exact.seconds)
    print(f"\nadaptive / exact throughput: {ratio:.2f} (target >= 0.90); adaptive 429 share {100 * share:.2f}% "
          f"(target < 1%); final rate {adaptive.rates[-1] if adaptive.rates else float('nan'):.1f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
