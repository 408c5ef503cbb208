"""bench.memory runs end to end with tiny numbers: every question pending, a peak RSS for both variants."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_memory_bench_holds_every_question_pending_and_reports_both_variants() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.memory", "--sizes", "40", "--hold", "0.2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 40 "))
    sizes = [float(x) for x in re.findall(r"\| (\d+) MB", row)]
    assert len(sizes) == 2 and all(size > 0 for size in sizes), row
