"""HTTP client benchmark: CPU per Uppzy status poll for httpx as shipped before issue 14, the options, plain aiohttp.

Run: `python -m bench.http_client` (options: --requests 2000 --concurrency 1 32 128 --repeats 3). About a minute
on 2 cores. The simulator (`python -m bots simulate`, answers at once) runs in its own process, so this process's
time.process_time() is the client's CPU alone. Every variant polls the same completed request:

- `httpx (today)`: httpx.AsyncClient.request on httpx's own transport (httpcore pool, 100 connections), cookie
  jar, auth and redirect handling included, as the client called it before issue 14 (without the retry wrapper);
- `httpx bounded pool (N)`: UppzyClient as shipped but on httpcore limited to N connections (fewer to rescan);
- `httpx-aiohttp`: UppzyClient on the `httpx-aiohttp` package's transport (skipped when it is not installed);
- `ours`: UppzyClient as shipped (core.http_transport.AiohttpTransport, `status(retry=False)` without stamina);
- `aiohttp`: a bare aiohttp.ClientSession GET and json.loads, the floor.

Runs are interleaved (repeat, concurrency, variant); the table shows each figure's median over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import httpx

from core.config import Secret
from core.http_transport import AiohttpTransport
from core.uppzy import UppzyClient

KEY = "bench-key"
SITE = "bench-site"
BOUNDED = 8  # connections for the bounded-pool variant (measured: 4-16 cost the same; fewer starve c=128)


@dataclass(frozen=True, slots=True)
class Result:
    """One run: CPU microseconds per request and requests per second of wall time."""

    cpu_us: float
    rate: float


Poll = Callable[[], Awaitable[object]]
Factory = Callable[[AsyncExitStack, str, str, int], Awaitable[Poll]]


async def _uppzy(stack: AsyncExitStack, base: str, rid: str, transport: httpx.AsyncBaseTransport | None) -> Poll:
    client = UppzyClient(base_url=base, api_key=Secret(KEY), site_id=SITE, transport=transport)
    stack.push_async_callback(client.aclose)
    return lambda: client.status(rid, retry=False)


async def _plain_httpx(stack: AsyncExitStack, base: str, rid: str, transport: httpx.AsyncBaseTransport) -> Poll:
    """How the client called httpx before issue 14: AsyncClient.request with the client's cookie jar, auth and
    redirect handling, and a JSON decode."""
    client = httpx.AsyncClient(base_url=base + "/", headers={"Accept": "application/json"}, transport=transport,
                               trust_env=False)
    stack.push_async_callback(client.aclose)
    path = f"m2m/sites/{SITE}/chat/requests/{rid}"

    async def poll() -> object:
        return (await client.request("GET", path, headers={"X-API-Key": KEY})).json()

    return poll


def _httpcore(connections: int) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=connections,
                                                        max_keepalive_connections=connections))


async def _today(stack: AsyncExitStack, base: str, rid: str, c: int) -> Poll:
    return await _plain_httpx(stack, base, rid, _httpcore(100))


async def _bounded(stack: AsyncExitStack, base: str, rid: str, c: int) -> Poll:
    return await _uppzy(stack, base, rid, _httpcore(BOUNDED))


async def _package(stack: AsyncExitStack, base: str, rid: str, c: int) -> Poll:
    from httpx_aiohttp import AiohttpTransport as PackageTransport

    transport = PackageTransport(trust_env=False, limits=httpx.Limits(max_connections=100))
    return await _uppzy(stack, base, rid, transport)


async def _ours(stack: AsyncExitStack, base: str, rid: str, c: int) -> Poll:
    return await _uppzy(stack, base, rid, AiohttpTransport(max_connections=100))


async def _aiohttp(stack: AsyncExitStack, base: str, rid: str, c: int) -> Poll:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100), trust_env=False)
    stack.push_async_callback(session.close)
    url = f"{base}/m2m/sites/{SITE}/chat/requests/{rid}"
    headers = {"X-API-Key": KEY, "Accept": "application/json"}

    async def poll() -> object:
        async with session.get(url, headers=headers) as response:
            return json.loads(await response.read())

    return poll


def _has_package() -> bool:
    try:
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def variants() -> dict[str, Factory]:
    """The variants this machine can run, in table order."""
    found: dict[str, Factory] = {"httpx (today)": _today, f"httpx bounded pool ({BOUNDED})": _bounded}
    if _has_package():
        found["httpx-aiohttp"] = _package
    found["ours (AiohttpTransport)"] = _ours
    found["aiohttp"] = _aiohttp
    return found


async def _run(factory: Factory, base: str, rid: str, requests: int, concurrency: int) -> Result:
    async with AsyncExitStack() as stack:
        poll = await factory(stack, base, rid, concurrency)

        async def worker(n: int) -> None:
            for _ in range(n):
                await poll()

        async def burst(total: int) -> None:
            share, extra = divmod(total, concurrency)
            await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))

        await burst(max(concurrency * 2, 20))  # connections opened, code paths warm
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await burst(requests)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Result(cpu_us=cpu / requests * 1e6, rate=requests / wall)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _start_simulator() -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "simulate", "--port", str(port), "--api-key", KEY, "--site-id", SITE,
        "--latency", "0-0", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    async with httpx.AsyncClient(trust_env=False) as probe:
        for _ in range(300):
            try:
                await probe.get(f"http://127.0.0.1:{port}/_simulator/record", timeout=1)
                return proc, base
            except httpx.HTTPError:
                if proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
    proc.kill()
    raise SystemExit("the simulator did not start")


async def bench(requests: int, concurrency: list[int], repeats: int) -> dict[tuple[str, int], list[Result]]:
    """Every (variant, concurrency) run `repeats` times, interleaved; the raw results."""
    proc, base = await _start_simulator()
    try:
        async with UppzyClient(base_url=base, api_key=Secret(KEY), site_id=SITE) as client:
            rid = (await client.submit("bench-session", "What are your opening hours?")).request_id
        results: dict[tuple[str, int], list[Result]] = {}
        found = variants()
        for _ in range(repeats):
            for c in concurrency:
                for name, factory in found.items():
                    results.setdefault((name, c), []).append(await _run(factory, base, rid, requests, c))
        return results
    finally:
        proc.terminate()
        await proc.wait()


def table(results: dict[tuple[str, int], list[Result]]) -> str:
    """The Markdown table: median CPU µs per request and requests/s, plus CPU relative to plain aiohttp."""
    lines = ["| client | concurrency | CPU µs/request | requests/s | CPU vs aiohttp |", "|---|---|---|---|---|"]
    floor = {c: statistics.median(r.cpu_us for r in runs) for (name, c), runs in results.items() if name == "aiohttp"}
    for (name, c), runs in results.items():
        cpu = statistics.median(r.cpu_us for r in runs)
        rate = statistics.median(r.rate for r in runs)
        ratio = f"{cpu / floor[c]:.1f}×" if floor.get(c) else "n/a"
        lines.append(f"| {name} | {c} | {cpu:.0f} | {rate:.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse options, run, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_client", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="status polls per run (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is shown")
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args.requests, sorted(args.concurrency), args.repeats))
    results = dict(sorted(results.items(), key=lambda item: (item[0][1], list(variants()).index(item[0][0]))))
    print(table(results))


if __name__ == "__main__":
    main()
