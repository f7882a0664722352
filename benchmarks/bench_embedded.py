"""Embedded PostgreSQL start times: cold (initdb + start), restart of existing data, reuse.

    python benchmarks/bench_embedded.py [ROUNDS]

Each figure is the wall time of `embedded.start()` in a fresh Python process (as a notebook or
the CLI would pay it), median of ROUNDS (default 3), in a throw-away CRYPTOLAB_HOME.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

CODE = (
    "import time; t=time.perf_counter(); from cryptolab.storage import embedded; embedded.start(); "
    "print(time.perf_counter()-t)"
)


def timed(home: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        env={**os.environ, "CRYPTOLAB_HOME": home},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def stop(home: str) -> None:
    subprocess.run(
        [sys.executable, "-c", "from cryptolab.storage import embedded; embedded.stop()"],
        env={**os.environ, "CRYPTOLAB_HOME": home},
        check=True,
        capture_output=True,
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cold, restart, reuse = [], [], []
    for _ in range(rounds):
        home = tempfile.mkdtemp(prefix="cryptolab-bench-embedded-")
        cold.append(timed(home))  # initdb + start + CREATE DATABASE
        reuse.append(timed(home))  # already running: reuse
        stop(home)
        restart.append(timed(home))  # data exists, server stopped
        stop(home)
    med = statistics.median
    print(f"{'embedded start':34} {'median s':>9}")
    print(f"{'cold (initdb + start + create db)':34} {med(cold):9.2f}")
    print(f"{'warm (existing data, was stopped)':34} {med(restart):9.2f}")
    print(f"{'reuse (already running)':34} {med(reuse):9.2f}")
    print(f"cold / reuse = {med(cold) / med(reuse):.1f}x")


if __name__ == "__main__":
    main()
