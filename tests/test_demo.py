"""`uppzy-bot demo` (what `make demo` runs): a person chatting in a terminal with the built-in simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_answers_rates_lists_and_ends(tmp_path: Path) -> None:
    """Questions get answers with confidence; /good, /sessions and /end work; no traceback, exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_", "LOG_"))}
    script = "how do returns work?\n/sessions\n/help\n/bogus\n/quit\n"
    first = subprocess.run(
        [sys.executable, "-m", "bots", "demo", "--db", str(tmp_path / "demo.db"), "--latency", "0-0.2",
         "--drain", "10"],
        input=script, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert "answer to #" in first.stdout and "(confidence: medium 72/100)" in first.stdout
    assert "Unknown command '/bogus'" in first.stdout
    assert "Traceback" not in first.stderr

    second = subprocess.run(
        [sys.executable, "-m", "bots", "demo", "--db", str(tmp_path / "demo.db"), "--latency", "0-0.1"],
        input="what about shipping?\n", capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert second.returncode == 0 and "2-4 business days" in second.stdout
