"""`uppzy-bot run` on PostgreSQL at start: a database not reachable yet is waited for (replicas often start before
it); a database that refuses is one line and exit 2, never the password."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from simulator import Simulator
from tests.fakes.slack_fake import FakeSlack
from tests.replica_support import ROOT, Replicas, eventually, free_port


def _with_port(url: str, port: int, database: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:s3cr%40t-pass@127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, "/" + (database or parts.path.lstrip("/")), "", ""))


@contextlib.asynccontextmanager
async def forwarder(listen: int, target: int) -> AsyncIterator[None]:
    """A TCP forwarder from 127.0.0.1:`listen` to 127.0.0.1:`target` (the database "coming up")."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    try:
        yield
    finally:
        server.close()


async def test_a_replica_started_before_its_database_waits_for_it_then_serves(
    sim: Simulator, pg_url: str, tmp_path: Path,
) -> None:
    """Injected: DATABASE_URL points at a port where PostgreSQL comes up only after the replica started. Asserted:
    the replica logs that it is waiting (host:port/db, no password), then migrates and becomes ready."""
    port = free_port()
    async with FakeSlack() as slack:
        replicas = Replicas(tmp_path, _with_port(pg_url, port), {
            "UPPZY_BASE_URL": sim.base_url, "UPPZY_API_KEY": sim.config.api_key, "UPPZY_SITE_ID": "demo-site",
            "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_BASE_URL": slack.api_url,
        })
        try:
            replicas.start(0)
            await eventually(lambda: "trying again" in replicas.log(0), timeout=15, what="a waiting log line")
            async with forwarder(port, urlsplit(pg_url).port or 5432):
                await replicas.ready(0, timeout=30)
                assert await replicas.stop(0) == 0
        finally:
            replicas.close()
    log = replicas.log(0)
    assert f"cannot reach the PostgreSQL database 127.0.0.1:{port}/" in log
    assert "s3cr" not in log and "Traceback" not in log, log


def test_a_database_that_refuses_is_one_line_and_exit_2(pg_url: str, tmp_path: Path) -> None:
    """A database that does not exist is not worth waiting for: one line naming DATABASE_URL, exit 2, no password."""
    url = _with_port(pg_url, urlsplit(pg_url).port or 5432, database="nope_" + tmp_path.name[:8].lower())
    env = {"UPPZY_API_KEY": "k", "UPPZY_SITE_ID": "demo-site", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1",
           "DATABASE_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "bots", "run"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "nope_" in lines[0], done.stderr
    assert "s3cr" not in done.stderr + done.stdout
