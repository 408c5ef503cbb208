"""The HTTP client benchmark's one command prints a row per client and concurrency with positive figures."""

from __future__ import annotations

import asyncio
import os
import sys

from bench.http_client import variants


async def test_http_client_bench_prints_every_row_with_positive_figures() -> None:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.http_client", "--requests", "16", "--concurrency", "1", "4", "--repeats", "1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.decode().splitlines()
            if line.startswith("| ") and not line.startswith("| client")]
    assert sorted((r[0], r[1]) for r in rows) == sorted((v, c) for v in variants() for c in ("1", "4"))
    for name, _, cpu, rate, ratio in rows:
        assert float(cpu) > 0 and float(rate) > 0 and float(ratio.rstrip("×")) > 0, name
