"""bench.perf: its tables judge each target as the issue states it, and a tiny run (PostgreSQL included) completes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from bench.load import Row
from bench.perf import postgres_table, table
from tests.pg_support import pg_server

ROOT = Path(__file__).resolve().parents[1]


def _row(name: str, **figures: float) -> Row:
    base = Row(name=name, convs=10, redelivered=0, ack_p50=1.0, ack_p99=5.0, answered_once=10, duplicates=0, lost=0,
               notices=0, delay_p50=0.5, delay_p95=0.9, uppzy_calls=50, uppzy_failed=0, polls_per_answer=2.5,
               cpu_ms=2.0, rss_mb=70.0, last_reply=8.0, exit_code=0, answered=10, e2e_p50=5.0, e2e_p95=7.0)
    return dataclasses.replace(base, **figures)


def _met(lines: str, figure: str) -> str:
    line = next(line for line in lines.splitlines() if line.startswith(f"| {figure} |"))
    return line.split("|")[-2].strip()  # the last cell: "yes", "no" or "" (no target)


def test_the_burst_table_holds_the_issue_targets_and_the_big_one_only_its_own() -> None:
    loop = _row("loop", cpu_ms=1.5, polls_per_answer=5.0, delay_p95=0.95, ack_p99=2.0)
    bot = _row("bot", cpu_ms=2.4, polls_per_answer=2.6, delay_p95=0.9, ack_p99=12.0, e2e_p50=6.5, e2e_p95=7.5)
    small = table(bot, loop, loop)
    assert _met(small, "CPU per answered message") == "no"  # 1.6× > 1.5×
    assert _met(small, "status calls per answer") == "no"  # 0.52× > 0.5×
    assert _met(small, "delivery delay after ready, p95") == "yes"
    assert _met(small, "Slack ack p99") == "no"  # 12 ms > 10 ms
    big = table(bot, loop, loop, big=True)
    assert _met(big, "CPU per answered message") == "" and _met(big, "Slack ack p99") == ""  # not targets there
    assert _met(big, "mention → answer, p50") == "no"  # 6.5 > 5.0 + 1
    assert _met(big, "mention → answer, p95") == "yes"  # 7.5 <= 7.0 + 1


def test_the_postgres_table_counts_the_server_s_cpu() -> None:
    sqlite = _row("bot", cpu_ms=3.0)
    assert _met(postgres_table(sqlite, _row("pg", cpu_ms=2.9, server_cpu_ms=1.0)), "CPU per answer, bot + database") \
        == "yes"  # 3.9 / 3.0 = 1.3×
    assert _met(postgres_table(sqlite, _row("pg", cpu_ms=2.9, server_cpu_ms=1.2)), "CPU per answer, bot + database") \
        == "no"


def test_a_tiny_run_with_postgres_reports_every_variant() -> None:
    server = pg_server()
    env = {**os.environ, "TEST_DATABASE_URL": server.admin_url}
    done = subprocess.run([sys.executable, "-m", "bench.perf", "--mentions", "12", "--latency", "0.2-0.4",
                           "--cap", "40", "--postgres"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| answered once / lost / doubled | 12 / 0 / 0 | 12 / 0 / 0 | 12 / 0 / 0 |" in done.stdout, done.stdout
    pg = next(line for line in done.stdout.splitlines() if line.startswith("| PostgreSQL server CPU per answer"))
    assert float(pg.split("|")[3].split()[0]) > 0, pg  # the server's CPU was measured
    assert "| 12 / 0 / 0 | 12 / 0 / 0 | | nothing lost or doubled | yes |" in done.stdout, done.stdout
