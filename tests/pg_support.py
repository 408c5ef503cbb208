"""A throwaway PostgreSQL for tests: a cluster started from the server binaries, or TEST_DATABASE_URL.

Each pytest process (each xdist worker) starts at most one cluster, on a free loopback port, in a temporary
directory, as an unprivileged user when the tests run as root (initdb refuses root); every test gets a fresh
database in it. Where neither TEST_DATABASE_URL nor the server binaries are there, PostgreSQL tests skip and the run
ends with one line saying how to enable them; with TEST_REQUIRE_POSTGRES=1 (CI) they fail instead.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["ENABLE_HINT", "PgServer", "pg_server", "start_server", "unavailable_reason"]

ENABLE_HINT = ("install the PostgreSQL server (Debian: apt install postgresql) or set TEST_DATABASE_URL="
               "postgresql://user:pass@host:5432/postgres (a role that may CREATE DATABASE)")
_REQUIRE = "TEST_REQUIRE_POSTGRES"


@dataclass
class PgServer:
    """Where a test PostgreSQL listens; `admin_url` may create and drop databases."""

    admin_url: str
    data_dir: str | None = None
    bin_dir: str | None = None
    user: str | None = None

    def url(self, database: str) -> str:
        """The URL of one database on this server."""
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))

    async def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import asyncpg

        name = "t_" + uuid.uuid4().hex[:16]
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        """Drop a database made by create_database (connections to it are ended first)."""
        import asyncpg

        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the cluster this process started (immediately: its data is thrown away) and remove it."""
        if self.data_dir is None or self.bin_dir is None:
            return
        subprocess.run([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False, user=self.user, timeout=30)
        shutil.rmtree(os.path.dirname(self.data_dir), ignore_errors=True)
        self.data_dir = None


_server: PgServer | None = None
_reason: str | None = None


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_cluster(bin_dir: str) -> PgServer:
    user = "nobody" if os.geteuid() == 0 else None
    top = tempfile.mkdtemp(prefix="uppzy-pg-")
    data = os.path.join(top, "data")
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(top, entry.pw_uid, entry.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": top}
    subprocess.run([os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], capture_output=True, check=True, user=user, env=env, timeout=120, cwd=top)
    port = _free_port()
    options = (f"-h 127.0.0.1 -p {port} -k {top} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB")
    server = PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir=data, bin_dir=bin_dir,
                      user=user)
    subprocess.run([os.path.join(bin_dir, "pg_ctl"), "-D", data, "-o", options, "-l",
                    os.path.join(top, "log"), "-w", "-t", "60", "start"],
                   capture_output=True, check=True, user=user, env=env, timeout=90, cwd=top)
    atexit.register(server.stop)
    return server


def unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, as far as one can tell without starting a server (for the summary
    line, which xdist prints in a process that never started one); None when they should run."""
    if _reason is not None:
        return _reason
    if os.environ.get("TEST_DATABASE_URL") or _bin_dir() is not None:
        return None
    return "no PostgreSQL server binaries (initdb) found"


def _ensure() -> None:
    global _server, _reason
    if _server is not None or _reason is not None:
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        _server = PgServer(url)
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        _reason = "no PostgreSQL server binaries (initdb) found"
        return
    try:
        _server = _start_cluster(bin_dir)
    except (subprocess.SubprocessError, OSError, KeyError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _reason = f"starting a throwaway PostgreSQL failed: {exc} {detail.decode(errors='replace')[-300:]}"


def pg_server() -> PgServer:
    """The test PostgreSQL of this process, started on first use; skips (fails under CI) when there is none."""
    _ensure()
    if _server is None:
        if os.environ.get(_REQUIRE) == "1":
            pytest.fail(f"PostgreSQL is required ({_REQUIRE}=1) but unavailable: {_reason}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {_reason}")
    return _server


def start_server() -> PgServer:
    """The same PostgreSQL outside pytest (benchmarks): TEST_DATABASE_URL or a throwaway cluster, started on first
    use and stopped at exit; RuntimeError with the reason and ENABLE_HINT when there is none."""
    _ensure()
    if _server is None:
        raise RuntimeError(f"PostgreSQL unavailable: {_reason}; {ENABLE_HINT}")
    return _server
