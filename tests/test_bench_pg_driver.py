"""The driver benchmark's one command runs against PostgreSQL and prints a row per driver with real figures."""

from __future__ import annotations

import asyncio
import os
import sys

from bench.pg_driver import DRIVERS


async def test_pg_driver_bench_prints_both_drivers_with_positive_figures(pg_url: str) -> None:
    env = {**os.environ, "BENCH_DATABASE_URL": pg_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pg_driver", "--answers", "40", "--concurrency", "1", "4", "--repeats", "1",
        "--pool", "4", "--warmup", "4", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.decode().splitlines()
            if line.startswith("| ") and not line.startswith("| driver")]
    assert sorted((r[0], r[1]) for r in rows) == sorted((d, c) for d in DRIVERS for c in ("1", "4"))
    local = not os.environ.get("TEST_DATABASE_URL")  # a remote server's CPU cannot be read from /proc
    for driver, _, client, server, total, wall, rate in rows:
        assert float(client) > 0 and float(wall) > 0 and float(rate) > 0, driver
        if local or server != "n/a":
            assert float(server) > 0 and float(total) > float(client), driver
