"""Capture across processes: takeover time after a kill -9, and throughput with --workers.

    python benchmarks/bench_cluster.py [--kills 10] [--seconds 20] [--rate 60000]

1. Takeover: two capturer processes share two symbols (default options: 5 s leases,
   2 s grace). Ten times: note the database clock, `kill -9` the owner of BTCUSDT,
   and time until the first BTCUSDT trade stored by the new owner; restart the killed
   one. Prints p50 and max.
2. Throughput: the local exchange (its own process) offers `--rate` trades/s over four
   symbols; one plain `cryptolab capture`, then `--workers 1`, then `--workers 2`, each for
   `--seconds`, into a fresh database. Prints stored trades/s and the ratio to the plain one.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import scratch_database

from cryptolab.exchange import LocalExchange


def capturer(dsn: str, home: Path, source: str, symbols: list[str], *extra: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CRYPTOLAB_DSN": dsn, "CRYPTOLAB_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "cryptolab", "capture", "--symbols", ",".join(symbols),
                             "--source", source, "--quiet", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def owner_pid(c: psycopg.Connection, symbol: str) -> int | None:
    row = c.execute("SELECT m.pid FROM capture_leases l JOIN capture_members m ON m.member_id = l.owner "
                    "WHERE l.symbol = %s AND l.expires_at > clock_timestamp()", (symbol,)).fetchone()
    return int(row[0]) if row else None


def takeover(kills: int) -> list[float]:
    syms = ["btcusdt", "ethusdt"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    out: list[float] = []
    with scratch_database("bench_cluster_takeover") as dsn, \
            LocalExchange(symbols=syms, rate=200, process=True) as ex:
        procs = {i: capturer(dsn, tmp / f"h{i}", ex.ws_url, syms) for i in range(2)}
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                deadline = time.monotonic() + 60
                while owner_pid(c, "BTCUSDT") is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                for k in range(kills):
                    time.sleep(7)  # let both members settle (hand-backs) before the next kill
                    pid = owner_pid(c, "BTCUSDT")
                    if pid is None:
                        print(f"  kill {k + 1}: no owner of BTCUSDT (skipped)")
                        continue
                    (t0,) = c.execute("SELECT clock_timestamp()").fetchone()  # type: ignore[misc]
                    os.kill(pid, signal.SIGKILL)
                    victim = next(i for i, p in procs.items() if p.pid == pid)
                    procs[victim].wait()
                    while True:
                        row = c.execute(
                            "SELECT min(ingested_at) FROM trades WHERE symbol = 'BTCUSDT' AND ingested_at > "
                            "%s",
                            (t0,),
                        ).fetchone()
                        if row and row[0] is not None:
                            out.append((row[0] - t0).total_seconds())
                            break
                        time.sleep(0.05)
                    print(f"  kill {k + 1}: takeover {out[-1]:.2f} s", flush=True)
                    procs[victim] = capturer(dsn, tmp / f"h{victim}", ex.ws_url, syms)
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(60)
    return out


def throughput(label: str, rate: float, seconds: float, extra: list[str]) -> float:
    syms = ["btcusdt", "ethusdt", "solusdt", "bnbusdt"]
    with (
        scratch_database(f"bench_cluster_{label}") as dsn,
        LocalExchange(symbols=syms, rate=rate, process=True) as ex,
    ):
        tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        p = capturer(dsn, tmp, ex.ws_url, syms, "--seconds", str(seconds + 5), *extra)
        time.sleep(5)  # warm-up: connections, first batches
        with psycopg.connect(dsn, autocommit=True) as c:
            (n0,) = c.execute("SELECT count(*) FROM trades").fetchone()  # type: ignore[misc]
            time.sleep(seconds)
            (n1,) = c.execute("SELECT count(*) FROM trades").fetchone()  # type: ignore[misc]
        p.wait(120)
    return (n1 - n0) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=60_000.0)
    ap.add_argument("--skip-takeover", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)")
    if not args.skip_takeover:
        print("takeover after kill -9 (2 capturer processes, default 5 s leases):")
        times = takeover(args.kills)
        if times:
            print(
                f"takeover: p50 {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} "
                "kills"
            )
    print(f"throughput at an offered {args.rate:,.0f} trades/s (4 symbols), {args.seconds:g} s each:")
    base = throughput("plain", args.rate, args.seconds, [])
    print(f"  one process              {base:10,.0f} trades/s  1.00x")
    for n in (1, 2):
        r = throughput(f"w{n}", args.rate, args.seconds, ["--workers", str(n)])
        print(f"  --workers {n}              {r:10,.0f} trades/s  {r / base:.2f}x")


if __name__ == "__main__":
    main()
