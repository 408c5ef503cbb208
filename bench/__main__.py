"""`python -m bench` (`make bench`): every benchmark in turn, each printing its own comparison table."""

from __future__ import annotations

import subprocess
import sys

BENCHES = ("bench.perf", "bench.relay_bench", "bench.slack_burst", "bench.load")


def main() -> int:
    """Run each benchmark module as its own process so their CPU and memory figures stay separate."""
    failed = 0
    for module in BENCHES:
        print(f"\n## {module}\n", flush=True)
        failed += subprocess.call([sys.executable, "-m", module]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
