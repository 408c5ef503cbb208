"""`python -m bench` (`make bench`): every benchmark in turn, each printing its own comparison table.

`python -m bench --performance` (`make perf`, about 12 minutes): the performance issue's figures in one command:
the 500-mention burst against the 1-s loop (aiohttp and httpx) with the bot on PostgreSQL too, the 5,000-mention
burst, the adaptive budget against a hidden limit, and memory with 5,000 and 50,000 answers pending.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = (("bench.perf",), ("bench.relay_bench",), ("bench.slack_burst",), ("bench.load",))
PERFORMANCE = (("bench.perf", "--mentions", "500", "--big", "--postgres"), ("bench.adaptive_budget",),
               ("bench.memory",))


def main(argv: list[str] | None = None) -> int:
    """Run each benchmark module as its own process so their CPU and memory figures stay separate."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--performance"]):
        print("usage: python -m bench [--performance]", file=sys.stderr)
        return 2
    failed = 0
    for module, *options in PERFORMANCE if args else BENCHES:
        print(f"\n## {' '.join([module, *options])}\n", flush=True)
        failed += subprocess.call([sys.executable, "-m", module, *options]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
