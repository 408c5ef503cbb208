"""Replica benchmark: SQLite 1 process vs PostgreSQL with 1, 2 and 3 replicas, the naive bot, and one replica killed.

Run: `python -m bench.replicas` (300 questions from 100 users over 10 s, answer latency uniform 2-6 s; six runs,
about 3 minutes on 2 cores, so not in `make bench`'s default list). Smaller: `--questions 60 --duration 4
--scenarios sqlite pg-2 kill`. PostgreSQL: BENCH_DATABASE_URL or TEST_DATABASE_URL (a role that may CREATE
DATABASE) when set, else a throwaway PostgreSQL 15 cluster started as tests/pg_support.py does.

Each scenario gets a fresh world: the Uppzy simulator and one FakeSlack app in this process (every Socket Mode
event to a random replica's connection; an envelope not acked within 3 s is redelivered to another, as Slack does),
a fresh database (PostgreSQL) or file (SQLite), and the bots as real subprocesses configured only by environment:
`python -m bots run` (tests/replica_support.Replicas) or the naive baseline bench/naive_bot.py (the guide's 1-s
polling loop on aiohttp; it speaks Socket Mode, so it is measured the same way, with an idle FakeDiscord to log in
to). Question i comes from user U(i mod users) in channel C(i div users): every question is its own conversation,
so no answer waits behind another one's in-order delivery. UPPZY_POLL_RATE is 200/s (does not bind: ~120
questions are in flight at once, each polled at most about once a second); `--poll-rate` changes it. The opt-in
scenario `pg-3-rate20` (`--scenarios pg-3-rate20`) runs 3 replicas at UPPZY_POLL_RATE=20, the default, where the
budget binds: its "peak in 1 s" column shows the deployment's status calls staying within the shared budget.

Figures: answered once = exactly one post in the question's thread and it is the answer; lost = no post at all by
the end of a generous wait (`--cap`, 60 s after the last question); doubled = more than one post in the thread or
the question submitted to Uppzy more than once. Status polls / answer: all status calls over answered questions,
with the most the deployment made in any one-second window. Delivery delay = the fake's receive time of the answer
minus the simulator's ready time of that question's request (both CLOCK_MONOTONIC in this process). Bot CPU =
utime+stime of every bot process from /proc/PID/stat, read just before stopping (or killing) it, minus the same
figure once all were ready (start-up excluded); PostgreSQL CPU = the server's processes over the same span
(bench.pg_driver).
Kill run: 3 replicas with REPLICA_LEASE=5s; when half the questions have reached Uppzy, the replica holding the most
unfinished questions (`turns.holder` contains `-<pid>-`) is SIGKILLed; reported: how many it held and the time from
the kill until the last of them was answered. Other scenarios use the default lease (10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import ANSWER_MARK, NAIVE_BOT, QUESTION, Processes, _proc_usage
from bench.pg_driver import find_postmaster, server_cpu
from bench.slack_burst import _quantile, _range
from simulator import Simulator, SimulatorConfig
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack
from tests.pg_support import PgServer
from tests.replica_support import Replicas, max_in_window

KEY, SITE = "bench-key", "demo-site"
_TAG = re.compile(r"\[q(\d+)\]")


@dataclass(frozen=True)
class Scenario:
    name: str
    store: str  # "sqlite", "pg" or "naive"
    replicas: int = 1
    kill: bool = False
    poll_rate: float | None = None  # UPPZY_POLL_RATE for this scenario instead of --poll-rate
    default: bool = True  # part of a run without --scenarios


SCENARIOS = {s.name: s for s in (
    Scenario("sqlite", "sqlite"), Scenario("pg-1", "pg"), Scenario("pg-2", "pg", 2), Scenario("pg-3", "pg", 3),
    Scenario("naive", "naive"), Scenario("kill", "pg", 3, kill=True),
    Scenario("pg-3-rate20", "pg", 3, poll_rate=20.0, default=False),
)}


@dataclass
class Question:
    index: int
    user: str
    channel: str
    ts: str = ""
    replies: list[tuple[float, bool]] = field(default_factory=list)  # (fake received it, it is the answer)

    @property
    def answers(self) -> list[float]:
        return [at for at, answer in self.replies if answer]


@dataclass
class Row:
    scenario: str
    label: str
    questions: int
    answered_once: int
    lost: int
    doubled: int
    notices: int
    delay_p50: float
    delay_p95: float
    polls_per_answer: float
    peak_polls: int  # status calls of the whole deployment in the busiest one-second window
    bot_cpu: float
    db_cpu: float | None
    wall: float
    answered: int
    lost_detail: list[str] = field(default_factory=list)  # per lost question: where its event went, acked or not
    orphans: int | None = None  # kill run: unfinished questions the killed replica held
    orphan_states: str = ""
    orphan_notices: int = 0  # of those, how many got an error notice (a submit cut off by the kill) instead
    kill_to_last: float | None = None  # seconds from the kill until the last of them was answered


@dataclass
class Run:
    """What one scenario's bots are, so CPU can be read and they can be stopped."""

    pids: dict[int, int] = field(default_factory=dict)  # index -> pid
    cpu_at_ready: dict[int, float] = field(default_factory=dict)
    cpu_final: dict[int, float] = field(default_factory=dict)
    killed_at: float | None = None
    orphans: dict[str, str] = field(default_factory=dict)  # message ts -> state at the kill

    def read_cpu(self, index: int) -> float:
        return _proc_usage(self.pids[index])[0]


def _bot_env(sim: Simulator, slack: FakeSlack, args: argparse.Namespace, sc: Scenario) -> dict[str, str]:
    lease = args.lease if sc.kill else "10s"
    poll_rate = sc.poll_rate or args.poll_rate
    return {"UPPZY_BASE_URL": sim.base_url, "UPPZY_API_KEY": KEY, "UPPZY_SITE_ID": SITE,
            "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_BASE_URL": slack.api_url, "UPPZY_POLL_RATE": f"{poll_rate:g}", "REPLICA_LEASE": lease,
            "LOG_LEVEL": "INFO", "NO_PROXY": "127.0.0.1,localhost"}


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _collect(slack: FakeSlack, by_ts: dict[str, Question], seen: int) -> int:
    """File every new successful chat.postMessage under its question's thread; returns how many calls were read."""
    calls = slack.calls
    while seen < len(calls):
        call = calls[seen]
        seen += 1
        if call.method == "chat.postMessage" and call.ok:
            question = by_ts.get(str(call.args.get("thread_ts")))
            if question is not None:
                question.replies.append((call.at, ANSWER_MARK in str(call.args.get("text") or "")))
    return seen


async def _kill_at_half(sc: Scenario, sim: Simulator, replicas: Replicas, run: Run, n: int) -> None:
    """SIGKILL the replica holding the most unfinished questions once half of them have reached Uppzy."""
    await _until(lambda: len(sim.chats) >= n // 2, 600, "half the questions at Uppzy")
    rows = await replicas.query("SELECT holder, message_id, state FROM turns WHERE state NOT IN ('answered','failed')")
    held: dict[int, dict[str, str]] = {i: {} for i in run.pids}
    for row in rows:
        for index, pid in run.pids.items():
            if f"-{pid}-" in (row["holder"] or ""):
                held[index][row["message_id"]] = row["state"]
    victim = max(held, key=lambda i: len(held[i]))
    run.cpu_final[victim] = run.read_cpu(victim)
    replicas.kill(victim)
    run.killed_at = time.monotonic()
    run.orphans = held[victim]


async def _start_bots(sc: Scenario, env: dict[str, str], workdir: Path, url: str, slack: FakeSlack,
                      procs: Processes, run: Run) -> Replicas | Any:
    if sc.store == "naive":
        ready = workdir / "naive.ready"
        proc = procs.start([sys.executable, str(NAIVE_BOT), "--ready-file", str(ready)],
                           env={**os.environ, **env}, cwd=str(workdir), log=workdir / "naive.log")
        await _until(lambda: (ready.exists() and slack.open_connections == 1) or proc.poll() is not None, 60,
                     "the naive bot to connect")
        if proc.poll() is not None:
            raise RuntimeError(f"naive bot exited with {proc.returncode}")
        run.pids[0] = proc.pid
        return proc
    replicas = Replicas(workdir, url, env)
    for index in range(sc.replicas):
        replicas.start(index)
    for index in range(sc.replicas):
        await replicas.ready(index, timeout=60)
        run.pids[index] = replicas.procs[index].pid
    await _until(lambda: slack.open_connections == sc.replicas, 30, "one Slack socket per replica")
    return replicas


async def run_scenario(sc: Scenario, args: argparse.Namespace, server: PgServer | None) -> Row:
    """Fresh simulator, Slack fake, database and bots; the same load; measure; tear everything down."""
    sim = Simulator(SimulatorConfig(api_key=KEY, sites=(SITE,), latency=_range(args.latency), seed=args.seed))
    slack = FakeSlack(distribution="random", seed=args.seed, redeliver_after=3.0)
    discord = FakeDiscord() if sc.store == "naive" else None
    procs, run = Processes(), Run()
    bots: Any = None
    url = None
    with tempfile.TemporaryDirectory(prefix=f"uppzy-replicas-{sc.name}-") as tmp:
        workdir = Path(args.logs) / sc.name if args.logs else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        await sim.start()
        await slack.start()
        try:
            env = _bot_env(sim, slack, args, sc)
            if discord is not None:
                await discord.start()
                env.update(DISCORD_BOT_TOKEN=discord.token, DISCORD_API_BASE_URL=discord.api_base,
                           DISCORD_GATEWAY_URL=discord.gateway_url)
            if sc.store == "pg":
                assert server is not None
                url = await server.create_database()
            db_url = url or f"sqlite:///{tmp}/bot.db"  # always fresh, also with --logs
            bots = await _start_bots(sc, env, workdir, db_url, slack, procs, run)
            postmaster = await find_postmaster(url) if url else None
            run.cpu_at_ready = {i: run.read_cpu(i) for i in run.pids}
            db0 = server_cpu(postmaster)
            questions, started = await _drive(sc, args, sim, slack, bots, run)
            lost_detail = [_trace(slack, run, q) for q in questions if not q.replies]
            for index in run.pids:
                if index not in run.cpu_final:  # the killed one was read just before the kill
                    run.cpu_final[index] = run.read_cpu(index)
            db1 = server_cpu(postmaster)
        finally:
            if isinstance(bots, Replicas):
                for index, proc in bots.procs.items():
                    if proc.poll() is None:
                        with contextlib.suppress(Exception):
                            await bots.stop(index)
                bots.close()
            procs.close()
            if discord is not None:
                await discord.stop()
            await slack.stop()
            await sim.stop()
            if url and server is not None:
                await server.drop_database(url)
    db_cpu = db1 - db0 if db0 is not None and db1 is not None else None
    bot_cpu = sum(run.cpu_final[i] - run.cpu_at_ready[i] for i in run.pids)
    row = _row(sc, args, sim, questions, started, bot_cpu, db_cpu, run)
    row.lost_detail = lost_detail
    return row


def _trace(slack: FakeSlack, run: Run, q: Question) -> str:
    """Where a lost question's event went: each delivery's socket, time relative to the kill, and whether acked."""
    parts = []
    for d in slack.deliveries_of(f"Ev{q.index:08d}"):
        when = f"{d.at - run.killed_at:+.2f} s from the kill" if run.killed_at is not None else f"at {d.at:.2f}"
        acked = "acked" if d.envelope_id in slack.acks else "not acked"
        parts.append(f"socket {d.socket} {when}, attempt {d.attempt}, {acked}")
    return f"q{q.index:05d}: " + ("; ".join(parts) or "never delivered")


async def _drive(sc: Scenario, args: argparse.Namespace, sim: Simulator, slack: FakeSlack, bots: Any,
                 run: Run) -> tuple[list[Question], float]:
    """Send every question on schedule (and kill a replica if asked); wait until each has a reply, then settle."""
    n = args.questions
    questions = [Question(i, f"U{i % args.users:05d}", f"C{i // args.users:03d}") for i in range(n)]
    by_ts: dict[str, Question] = {}
    killer = asyncio.create_task(_kill_at_half(sc, sim, bots, run, n)) if sc.kill else None
    seen = 0
    started = time.monotonic()
    for q in questions:
        wait = started + q.index * args.duration / n - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        event = slack.app_mention_event(q.user, q.channel, f"[q{q.index:05d}] {QUESTION}")
        q.ts = event["ts"]
        by_ts[q.ts] = q
        await slack.send_event(event, event_id=f"Ev{q.index:08d}")
    cap = time.monotonic() + args.cap
    while time.monotonic() < cap and not all(q.replies for q in questions):
        await asyncio.sleep(0.1)
        seen = _collect(slack, by_ts, seen)
    if killer is not None:
        if not killer.done():
            killer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killer
    latest = max((c.ready_at for c in sim.chats.values()), default=0.0)
    settle = min(cap, max(time.monotonic() + 1.5, latest + 2.5))  # a second copy would follow the latest request
    await asyncio.sleep(max(0.0, settle - time.monotonic()))
    _collect(slack, by_ts, seen)
    return questions, started


def _row(sc: Scenario, args: argparse.Namespace, sim: Simulator, questions: list[Question], started: float,
         bot_cpu: float, db_cpu: float | None, run: Run) -> Row:
    ready: dict[int, list[float]] = {}
    for chat in sim.chats.values():
        match = _TAG.search(chat.question)
        if match and not chat.fail:
            ready.setdefault(int(match.group(1)), []).append(chat.ready_at)
    delays = [q.answers[0] - min(ready[q.index]) for q in questions if q.answers and ready.get(q.index)]
    answered = sum(1 for q in questions if q.answers)
    replies = [at for q in questions for at, _ in q.replies]
    row = Row(
        scenario=sc.name, label=_label(sc, args), questions=len(questions),
        answered_once=sum(1 for q in questions if len(q.replies) == 1 and q.answers),
        lost=sum(1 for q in questions if not q.replies),
        doubled=sum(1 for q in questions if len(q.replies) > 1 or len(ready.get(q.index, [])) > 1),
        notices=sum(1 for q in questions if q.replies and not q.answers),
        delay_p50=_quantile(delays, 0.5), delay_p95=_quantile(delays, 0.95),
        polls_per_answer=len(sim.calls("chat_status")) / max(1, answered),
        peak_polls=max_in_window([c.at for c in sim.calls("chat_status")]),
        bot_cpu=bot_cpu, db_cpu=db_cpu, wall=(max(replies) - started) if replies else float("nan"),
        answered=answered,
    )
    if run.killed_at is not None:
        by_ts = {q.ts: q for q in questions}
        held = [by_ts[ts] for ts in run.orphans if ts in by_ts]
        row.orphans = len(held)
        states: dict[str, int] = {}
        for state in run.orphans.values():
            states[state] = states.get(state, 0) + 1
        row.orphan_states = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        firsts = [q.replies[0][0] for q in held if q.replies]  # the answer, or the crash-window apology
        row.orphan_notices = sum(1 for q in held if q.replies and not q.answers)
        if len(firsts) == len(held):
            row.kill_to_last = max(firsts, default=run.killed_at) - run.killed_at
    return row


def _label(sc: Scenario, args: argparse.Namespace) -> str:
    if sc.store == "naive":
        return "naive (guide's 1-s loop, no database)"
    if sc.store == "sqlite":
        return "SQLite, 1 process"
    if sc.kill:
        return f"PostgreSQL, 3 replicas, one SIGKILLed (lease {args.lease})"
    rate = f", UPPZY_POLL_RATE={sc.poll_rate:g}" if sc.poll_rate else ""
    return f"PostgreSQL, {sc.replicas} replica{'s' if sc.replicas > 1 else ''}{rate}"


_HEADER = ("| scenario | answered once | lost | doubled | error notices | delivery delay p50 / p95 "
           "| status polls / answer (peak in 1 s) | bot CPU / answer | PostgreSQL CPU / answer "
           "| answers per CPU-second (bot+db) | wall | after the kill |")


def fmt_row(r: Row) -> str:
    db = "—" if r.db_cpu is None else f"{1000 * r.db_cpu / max(1, r.answered):.1f} ms"
    total = r.bot_cpu + (r.db_cpu or 0.0)
    per_cpu = f"{r.answered / total:.0f}" if total > 0 else "—"
    kill = "—"
    if r.orphans is not None:
        last = ("NOT all replied to" if r.kill_to_last is None
                else f"last replied to {r.kill_to_last:.1f} s after the kill")
        notices = f", {r.orphan_notices} of them error notices" if r.orphan_notices else ""
        kill = f"held {r.orphans} ({r.orphan_states or 'none'}); {last}{notices}"
    return (f"| {r.label} | {r.answered_once}/{r.questions} | {r.lost} | {r.doubled} | {r.notices} "
            f"| {r.delay_p50 * 1000:.0f} / {r.delay_p95 * 1000:.0f} ms | {r.polls_per_answer:.2f} ({r.peak_polls}) "
            f"| {1000 * r.bot_cpu / max(1, r.answered):.1f} ms | {db} | {per_cpu} | {r.wall:.1f} s | {kill} |")


def table(rows: list[Row]) -> str:
    return "\n".join([_HEADER, "|" + "---|" * (_HEADER.count("|") - 1)] + [fmt_row(r) for r in rows])


async def run_all(args: argparse.Namespace, server: PgServer | None) -> list[Row]:
    rows = []
    for name in args.scenarios:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows.append(await run_scenario(SCENARIOS[name], args, server))
        print(fmt_row(rows[-1]), file=sys.stderr, flush=True)
    return rows


def notes(args: argparse.Namespace, server_version: str | None) -> str:
    pg = f"PostgreSQL {server_version} (fsync off: a throwaway cluster)" if server_version else "no PostgreSQL run"
    return (f"{args.questions} questions from {args.users} users (each its own conversation) over {args.duration:g} s "
            f"through Slack Socket Mode (FakeSlack: each event to a random connection, redelivered if unacked "
            f"for 3 s); Uppzy simulator latency uniform {args.latency} s, no faults; UPPZY_POLL_RATE="
            f"{args.poll_rate:g}; REPLICA_LEASE 10s (kill run: {args.lease}); seed {args.seed}.\n"
            f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), Linux {platform.release()}, Python "
            f"{platform.python_version()}, {pg}; simulator, fake and load generator share this process.\n"
            "CPU is measured from 'all bots ready' to just before each is stopped (start-up excluded); answers per "
            "CPU-second counts bot and PostgreSQL server CPU; SQLite and naive have no separate database process.")


async def _main(args: argparse.Namespace) -> tuple[list[Row], str | None]:
    server = None
    version = None
    if any(SCENARIOS[s].store == "pg" for s in args.scenarios):
        server = args.server or _server()
        import asyncpg

        conn = await asyncpg.connect(server.admin_url)
        try:
            version = str(await conn.fetchval("SHOW server_version")).split()[0]
        finally:
            await conn.close()
    return await run_all(args, server), version


def _server() -> PgServer:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return PgServer(url)
    from tests.pg_support import start_server

    return start_server()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds over which questions arrive")
    parser.add_argument("--latency", default="2-6", help="simulated answer latency MIN-MAX seconds")
    parser.add_argument("--poll-rate", type=float, default=200.0, help="UPPZY_POLL_RATE of every bot")
    parser.add_argument("--lease", default="5s", help="REPLICA_LEASE of the kill run")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds after the last question to wait for replies")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS),
                        default=[name for name, sc in SCENARIOS.items() if sc.default])
    parser.add_argument("--logs", metavar="DIR", help="keep every bot's log under DIR")
    args = parser.parse_args(argv)
    args.server = None
    return args


def main(argv: list[str] | None = None, server: PgServer | None = None) -> int:
    """Run the scenarios, print the table and notes; 1 when one of ours lost or doubled a question."""
    args = parse(argv)
    args.server = server
    try:
        rows, version = asyncio.run(_main(args))
    except RuntimeError as exc:
        print(f"bench.replicas: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    print()
    print(notes(args, version))
    for row in rows:
        for detail in row.lost_detail:
            print(f"lost in {row.scenario}: {detail}")
    ours = [r for r in rows if r.scenario != "naive"]
    return 0 if all(r.lost == 0 and r.doubled == 0 for r in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
