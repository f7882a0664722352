"""`cryptolab capture --workers N`: the symbols sharded over N capture processes on one host.

Each child is a whole `cryptolab capture` (its own socket, decoder, writer and journal);
the parent only starts them, forwards Ctrl-C / SIGTERM, waits, and adds their final
statuses up into one summary. Sharding is by position (symbol i goes to worker i mod N),
so each child owns a fixed share; the database leases still guard against overlap.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run_workers", "shard"]


def shard(symbols: list[str], n: int) -> list[list[str]]:
    """Symbols dealt round-robin into at most `n` non-empty shards."""
    shards = [symbols[i::n] for i in range(min(n, len(symbols)))]
    return [s for s in shards if s]


def _child_argv(args: argparse.Namespace, symbols: list[str], status_path: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "cryptolab",
        "capture",
        "--symbols",
        ",".join(symbols),
        "--source",
        args.source,
        "--quiet",
        "--status-json",
        str(status_path),
    ]
    if args.dsn:
        argv += ["--dsn", args.dsn]
    if args.from_id is not None:
        argv += ["--from-id", str(args.from_id)]
    if args.exchange:
        argv += ["--exchange", args.exchange]
    if args.standby:
        argv.append("--standby")
    if args.since:
        argv += ["--since", args.since]
    if args.dumps:
        argv += ["--dumps", args.dumps]
    if getattr(args, "backpressure", False):
        argv.append("--backpressure")
    for opt in args.option:
        argv += ["--option", opt]
    argv += [
        "--streams",
        args.streams,
        "--depth-speed",
        args.depth_speed,
        "--depth-snapshot",
        str(args.depth_snapshot),
    ]
    return argv


def run_workers(args: argparse.Namespace, symbols: list[str]) -> int:
    """Run the shards as child processes until `--seconds` pass or a signal; one summary; exit
    1 if any failed."""
    shards = shard(symbols, args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="cryptolab-workers-"))
    stopping = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    procs = [
        subprocess.Popen(_child_argv(args, s, tmp / f"worker-{i}.json"), stdout=subprocess.DEVNULL)
        for i, s in enumerate(shards)
    ]
    print(
        f"capturing {len(symbols)} symbols in {len(procs)} processes "
        f"({', '.join(f'pid {p.pid}: {len(s)}' for p, s in zip(procs, shards))}); Ctrl-C to stop",
        flush=True,
    )
    deadline = time.monotonic() + args.seconds if args.seconds is not None else None
    while not stopping and any(p.poll() is None for p in procs):
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = [p.wait() for p in procs]
    statuses: list[dict[str, Any]] = []
    for i in range(len(procs)):
        path = tmp / f"worker-{i}.json"
        if path.exists():
            statuses.append(json.loads(path.read_text()))
            path.unlink()
    if not any(tmp.iterdir()):
        tmp.rmdir()
    print(summarize(statuses, codes), flush=True)
    return 0 if all(c == 0 for c in codes) and len(statuses) == len(procs) else 1


def summarize(statuses: list[dict[str, Any]], codes: list[int]) -> str:
    """One summary of the workers' final statuses."""

    def total(key: str) -> int:
        return sum(int(s.get(key) or 0) for s in statuses)

    syms = sorted({x for s in statuses for x in s.get("symbols", [])})
    lines = [
        f"capture stopped: {len(codes)} workers, {', '.join(syms) or '-'}",
        f"  stored {total('rows_stored'):,} trades ({total('backfilled'):,} by backfill), "
        f"{total('duplicates'):,} duplicates dropped, {total('dead_letters'):,} dead letters",
        f"  reconnects {total('reconnects')}, gaps found {total('gaps_found')}, filled "
        f"{total('gaps_filled')}, lost {total('gaps_lost')}, journal {total('journal_rows'):,}",
    ]
    bad = [f"worker {i} exited {c}" for i, c in enumerate(codes) if c != 0]
    errors = [str(s["error"]) for s in statuses if s.get("error")]
    if bad or errors:
        lines.append("  errors: " + "; ".join(bad + errors))
    return "\n".join(lines)
