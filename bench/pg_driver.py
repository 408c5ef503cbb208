"""PostgreSQL driver benchmark: asyncpg vs psycopg 3, CPU per answer (the client's and the server's), one command.

Run: `python -m bench.pg_driver` (options: --answers 2000 --concurrency 1 50 --repeats 3 --pool 10). Not part of
`make bench`: the default run takes about 80 s on 2 cores (`--answers 500 --repeats 1` gives a rough look in ~10 s).
Uses BENCH_DATABASE_URL or TEST_DATABASE_URL (a role that may CREATE DATABASE) when set, else starts a throwaway
PostgreSQL cluster as tests/pg_support.py does (Debian's server binaries; as `nobody` when run as root).

Each answer runs the statements one answer costs the bot, through each driver's own pool, with the same SQL:
record the question (a transaction: pg_advisory_xact_lock on the conversation key, session lookup or insert,
INSERT ... ON CONFLICT (platform, event_key) DO NOTHING RETURNING the turn, touch the session), claim it (queued ->
submitting), mark it submitted, store the answer, mark it answered (a transaction: the turn's row, answer_messages,
the turn, the session). Both drivers prepare every statement on first use (psycopg: prepare_threshold=0) and run in
autocommit outside the two transactions. Variants: `asyncpg` (its pool's default reset query on every release),
`asyncpg-noreset` (a no-op reset: nothing in this flow leaves session state behind) and `psycopg` (binary
libpq build, psycopg_pool.AsyncConnectionPool). Runs are interleaved (repeat, driver, concurrency) on emptied
tables; the table shows the median of the repeats. Client CPU is this process's time.process_time(); server CPU is
the postmaster's and its children's run time from /proc (/proc/PID/sched where the kernel has it, else
utime+stime; plus reaped children), where the server runs on this machine; n/a otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id text PRIMARY KEY, key text NOT NULL, generation integer NOT NULL, platform text NOT NULL,
    workspace_id text NOT NULL, site_id text NOT NULL, state text NOT NULL, created_at double precision NOT NULL,
    last_activity double precision NOT NULL, idle_timeout double precision NOT NULL, closed_at double precision,
    close_reason text, last_turn_id bigint);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_open_key ON sessions(key) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS sessions_idle ON sessions(state, (last_activity + idle_timeout));
CREATE INDEX IF NOT EXISTS sessions_key_generation ON sessions(key, generation);
CREATE TABLE IF NOT EXISTS turns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, platform text NOT NULL, workspace_id text NOT NULL,
    channel_id text NOT NULL, message_channel_id text NOT NULL, message_id text NOT NULL, thread_id text,
    user_id text NOT NULL, is_dm boolean NOT NULL DEFAULT false, extras text NOT NULL DEFAULT '[]',
    event_key text NOT NULL, session_id text NOT NULL, site_id text NOT NULL, email text, text text,
    state text NOT NULL, request_id text, answer text, confidence_score double precision, confidence_level text,
    error_kind text, notice_kind text, notice text, created_at double precision NOT NULL,
    submitted_at double precision, ready_at double precision, done_at double precision,
    UNIQUE (platform, event_key));
CREATE INDEX IF NOT EXISTS turns_active ON turns(state) WHERE state NOT IN ('answered', 'failed');
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, id);
CREATE INDEX IF NOT EXISTS turns_done ON turns(done_at);
CREATE INDEX IF NOT EXISTS turns_thread ON turns(platform, channel_id, thread_id);
CREATE INDEX IF NOT EXISTS turns_message ON turns(platform, message_id);
CREATE TABLE IF NOT EXISTS answer_messages (
    platform text NOT NULL, message_id text NOT NULL, channel_id text NOT NULL, turn_id bigint NOT NULL,
    PRIMARY KEY (platform, message_id, channel_id));
CREATE INDEX IF NOT EXISTS answer_messages_turn ON answer_messages(turn_id);
"""
_UNFINISHED = "state NOT IN ('answered','failed')"
_TURN_COLUMNS = ("id, platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, user_id, is_dm, "
                 "extras, session_id, site_id, state, text, email, request_id, created_at, submitted_at, answer, "
                 "confidence_score, confidence_level, error_kind, notice_kind, notice")
LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"
LIVE = "SELECT id FROM sessions WHERE key=$1 AND state='open'"
MAX_GEN = "SELECT MAX(generation) FROM sessions WHERE key=$1"
NEW_SESSION = ("INSERT INTO sessions (id, key, generation, platform, workspace_id, site_id, state, created_at, "
               "last_activity, idle_timeout) VALUES ($1,$2,$3,$4,$5,$6,'open',$7,$8,$9)")
INSERT_TURN = ("INSERT INTO turns (platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, "
               "user_id, is_dm, extras, event_key, session_id, site_id, email, text, state, created_at) "
               "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,'queued',$15) "
               f"ON CONFLICT (platform, event_key) DO NOTHING RETURNING {_TURN_COLUMNS}")
TOUCH = "UPDATE sessions SET last_activity=$1, last_turn_id=$2 WHERE id=$3"
CLAIM = "UPDATE turns SET state='submitting' WHERE id=$1 AND state='queued'"
SUBMITTED = f"UPDATE turns SET state='pending', request_id=$1, submitted_at=$2 WHERE id=$3 AND {_UNFINISHED}"
STORE = ("UPDATE turns SET state='ready', answer=$1, confidence_score=$2, confidence_level=$3, ready_at=$4, "
         f"text=NULL WHERE id=$5 AND {_UNFINISHED}")
TURN_REF = "SELECT platform, session_id, message_channel_id FROM turns WHERE id=$1"
ANSWER_MSG = ("INSERT INTO answer_messages (platform, message_id, channel_id, turn_id) VALUES ($1,$2,$3,$4) "
              "ON CONFLICT (platform, message_id, channel_id) DO UPDATE SET turn_id=excluded.turn_id")
ANSWERED = f"UPDATE turns SET state='answered', done_at=$1, text=NULL, answer=NULL WHERE id=$2 AND {_UNFINISHED}"
SESSION_SEEN = "UPDATE sessions SET last_activity=GREATEST(last_activity, $1) WHERE id=$2"

QUESTION = "How do returns work for an order that shipped in two parcels?"
ANSWER = "Returns are free within 30 days. " * 30  # ~1 KB, a typical answer
DRIVERS = ("asyncpg", "asyncpg-noreset", "psycopg")


def to_pyformat(sql: str) -> str:
    """psycopg's placeholders for the same statement ($1..$n must each appear once, in order)."""
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert numbers == list(range(1, len(numbers) + 1)), sql
    return re.sub(r"\$\d+", "%s", sql)


# ---- the two drivers behind one small interface ---------------------------------------------------------------


class _AsyncpgConn:
    def __init__(self, con: Any) -> None:
        self.con = con

    async def row(self, sql: str, *args: Any) -> Any:
        return await self.con.fetchrow(sql, *args)

    async def run(self, sql: str, *args: Any) -> int:
        status = await self.con.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    def transaction(self) -> Any:
        return self.con.transaction()


class _PsycopgConn:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def row(self, sql: str, *args: Any) -> Any:
        cur = await self.conn.execute(_PY[sql], args)
        return await cur.fetchone()

    async def run(self, sql: str, *args: Any) -> int:
        cur = await self.conn.execute(_PY[sql], args)
        return cur.rowcount

    def transaction(self) -> Any:
        return self.conn.transaction()


_PY = {s: to_pyformat(s) for s in (LOCK, LIVE, MAX_GEN, NEW_SESSION, INSERT_TURN, TOUCH, CLAIM, SUBMITTED, STORE,
                                   TURN_REF, ANSWER_MSG, ANSWERED, SESSION_SEEN)}


class Pool:
    """One driver's pool; `connection()` yields a connection with row/run/transaction."""

    def __init__(self, driver: str, url: str, size: int) -> None:
        self.driver, self.url, self.size = driver, url, size
        self._pool: Any = None

    async def open(self) -> None:
        if self.driver == "psycopg":
            from psycopg_pool import AsyncConnectionPool

            self._pool = AsyncConnectionPool(self.url, min_size=self.size, max_size=self.size, open=False,
                                             kwargs={"autocommit": True, "prepare_threshold": 0})
            await self._pool.open(wait=True)
            return
        import asyncpg

        async def no_reset(con: Any) -> None:
            """Nothing in this flow leaves session state (xact locks end with their transaction)."""

        reset = no_reset if self.driver == "asyncpg-noreset" else None
        self._pool = await asyncpg.create_pool(self.url, min_size=self.size, max_size=self.size, reset=reset)

    async def close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self.driver == "psycopg":
            async with self._pool.connection() as conn:
                yield _PsycopgConn(conn)
        else:
            async with self._pool.acquire() as con:
                yield _AsyncpgConn(con)


async def answer_one(pool: Pool, i: int, run: str, conversations: int) -> None:
    """Every statement one answered question costs the bot, in the bot's order."""
    key = f"bench:w:c{i % conversations}"
    now = time.time()
    async with pool.connection() as c, c.transaction():
        await c.run(LOCK, key)
        live = await c.row(LIVE, key)
        if live is None:
            top = await c.row(MAX_GEN, key)
            generation = (top[0] or 0) + 1
            session_id = f"{key}#{generation}"
            await c.run(NEW_SESSION, session_id, key, generation, "bench", "w", "site", now, now, 600.0)
        else:
            session_id = live[0]
        turn = await c.row(INSERT_TURN, "bench", "w", f"c{i % conversations}", f"c{i % conversations}", f"m{run}{i}",
                           None, f"u{i}", False, "[]", f"{run}-{i}", session_id, "site", None, QUESTION, now)
        assert turn is not None, "event key seen twice"
        turn_id = turn[0]
        await c.run(TOUCH, now, turn_id, session_id)
    async with pool.connection() as c:
        assert await c.run(CLAIM, turn_id) == 1
    async with pool.connection() as c:
        await c.run(SUBMITTED, f"req-{run}-{i}", time.time(), turn_id)
    async with pool.connection() as c:
        await c.run(STORE, ANSWER, 0.87, "high", time.time(), turn_id)
    async with pool.connection() as c, c.transaction():
        ref = await c.row(TURN_REF, turn_id)
        await c.run(ANSWER_MSG, ref[0], f"a{run}{i}", ref[2], turn_id)
        await c.run(ANSWERED, time.time(), turn_id)
        await c.run(SESSION_SEEN, time.time(), ref[1])


# ---- server CPU ---------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on: ppid is [1], utime [11], stime [12]


def _runtime(pid: int, fields: list[str], tick: int) -> float:
    """CPU seconds of one live process: the scheduler's exact figure where the kernel shows it, else ticks."""
    try:
        with open(f"/proc/{pid}/sched") as f:
            for line in f:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1]) / 1e3  # milliseconds
    except (OSError, ValueError):
        pass
    return (int(fields[11]) + int(fields[12])) / tick


def server_cpu(postmaster: int | None) -> float | None:
    """CPU seconds the PostgreSQL server has used: the postmaster, its live children, and its reaped children
    (those in ticks; only autovacuum workers come and go during a run)."""
    if postmaster is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    try:
        top = _stat(postmaster)
    except OSError:
        return None
    total = (int(top[13]) + int(top[14])) / tick + _runtime(postmaster, top, tick)  # cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(int(entry))
            except OSError:
                continue
            if fields[1] == str(postmaster):
                total += _runtime(int(entry), fields, tick)
    return total


async def find_postmaster(url: str) -> int | None:
    """The server's postmaster pid when it runs on this machine (a backend's parent), else None."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        return _parent_if_postgres(await con.fetchval("SELECT pg_backend_pid()"))  # while that backend lives
    finally:
        await con.close()


def _parent_if_postgres(backend: int) -> int | None:
    try:
        with open(f"/proc/{backend}/cmdline", "rb") as f:
            if b"postgres" not in f.read():
                return None  # a different process with that pid: the server is elsewhere
        return int(_stat(backend)[1])
    except OSError:
        return None


# ---- runs ---------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One measured run."""

    driver: str
    concurrency: int
    answers: int
    client_cpu: float
    server_cpu: float | None
    wall: float
    latencies: list[float]


async def _drive(pool: Pool, n: int, concurrency: int, run: str, conversations: int,
                 latencies: list[float] | None) -> None:
    next_i = iter(range(n))

    async def task() -> None:
        for i in next_i:
            started = time.perf_counter()
            await answer_one(pool, i, run, conversations)
            if latencies is not None:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(task() for _ in range(concurrency)))


async def measure(url: str, driver: str, concurrency: int, n: int, *, pool_size: int, postmaster: int | None,
                  run: str, warmup: int = 50) -> Result:
    """Empty the tables, warm the pool up, then time n answers at this concurrency."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        await con.execute("TRUNCATE sessions, turns, answer_messages")
    finally:
        await con.close()
    pool = Pool(driver, url, pool_size)
    await pool.open()
    try:
        conversations = max(concurrency * 4, 20)
        await _drive(pool, min(warmup, n), concurrency, f"w{run}", conversations, None)
        latencies: list[float] = []
        gc.collect()
        server0, cpu0, wall0 = server_cpu(postmaster), time.process_time(), time.perf_counter()
        await _drive(pool, n, concurrency, run, conversations, latencies)
        wall, cpu, server1 = time.perf_counter() - wall0, time.process_time() - cpu0, server_cpu(postmaster)
    finally:
        await pool.close()
    server = server1 - server0 if server0 is not None and server1 is not None else None
    return Result(driver, concurrency, n, cpu, server, wall, latencies)


async def create_schema(url: str) -> None:
    """The bot's tables, PostgreSQL types."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        await con.execute(SCHEMA)
    finally:
        await con.close()


async def bench(url: str, *, answers: int, concurrencies: tuple[int, ...], repeats: int, pool_size: int,
                drivers: tuple[str, ...] = DRIVERS, warmup: int = 50,
                progress: Callable[[str], None] | None = None) -> list[Row]:
    """Every (driver, concurrency) `repeats` times, interleaved; one row per pair with the medians."""
    await create_schema(url)
    postmaster = await find_postmaster(url)
    results: dict[tuple[str, int], list[Result]] = {}
    for rep in range(repeats):
        for driver in drivers:
            for concurrency in concurrencies:
                result = await measure(url, driver, concurrency, answers, pool_size=pool_size, postmaster=postmaster,
                                       run=f"r{rep}{driver[:2]}{concurrency}", warmup=warmup)
                results.setdefault((driver, concurrency), []).append(result)
                if progress:
                    progress(f"  {driver:<16} c={concurrency:<3} rep {rep + 1}: {result.wall:.2f} s")
    return [summarize(runs) for runs in results.values()]


@dataclass
class Row:
    """Medians over the repeats of one (driver, concurrency)."""

    driver: str
    concurrency: int
    client_us: float
    server_us: float | None
    wall_p50_ms: float
    answers_per_s: float

    @property
    def total_us(self) -> float | None:
        """Client plus server CPU per answer."""
        return None if self.server_us is None else self.client_us + self.server_us


def summarize(runs: list[Result]) -> Row:
    """The median of each figure over the repeats."""
    first = runs[0]
    servers = [r.server_cpu / r.answers * 1e6 for r in runs if r.server_cpu is not None]
    return Row(first.driver, first.concurrency,
               statistics.median(r.client_cpu / r.answers * 1e6 for r in runs),
               statistics.median(servers) if servers else None,
               statistics.median(statistics.median(r.latencies) * 1e3 for r in runs),
               statistics.median(r.answers / r.wall for r in runs))


def table(rows: list[Row]) -> str:
    """The comparison as a Markdown table."""
    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = ["| driver | concurrency | client CPU µs/answer | server CPU µs/answer | total CPU µs/answer "
             "| wall ms/answer p50 | answers/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r.concurrency, r.driver)):
        lines.append(f"| {r.driver} | {r.concurrency} | {r.client_us:.0f} | {num(r.server_us, '.0f')} "
                     f"| {num(r.total_us, '.0f')} | {r.wall_p50_ms:.2f} | {r.answers_per_s:.0f} |")
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> list[Row]:
    url = os.environ.get("BENCH_DATABASE_URL")
    server = None
    if not url:
        from tests.pg_support import start_server

        server = start_server()
    database = await server.create_database() if server else url
    assert database
    try:
        return await bench(database, answers=args.answers, concurrencies=tuple(args.concurrency),
                           repeats=args.repeats, pool_size=args.pool, drivers=tuple(args.drivers), warmup=args.warmup,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        if server:
            await server.drop_database(database)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg_driver", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=2000, help="answers per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50], help="concurrent answers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (driver, concurrency); medians shown")
    parser.add_argument("--pool", type=int, default=10, help="pool size of every driver")
    parser.add_argument("--warmup", type=int, default=50, help="untimed answers before each run")
    parser.add_argument("--drivers", nargs="+", choices=DRIVERS, default=list(DRIVERS))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.pg_support
    try:
        rows = asyncio.run(_main(args))
    except RuntimeError as exc:
        print(f"bench.pg_driver: {exc}", file=sys.stderr)
        return 2
    import asyncpg
    import psycopg

    print(f"{args.answers} answers per run, median of {args.repeats}; pool size {args.pool}; asyncpg "
          f"{asyncpg.__version__}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}); "
          f"Python {sys.version.split()[0]}, default asyncio loop, {os.cpu_count()} CPUs.\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
