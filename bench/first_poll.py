"""First-poll controller over many bursts: does the learned first poll settle near the ideal, or drift past it?

Run: `python -m bench.first_poll` (options: --bursts 30 --size 400 --latency 2-6 --gap 0.95 --seed 7). No network
and no clock: the real core.latency.LatencyModel is fed exactly what core.poller feeds it (first poll on time,
second poll one gap later, the midpoint observed when a later poll finds the answer), with every poll of a burst
taken in time order, so the model moves while the burst is still being polled, as in the bot. Answer latencies are
uniform in the given range. The ideal first poll is Q(3%) + gap: the earliest place where no more than 3% of answers
wait longer than one gap after they are ready (see LatencyModel's docstring).
"""

from __future__ import annotations

import argparse
import heapq
import random

from core.latency import LatencyModel


def burst(model: LatencyModel, latencies: list[float], gap: float) -> dict[str, float]:
    """Poll one burst submitted at once; returns its planned first poll, polls per answer and p95 delay after ready."""
    planned = model.first_poll_offset()
    events = [(planned, i, 1) for i in range(len(latencies))]  # (age of the poll, request, poll number)
    heapq.heapify(events)
    polls, delays, missed_first = 0, [], set()
    last_age = [0.0] * len(latencies)
    while events:
        age, i, n = heapq.heappop(events)
        polls += 1
        ready = latencies[i] <= age
        if n == 1:
            model.first_poll_result(ready, age, planned)
            if not ready:
                missed_first.add(i)
        elif n == 2 and i in missed_first:
            model.second_poll_result(ready, planned)
        if ready:
            if n > 1:
                model.observe((last_age[i] + age) / 2)
            delays.append(age - latencies[i])
        else:
            last_age[i] = age
            heapq.heappush(events, (age + gap, i, n + 1))
    delays.sort()
    return {"planned": planned, "polls": polls / len(latencies), "p95": delays[int(0.95 * len(delays)) - 1],
            "late": sum(d > gap for d in delays) / len(delays)}


def main(argv: list[str] | None = None) -> int:
    """Print one row per burst and the verdict."""
    parser = argparse.ArgumentParser(prog="python -m bench.first_poll", description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, default=30)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--latency", default="2-6")
    parser.add_argument("--gap", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.latency.split("-"))
    rng = random.Random(args.seed)
    model = LatencyModel(gap=args.gap)
    ideal = low + LatencyModel.SLACK * (high - low) + args.gap
    print(f"{args.bursts} bursts of {args.size}, latency uniform {low:g}-{high:g} s, gap {args.gap:g} s; ideal first "
          f"poll {ideal:.2f} s\n")
    print("| burst | first poll | polls / answer | delay after ready p95 | waited > one gap |")
    print("|---|---|---|---|---|")
    rows = []
    for b in range(1, args.bursts + 1):
        row = burst(model, [rng.uniform(low, high) for _ in range(args.size)], args.gap)
        rows.append(row)
        print(f"| {b} | {row['planned']:.2f} s | {row['polls']:.2f} | {row['p95']:.2f} s | {row['late']:.1%} |")
    tail = rows[len(rows) // 2:]
    spread = max(r["planned"] for r in tail) - min(r["planned"] for r in tail)
    mean = sum(r["planned"] for r in tail) / len(tail)
    print(f"\nsecond half: first poll {mean:.2f} s on average (ideal {ideal:.2f} s), moving within {spread:.2f} s; "
          f"{sum(r['polls'] for r in tail) / len(tail):.2f} polls per answer, worst p95 delay "
          f"{max(r['p95'] for r in tail):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
