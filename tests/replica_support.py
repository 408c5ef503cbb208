"""Several real `python -m bots run` processes on one PostgreSQL database: a deployment of replicas under test.

Each replica is configured only through its environment (like a container), logs to its own file, and can be
stopped with a signal or killed with SIGKILL. The database is read the way an operator would, with asyncpg.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from tests.fault_support import wait_until as eventually

__all__ = ["Replicas", "eventually", "free_port", "max_in_window"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def max_in_window(stamps: list[float], width: float = 1.0) -> int:
    """The most events in any window of `width` seconds (sliding, from each event on)."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - width:
            start += 1
        best = max(best, end - start + 1)
    return best


class Replicas:
    """`python -m bots run` processes sharing `database_url`; replica i logs to replica-i-run-N.log."""

    def __init__(self, tmp_path: Path, database_url: str, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        base = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_", "TEST_"))}
        base.update(DATABASE_URL=database_url, LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT),
                    REPLICA_LEASE="3s")
        base.update(env)
        self.env = base
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.ports: dict[int, int] = {}
        self.logs: dict[int, list[Path]] = {}

    def start(self, index: int, **env: str) -> None:
        """Start replica `index` (again), with its own PORT and any extra settings."""
        port = free_port()
        log_path = self.tmp_path / f"replica-{index}-run-{len(self.logs.get(index, [])) + 1}.log"
        self.logs.setdefault(index, []).append(log_path)
        with log_path.open("wb") as log:
            self.procs[index] = subprocess.Popen(
                [sys.executable, "-m", "bots", "run"], env={**self.env, **env, "PORT": str(port)}, cwd=self.tmp_path,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.ports[index] = port

    def log(self, index: int) -> str:
        """Everything replica `index` wrote, over all its runs."""
        return "".join(p.read_text(errors="replace") for p in self.logs.get(index, []))

    def all_logs(self) -> str:
        """Every replica's log, labelled (for assertion messages)."""
        return "\n".join(f"--- replica {i} ---\n{self.log(i)[-4000:]}" for i in sorted(self.logs))

    async def ready(self, index: int, timeout: float = 20.0) -> None:
        """Wait until replica `index` answers /readyz with 200 (store and platforms up)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ports[index]}/readyz"
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                proc = self.procs[index]
                if proc.poll() is not None:
                    raise AssertionError(f"replica {index} exited with {proc.returncode}:\n{self.log(index)}")
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"replica {index} not ready within {timeout}s:\n{self.log(index)}")

    def kill(self, index: int) -> None:
        """SIGKILL: no clean-up, no lease released (the node is lost)."""
        proc = self.procs[index]
        proc.kill()
        proc.wait(10)

    async def stop(self, index: int, sig: int = signal.SIGTERM, within: float = 12.0) -> int:
        """Stop one replica with `sig`; returns its exit code."""
        proc = self.procs[index]
        proc.send_signal(sig)
        return await asyncio.to_thread(proc.wait, within)

    def close(self) -> None:
        """Kill whatever still runs (teardown)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    async def query(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Read the shared database as an operator would."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def holders(self) -> dict[str, int]:
        """holder -> unfinished questions it holds."""
        rows = await self.query("SELECT holder, count(*) AS n FROM turns WHERE state NOT IN ('answered','failed') "
                                "GROUP BY holder")
        return {row["holder"]: row["n"] for row in rows}

    async def states(self) -> dict[str, int]:
        """state -> questions in it."""
        rows = await self.query("SELECT state, count(*) AS n FROM turns GROUP BY state")
        return {row["state"]: row["n"] for row in rows}
