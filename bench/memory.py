"""Memory with many answers pending: the relay (SQLite) holding 5,000 and 50,000 questions that Uppzy has accepted
but not answered, against the guide's loop holding the same, each in its own worker process.

Run: `python -m bench.memory` (about 2 minutes; `--sizes 5000` for a short look). The simulator (its own process)
never finishes an answer during the run (latency 600 s), so every question stays pending while the worker keeps
polling within its budget; the figure is the worker's peak RSS (VmHWM) once all are pending and it has polled for
`--hold` seconds. Targets from the performance issue: ≤ 150 MB at 5,000 and ≤ 600 MB at 50,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.relay_bench import KEY, SITE, _Recorder

TARGETS = {5000: 150.0, 50000: 600.0}


async def _relay(base: str, n: int, hold: float, db: str) -> dict[str, Any]:
    from bots.runner import build_relay
    from core.config import Secret, Settings
    from core.models import InboundMessage, ReplyTarget
    from core.sqlite_store import SqliteStore
    from core.uppzy import UppzyClient

    settings = Settings(uppzy_api_key=Secret(KEY), uppzy_site_id=SITE, uppzy_base_url=base, uppzy_answer_timeout=3600)
    store = await SqliteStore.open(db)
    uppzy = UppzyClient(base_url=base, api_key=Secret(KEY), site_id=SITE, max_connections=64)
    relay = build_relay(settings, store, uppzy)
    relay.register(_Recorder())  # type: ignore[arg-type]
    await relay.start(reaper=False)
    started = time.monotonic()
    for i in range(n):
        target = ReplyTarget("bench", "w", f"c{i}", f"c{i}", f"q{i}", f"u{i}")
        await relay.handle_message(InboundMessage(target=target, text="how do returns work?", event_key=f"q{i}"))
    while len(relay.poller) < n and time.monotonic() - started < 900:  # noqa: ASYNC110 - a benchmark's wait
        await asyncio.sleep(0.2)
    pending = len(relay.poller)
    await asyncio.sleep(hold)  # polling all of them, within the budget
    await relay.stop()
    await uppzy.aclose()
    await store.close()
    return {"pending": pending, "status_calls": relay.poller.status_calls}


async def _loop(base: str, n: int, hold: float) -> dict[str, Any]:
    """The guide's loop: one task per question, a status call every second."""
    import aiohttp

    accepted = 0
    stop = asyncio.Event()
    async with aiohttp.ClientSession(base + "/", headers={"X-API-Key": KEY},
                                     connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(i: int) -> None:
            nonlocal accepted
            async with http.post(f"m2m/sites/{SITE}/chat/async", json={
                    "session_id": f"bench-user-u{i}-c{i}", "message": "how do returns work?"}) as res:
                request_id = (await res.json())["request_id"]
            accepted += 1
            while not stop.is_set():
                async with http.get(f"m2m/sites/{SITE}/chat/requests/{request_id}") as res:
                    await res.json()
                await asyncio.sleep(1)

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        started = time.monotonic()
        while accepted < n and time.monotonic() - started < 900:  # noqa: ASYNC110 - a benchmark's wait
            await asyncio.sleep(0.2)
        await asyncio.sleep(hold)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"pending": accepted, "status_calls": None}


def worker(kind: str, base: str, n: int, hold: float) -> None:
    """One variant in this process; prints its result (with peak RSS) as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        coro = _relay(base, n, hold, os.path.join(tmp, "bench.db")) if kind == "relay" else _loop(base, n, hold)
        result = asyncio.run(coro)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _measure(kind: str, n: int, hold: float) -> dict[str, Any]:
    port = _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "bots", "simulate", "--port", str(port), "--api-key", KEY,
                            "--site-id", SITE, "--latency", "600-600"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"http://127.0.0.1:{port}/_simulator/record", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        out = subprocess.run([sys.executable, "-m", "bench.memory", "--worker", kind, "--base", base, "--n", str(n),
                              "--hold", str(hold)], capture_output=True, text=True, timeout=1200, check=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        sim.terminate()
        sim.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--hold", type=float, default=5.0, help="seconds of polling once all are pending")
    parser.add_argument("--worker", choices=("relay", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.base, args.n, args.hold)
        return 0
    rows = ["| pending answers | bot (relay, SQLite) peak RSS | guide's loop (aiohttp) peak RSS | target (bot) | met |",
            "|---|---|---|---|---|"]
    for n in args.sizes:
        print(f"{n} pending: relay …", file=sys.stderr, flush=True)
        relay = _measure("relay", n, args.hold)
        print(f"{n} pending: loop …", file=sys.stderr, flush=True)
        loop = _measure("loop", n, args.hold)
        target = TARGETS.get(n)
        met = "" if target is None else ("yes" if relay["rss_mb"] <= target else "no")
        rows.append(f"| {relay['pending']:,} | {relay['rss_mb']:.0f} MB | {loop['rss_mb']:.0f} MB "
                    f"| {'' if target is None else f'≤ {target:.0f} MB'} | {met} |")
    print("\n".join(rows))
    print(f"\nSimulator latency 600 s (nothing is answered during the run); {args.hold:g} s of polling once all are "
          f"pending; {os.cpu_count()} CPUs.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
