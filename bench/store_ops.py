"""Store operations benchmark: CPU and wall time of each call an answered question makes, and a recording burst.

Run: `python -m bench.store_ops` (options: --answers N, --burst N, --repeat R, --db sqlite|postgres URL).

Sequential part: N questions each walk record_question, claim_submit, mark_submitted, store_answer,
claim_delivery, mark_answered (plus the get_turn and head_turn reads the relay makes), one call at a time; per
operation the median wall time and the mean process CPU time (every thread: the database thread's work counts).
Burst part: N record_question calls at once (a mention burst), the time until each caller has its Turn (p50/p99)
and the CPU for all of them. Each part is repeated R times on a fresh temporary database; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from core.models import InboundMessage, ReplyTarget
from core.sqlite_store import SqliteStore

OPS = ("record_question", "get_turn", "head_turn", "claim_submit", "mark_submitted", "store_answer",
       "claim_delivery", "mark_answered")


def _question(i: int) -> InboundMessage:
    target = ReplyTarget("slack", "T1", f"C{i % 20}", f"C{i % 20}", f"{i}.0001", f"U{i:05d}")
    return InboundMessage(target=target, text=f"question {i}: how do returns work?", event_key=f"C{i % 20}:{i}")


async def _open(db: str, where: Path) -> Any:
    if db == "sqlite":
        return await SqliteStore.open(str(where / "ops.db"))
    from core.postgres_store import PostgresStore

    return await PostgresStore.open(db, holder="bench")


async def _sequence(store: Any, answers: int, offset: int) -> dict[str, tuple[list[float], float]]:
    """Each question's calls one at a time: per operation the wall times (µs) and the total CPU (s)."""
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, float] = defaultdict(float)

    async def timed(name: str, call: Any) -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        result = await call
        w1, c1 = time.perf_counter(), time.process_time()
        wall[name].append((w1 - w0) * 1e6)
        cpu[name] += c1 - c0
        return result

    for i in range(offset, offset + answers):
        now = time.time()
        turn = await timed("record_question", store.record_question(
            _question(i), key=f"slack-user-U{i:05d}-C{i % 20}", site_id="site", idle_timeout=600.0, now=now))
        await timed("get_turn", store.get_turn(turn.id))
        await timed("head_turn", store.head_turn(turn.session_id))
        await timed("claim_submit", store.claim_submit(turn.id))
        await timed("mark_submitted", store.mark_submitted(turn.id, f"req-{i}", now=now))
        await timed("store_answer", store.store_answer(turn.id, "Within 30 days.", 0.9, "high", now=now))
        await timed("claim_delivery", store.claim_delivery(turn.id))
        await timed("mark_answered", store.mark_answered(turn.id, [f"{i}.0002"], now=now))
    return {name: (wall[name], cpu[name]) for name in OPS}


async def _burst(store: Any, mentions: int, offset: int) -> tuple[list[float], float]:
    """`mentions` record_question calls at once: each caller's wait (ms) and the CPU for all (s)."""
    waits: list[float] = []

    async def one(i: int) -> None:
        start = time.perf_counter()
        await store.record_question(_question(i), key=f"slack-user-U{i:05d}-C{i % 20}", site_id="site",
                                    idle_timeout=600.0, now=time.time())
        waits.append((time.perf_counter() - start) * 1000)

    c0 = time.process_time()
    await asyncio.gather(*(one(i) for i in range(offset, offset + mentions)))
    return waits, time.process_time() - c0


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(db: str, answers: int, burst: int, repeat: int) -> str:
    """All parts, `repeat` times each; the results as markdown tables."""
    per_op: dict[str, list[tuple[float, float]]] = defaultdict(list)  # op -> [(median wall µs, CPU µs/call)]
    bursts: list[tuple[float, float, float]] = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            store = await _open(db, Path(tmp))
            try:
                offset = r * (answers + burst) * 10  # fresh events on a shared PostgreSQL database
                await _sequence(store, min(50, answers), offset + 5 * answers)  # warm-up
                for name, (walls, cpu) in (await _sequence(store, answers, offset)).items():
                    per_op[name].append((statistics.median(walls), cpu / len(walls) * 1e6))
                waits, cpu = await _burst(store, burst, offset + 2 * answers)
                bursts.append((_q(waits, 0.5), _q(waits, 0.99), cpu / burst * 1e6))
            finally:
                await store.close()
    lines = ["| operation | wall median (µs) | CPU per call (µs) |", "|---|---|---|"]
    total_wall = total_cpu = 0.0
    for name in OPS:
        wall = statistics.median(w for w, _ in per_op[name])
        cpu = statistics.median(c for _, c in per_op[name])
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        lines.append(f"| {name} | {wall:.0f} | {cpu:.0f} |")
    lines.append(f"| **one answer (sum)** | **{total_wall:.0f}** | **{total_cpu:.0f}** |")
    lines += ["", f"| record_question burst ({burst} at once) | result |", "|---|---|",
              f"| caller wait p50 / p99 | {statistics.median(b[0] for b in bursts):.1f} / "
              f"{statistics.median(b[1] for b in bursts):.1f} ms |",
              f"| CPU per question | {statistics.median(b[2] for b in bursts):.0f} µs |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=500)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL URL")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(asyncio.run(run(args.db, args.answers, args.burst, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
