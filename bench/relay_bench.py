"""Relay benchmark: the guide's literal polling pattern vs the relay, against the simulator, in one invocation.

Run: `python -m bench.relay_bench` (or `make bench`). Each variant runs in its own worker process so CPU seconds
and peak RSS are its own; the simulator runs in a third process. Clocks are CLOCK_MONOTONIC, shared by all three.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx  # the driver's own probes; the workers bring their own clients

KEY, SITE = "bench-key", "demo-site"


# ---- worker side --------------------------------------------------------------------------------------------


class _Recorder:
    """A ChatPlatform that remembers when each answer was posted, and how often."""

    platform = "bench"

    def __init__(self) -> None:
        self.posted: dict[str, list[tuple[float, str]]] = {}
        self.notices: dict[str, list[str]] = {}

    async def show_working(self, target: Any) -> None:
        """Nothing to show."""

    async def clear_working(self, target: Any) -> None:
        """Nothing to clear."""

    async def post_answer(self, target: Any, answer: Any, *, recovering: bool = False) -> list[str]:
        """Record the post time against the question."""
        self.posted.setdefault(target.message_id, []).append((time.monotonic(), answer.request_id))
        return [f"a-{target.message_id}"]

    async def post_notice(self, target: Any, notice: Any) -> None:
        """Record a failure notice."""
        self.notices.setdefault(target.message_id, []).append(notice.kind.value)

    async def escalate(self, target: Any, escalation_target: str, answer_message_id: str) -> None:
        """Not used."""


async def _run_relay(base: str, n: int, rate: float, db: str) -> dict[str, Any]:
    from bots.runner import build_relay
    from core.config import Secret, Settings
    from core.models import InboundMessage, ReplyTarget
    from core.sqlite_store import SqliteStore
    from core.uppzy import UppzyClient

    settings = Settings(uppzy_api_key=Secret(KEY), uppzy_site_id=SITE, uppzy_base_url=base, uppzy_poll_rate=rate)
    store = await SqliteStore.open(db)
    uppzy = UppzyClient(base_url=base, api_key=Secret(KEY), site_id=SITE, max_connections=64)
    relay = build_relay(settings, store, uppzy)
    recorder = _Recorder()
    relay.register(recorder)  # type: ignore[arg-type]
    await relay.start(reaper=False)
    started = time.monotonic()
    for i in range(n):
        target = ReplyTarget("bench", "w", f"c{i}", f"c{i}", f"q{i}", f"u{i}")
        await relay.handle_message(InboundMessage(target=target, text="how do returns work?", event_key=f"q{i}"))
    while len(recorder.posted) + len(recorder.notices) < n and time.monotonic() - started < 600:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await relay.stop()
    await uppzy.aclose()
    await store.close()
    return {"posted": recorder.posted, "notices": recorder.notices, "elapsed": elapsed}


async def _run_baseline(base: str, n: int) -> dict[str, Any]:
    """The guide's Pattern 2 taken literally: one task per message, status every 1 s, up to 120 times.

    It runs on aiohttp's client (cheaper per request than httpx) so the loop can really poll every second;
    a submit that fails is lost, as in the guide's code, which throws.
    """
    import aiohttp

    posted: dict[str, list[tuple[float, str]]] = {}
    notices: dict[str, list[str]] = {}
    lost: list[str] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(base + "/", headers={"X-API-Key": KEY}, connector=connector) as http:

        async def one(i: int) -> None:
            qid = f"q{i}"
            try:
                async with http.post(f"m2m/sites/{SITE}/chat/async", json={
                        "session_id": f"bench-user-u{i}-c{i}", "message": "how do returns work?"}) as res:
                    request_id = (await res.json())["request_id"]
            except Exception:
                lost.append(qid)
                return
            for _ in range(120):
                try:
                    async with http.get(f"m2m/sites/{SITE}/chat/requests/{request_id}") as res:
                        status = await res.json()
                except Exception:
                    status = {}
                if status.get("status") == "completed":
                    posted.setdefault(qid, []).append((time.monotonic(), request_id))
                    return
                if status.get("status") == "failed":
                    notices.setdefault(qid, []).append("failed")
                    return
                await asyncio.sleep(1)
            notices.setdefault(qid, []).append("timeout")

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.monotonic() - started
    return {"posted": posted, "notices": notices, "elapsed": elapsed, "lost": lost}


def worker(args: argparse.Namespace) -> None:
    """Run one variant and print its raw results as JSON on stdout."""
    if args.worker == "relay":
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(_run_relay(args.base, args.n, args.rate, os.path.join(tmp, "bench.db")))
    else:
        result = asyncio.run(_run_baseline(args.base, args.n))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    result["rss_mb"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


# ---- driver side --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    name: str
    n: int
    delivered: int
    lost: int
    doubled: int
    failed_notices: int
    p50: float
    p95: float
    status_per_answer: float
    peak_status_per_s: int
    rss_mb: float
    cpu_per_answer_ms: float
    wall: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _scenario(name: str, variant: str, n: int, rate: float, sim_args: list[str]) -> Row:
    port = _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "bots", "simulate", "--port", str(port), "--api-key", KEY,
                            "--site-id", SITE, *sim_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/_simulator/record", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "bench.relay_bench", "--worker", variant, "--base", base,
                              "--n", str(n), "--rate", str(rate)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        record = httpx.get(f"http://127.0.0.1:{port}/_simulator/record", timeout=30).json()
    finally:
        sim.terminate()
        sim.wait(10)
    ready = {c["request_id"]: c["ready_at"] for c in record["chats"]}
    delays = [posts[0][0] - ready[posts[0][1]] for posts in result["posted"].values() if posts[0][1] in ready]
    statuses = sorted(c["at"] for c in record["calls"] if c["endpoint"] == "chat_status")
    peak, j = 0, 0
    for i, t in enumerate(statuses):
        while statuses[j] <= t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    delivered = len(result["posted"])
    doubled = sum(len(p) - 1 for p in result["posted"].values()) + sum(
        1 for q in result["notices"] if q in result["posted"])
    answered_or_told = set(result["posted"]) | set(result["notices"])
    return Row(name, n, delivered, n - len(answered_or_told), doubled, len(result["notices"]),
               _pct(delays, 0.5), _pct(delays, 0.95), len(statuses) / max(1, delivered), peak,
               result["rss_mb"], 1000 * result["cpu"] / max(1, delivered), result["elapsed"])


def _table(rows: list[Row]) -> str:
    lines = ["| run | convs | delivered | lost | doubled | error notices | delay p50 | delay p95 | status/answer "
             "| peak status/s | peak RSS | CPU/answer | wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.n} | {r.delivered} | {r.lost} | {r.doubled} | {r.failed_notices} | "
                     f"{r.p50:.2f} s | {r.p95:.2f} s | {r.status_per_answer:.2f} | {r.peak_status_per_s} | "
                     f"{r.rss_mb:.0f} MB | {r.cpu_per_answer_ms:.2f} ms | {r.wall:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the table with ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.relay_bench", description=__doc__)
    parser.add_argument("--worker", choices=("relay", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=20.0, help=argparse.SUPPRESS)
    parser.add_argument("--small", type=int, default=1000, help="conversations in the non-binding run")
    parser.add_argument("--large", type=int, default=5000, help="conversations in the budget-bound run")
    parser.add_argument("--budget", type=float, default=100.0, help="UPPZY_POLL_RATE in the budget-bound run")
    parser.add_argument("--latency", default="2-6", help="simulated answer latency range in seconds")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    faults = ["--latency", args.latency, "--seed", "7", "--error-rate", "0.02", "--rate-limit-rate", "0.02",
              "--retry-after", "1"]
    rows = [
        _scenario("baseline (guide loop)", "baseline", args.small, 0, faults),
        _scenario("relay, budget not binding", "relay", args.small, 10_000, faults),
        _scenario("baseline (guide loop)", "baseline", args.large, 0, faults),
        _scenario(f"relay, budget {args.budget:g}/s", "relay", args.large, args.budget, faults),
    ]
    print(f"Latency {args.latency} s, 2% 5xx + 2% 429 (Retry-After 1 s) on every endpoint.\n")
    print(_table(rows))
    small_base, small_relay, _large_base, large_relay = rows
    print()
    print(f"{args.small} convs: status calls/answer relay/baseline = "
          f"{small_relay.status_per_answer / small_base.status_per_answer:.2f}x (target <= 0.70x); "
          f"p95 delay relay - baseline = {small_relay.p95 - small_base.p95:+.2f} s (target <= +0.50 s)")
    print(f"{args.large} convs: peak status/s {large_relay.peak_status_per_s} (budget {args.budget:g}); "
          f"lost {large_relay.lost}, doubled {large_relay.doubled}, timeouts/errors {large_relay.failed_notices}; "
          f"peak RSS {large_relay.rss_mb:.0f} MB (target < 250 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
