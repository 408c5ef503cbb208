"""The replica benchmark's one command runs SQLite, two PostgreSQL replicas and the kill run end to end and prints a
row per scenario in which every question was answered exactly once."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

QUESTIONS = 12


@pytest.mark.timeout(90)
async def test_replica_bench_answers_every_question_once_in_each_scenario(pg_url: str) -> None:
    env = {**os.environ, "BENCH_DATABASE_URL": pg_url}  # the test server; the bench makes a database per scenario
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.replicas", "--questions", str(QUESTIONS), "--users", "4", "--duration", "1",
        "--latency", "0.4-0.8", "--lease", "2s", "--cap", "30", "--scenarios", "sqlite", "pg-2", "kill",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 80)
    text = out.decode()
    assert proc.returncode == 0, f"{text}\n{err.decode()}"
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                          for line in text.splitlines() if line.startswith("| "))}
    labels = {"SQLite, 1 process": "sqlite", "PostgreSQL, 2 replicas": "pg-2",
              "PostgreSQL, 3 replicas, one SIGKILLed (lease 2s)": "kill"}
    assert set(labels) <= set(rows), text
    for label in labels:
        once, lost, doubled, notices = rows[label][1:5]
        bot_cpu, db_cpu, per_cpu = rows[label][7:10]
        assert (once, lost, doubled, notices) == (f"{QUESTIONS}/{QUESTIONS}", "0", "0", "0"), text
        assert float(bot_cpu.removesuffix(" ms")) > 0 and float(per_cpu) > 0, text
        if label != "SQLite, 1 process":
            assert db_cpu.endswith(" ms"), text
    kill = rows["PostgreSQL, 3 replicas, one SIGKILLed (lease 2s)"][-1]
    assert kill.startswith("held ") and "NOT all answered" not in kill, text
