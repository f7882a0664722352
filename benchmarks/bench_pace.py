"""A real market's pace: CPU per market-hour of a capture, commits/s, receive→commit latency.

    python benchmarks/bench_pace.py [--seconds 300] [--rates 31,310] [--windows 0.2,0]

BTCUSDT's spot trade rate in the team's recording is ~31 trades/s; the run is at that pace and
at 10× it, each for --seconds. For each commit window (0.2 s, the default; 0 = commit as soon
as anything arrived, the behaviour before group commit: the baseline of this same run) a
capture runs in a child process against a local exchange in its own process, and prints:

* CPU seconds per market-hour of the capture process and of its PostgreSQL backends (from
  /proc: every backend connected to the run's database), and their sum;
* transactions committed per second in that database (pg_stat_database.xact_commit: data,
  leases, heartbeats) and the capture's own data commits per second;
* receive → commit p50 / p99.

Not measured here: a peer client (cryptofeed) receiving the same stream in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from _common import scratch_database
from bench_capture import _cpu_backends, _cpu_self, start_exchange, stop_exchange

ROOT = Path(__file__).resolve().parent.parent


def _xact(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def _child(args: str) -> None:
    from cryptolab.capture import Capture

    dsn, ws, seconds, window = json.loads(args)
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    cap = Capture(["btcusdt"], source=ws, dsn=dsn, commit_window=window).start()
    time.sleep(3.0)
    st0, t0, c0, pg0, x0 = cap.status(), time.monotonic(), _cpu_self(), _cpu_backends(dbname), _xact(dsn)
    cap.reset_latencies()
    time.sleep(seconds)
    st1, t1, c1, pg1, x1 = cap.status(), time.monotonic(), _cpu_self(), _cpu_backends(dbname), _xact(dsn)
    lat = sorted(cap.latencies_us())
    cap.stop()
    wall = t1 - t0

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")

    pg = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in pg1)
    hour = 3600 / wall
    print(json.dumps({"trades_per_s": (st1.rows_stored - st0.rows_stored) / wall,
                      "cpu_capture_h": (c1 - c0 - 0.0) * hour, "cpu_pg_h": pg * hour,
                      "xact_per_s": (x1 - x0) / wall, "data_commits_per_s": (st1.commits - st0.commits) / wall,
                      "p50": q(0.5), "p99": q(0.99)}))


def run(dsn: str, rate: float, seconds: float, window: float) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
    proc, ws = start_exchange(rate)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps([dsn, ws, seconds, window])],
                             cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    finally:
        stop_exchange(proc)
    if out.returncode:
        raise SystemExit(f"the capture run failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--rates", default="31,310", help="trades/s (BTCUSDT's pace and 10x)")
    ap.add_argument("--windows", default="0.2,0", help="commit windows to compare (0 = the pre-group-commit way)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child)
        return
    with scratch_database("pace") as dsn:
        print(f"{'rate':>6} {'window':>7} {'stored/s':>9} {'cpu cap s/h':>12} {'cpu pg s/h':>11} {'total s/h':>10} "
              f"{'xact/s':>7} {'data commits/s':>15} {'p50 ms':>7} {'p99 ms':>7}")
        for rate in (float(x) for x in a.rates.split(",")):
            rows = []
            for window in (float(x) for x in a.windows.split(",")):
                r = run(dsn, rate, a.seconds, window)
                rows.append((window, r))
                total = r["cpu_capture_h"] + r["cpu_pg_h"]
                print(f"{rate:>6.0f} {window:>7.2f} {r['trades_per_s']:>9.1f} {r['cpu_capture_h']:>12.1f} "
                      f"{r['cpu_pg_h']:>11.1f} {total:>10.1f} {r['xact_per_s']:>7.1f} {r['data_commits_per_s']:>15.1f} "
                      f"{r['p50']:>7.1f} {r['p99']:>7.1f}", flush=True)
            if len(rows) == 2:
                (w0, r0), (w1, r1) = rows
                t0, t1 = r0["cpu_capture_h"] + r0["cpu_pg_h"], r1["cpu_capture_h"] + r1["cpu_pg_h"]
                print(f"       at {rate:.0f}/s: window {w0:g} s costs {t0 / t1:.2f}x the CPU of window {w1:g} s")


if __name__ == "__main__":
    main()
