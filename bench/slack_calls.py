"""Slack Web API calls and bot CPU per answer: a mention burst through Socket Mode to the real bot in a worker process.

Run: `python -m bench.slack_calls` (options: --mentions, --rate PER_SECOND (0: one burst), --latency MIN-MAX, --seed,
--working-after SECONDS). A burst is answered as fast as the poll budget allows (most answers wait for it, so
nearly all are slow); a paced run shows the answer latency itself. The
worker is `python -m bench.slack_burst --worker` (the production composition; with --working-after, the same with
that Tuning.working_after); CPU is its user+system time from "connected" until every mention is answered and every
⏳ taken away, divided by the mentions. Calls are what FakeSlack received after connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.slack_burst import KEY, SITE, _range, _settings
from bots.runner import build_relay, build_uppzy
from bots.slack.app import SlackBot
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from simulator import Simulator, SimulatorConfig
from tests.fakes.slack_fake import FakeSlack


def _cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


async def _worker(uppzy_url: str, slack_url: str, db: str, working_after: float) -> None:
    """bench.slack_burst's worker with another Tuning.working_after: runs until the parent closes our stdin."""
    settings = _settings(uppzy_url, slack_url, None, 20.0)
    store = await SqliteStore.open(db)
    uppzy = build_uppzy(settings)
    relay = build_relay(settings, store, uppzy, tuning=Tuning(working_after=working_after))
    bot = SlackBot(settings, relay)
    await relay.start(reaper=False)
    await bot.start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await bot.stop()
        await relay.stop()
        await uppzy.aclose()
        await store.close()


async def run(mentions: int, latency: tuple[float, float], seed: int,
              working_after: float | None = None, rate: float = 0.0) -> dict[str, Any]:
    """One burst; per-answer Web API calls by method and the worker's CPU."""
    sim = Simulator(SimulatorConfig(api_key=KEY, sites=(SITE,), latency=latency, seed=seed))
    base = await sim.start()
    fake = FakeSlack()
    await fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "b.db")
            argv = ["bench.slack_burst", "--worker", base, fake.api_url, db, "20"] if working_after is None else \
                ["bench.slack_calls", "--worker", base, fake.api_url, db, str(working_after)]
            worker = await asyncio.create_subprocess_exec(sys.executable, "-m", *argv, stdin=asyncio.subprocess.PIPE)
            try:
                await fake.wait_connected(timeout=30)
                before, cpu0, started = len(fake.calls), _cpu(worker.pid), time.monotonic()
                for i in range(mentions):
                    if rate > 0:
                        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                    await fake.send_event(fake.app_mention_event(f"U{i:05d}", f"C{i % 20:03d}", f"q {i}: returns?"))

                def answered() -> int:
                    return len({c.args.get("thread_ts") for c in fake.calls_to("chat.postMessage") if c.ok})

                await fake.wait_until(lambda: answered() >= mentions, timeout=600, what="every answer")
                await fake.wait_until(  # every ⏳ shown is taken away again before counting
                    lambda: not any(fake.reactions.get(k) and any(fake.reactions[k].values()) for k in fake.reactions),
                    timeout=30, what="no reaction left")
                cpu = _cpu(worker.pid) - cpu0
                wall = time.monotonic() - started
            finally:
                assert worker.stdin is not None
                worker.stdin.close()
                await asyncio.wait_for(worker.wait(), 30)
        calls = Counter(c.method for c in fake.calls[before:])
        return {"mentions": mentions, "calls": calls, "cpu": cpu, "wall": wall}
    finally:
        await fake.stop()
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Print calls per answer by method, and CPU per answer."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        asyncio.run(_worker(argv[1], argv[2], argv[3], float(argv[4])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.slack_calls", description=__doc__.split("\n")[0])
    parser.add_argument("--mentions", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.0, help="mentions per second (default: one burst)")
    parser.add_argument("--latency", type=_range, default=(2.0, 6.0), metavar="MIN-MAX")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--working-after", type=float, help="Tuning.working_after of the bot (default: production's)")
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.mentions, args.latency, args.seed, args.working_after, args.rate))
    n = r["mentions"]
    per = ", ".join(f"{m} {k / n:.2f}" for m, k in sorted(r["calls"].items()))
    moment = "default" if args.working_after is None else f"{args.working_after:g} s"
    pace = "one burst" if args.rate <= 0 else f"{args.rate:g}/s"
    print(f"latency {args.latency[0]:g}-{args.latency[1]:g} s, ⏳ after {moment}, {n} mentions ({pace}): "
          f"Web API calls/answer {sum(r['calls'].values()) / n:.2f} ({per}); "
          f"bot CPU/answer {1000 * r['cpu'] / n:.2f} ms; wall {r['wall']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
