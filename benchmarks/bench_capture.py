"""Capture benchmarks: throughput, receive→commit latency, memory over time.

    python benchmarks/bench_capture.py [--seconds 20] [--rss-seconds 600] [--rates 1000,5000,20000]

The local exchange runs in its own process (`cryptolab exchange`, pre-encoded frames)
so it competes for a core, not for this process's GIL. Printed, all from one run:

1. sustained trades/s from the exchange over a real socket to committed rows, beside a
   raw COPY of the same rows and the seed's one INSERT+commit per row (on a sample);
   plus the exchange's own ceiling (a bare client that only counts frames);
2. receive→commit latency p50/p99 at several offered rates;
3. the capture's RSS at start and after --rss-seconds at 5k trades/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time

from _common import TRADE_COLUMNS, insert_per_row, plain_copy, scratch_database

from cryptolab import db
from cryptolab.capture import Capture


def start_exchange(rate: float, symbols: str = "btcusdt") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptolab.cli", "exchange", "--symbols", symbols, "--rate", str(rate), "--seed", "1",
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    ws = dict(p.split("=", 1) for p in first)["ws"]
    return proc, ws


def stop_exchange(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exchange_ceiling(seconds: float) -> float:
    """Frames/s one bare client receives from the exchange at an unreachable offered rate."""
    import websockets

    proc, ws = start_exchange(1_000_000)
    try:
        async def count() -> float:
            async with websockets.connect(f"{ws}/stream?streams=btcusdt@trade", max_queue=4096, compression=None) as c:
                n, t0 = 0, None
                end = time.monotonic() + seconds + 1
                while time.monotonic() < end:
                    await c.recv(decode=False)
                    if t0 is None and n == 2000:
                        t0, n = time.monotonic(), 0
                    n += 1
                return n / (time.monotonic() - t0)
        return asyncio.run(count())
    finally:
        stop_exchange(proc)


def capture_run(dsn: str, rate: float, seconds: float) -> dict:
    with db.connect(dsn) as conn:  # each run's exchange numbers trades from 1 again
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
        conn.commit()
    proc, ws = start_exchange(rate)
    try:
        cap = Capture(["btcusdt"], source=ws, dsn=dsn).start()
        time.sleep(1.0)
        s0, t0 = cap.status().rows_stored, time.monotonic()
        cap.reset_latencies()
        time.sleep(seconds)
        s1, t1 = cap.status().rows_stored, time.monotonic()
        lat = sorted(cap.latencies_us())
        cap.stop()
    finally:
        stop_exchange(proc)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")  # noqa: E731
    return {"rate": (s1 - s0) / (t1 - t0), "p50": q(0.50), "p99": q(0.99), "n": len(lat)}


def copy_baseline(dsn: str, n: int) -> tuple[float, float]:
    """rows/s of a plain COPY of n captured rows into the same `trades` table (no dedupe, no
    bars_1s), and of the seed's one INSERT+commit per row into it (on a 5,000-row sample)."""
    with db.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {TRADE_COLUMNS} FROM trades ORDER BY trade_id LIMIT %s", (n,)).fetchall()
        conn.execute("TRUNCATE trades, bars_1s")
        conn.commit()
        t_copy = plain_copy(conn, rows)
        conn.execute("TRUNCATE trades, bars_1s")
        conn.commit()
        sample = rows[:5000]
        t_row = insert_per_row(conn, sample)
    return len(rows) / t_copy, len(sample) / t_row


def rss_run(dsn: str, rate: float, seconds: float) -> list[tuple[float, float]]:
    with db.connect(dsn) as conn:
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
        conn.commit()
    proc, ws = start_exchange(rate)
    out = []
    try:
        cap = Capture(["btcusdt"], source=ws, dsn=dsn).start()
        time.sleep(2.0)
        t0 = time.monotonic()
        out.append((0.0, rss_mb()))
        step = max(5.0, seconds / 10)
        while time.monotonic() - t0 < seconds:
            time.sleep(step)
            out.append((time.monotonic() - t0, rss_mb()))
        cap.stop()
    finally:
        stop_exchange(proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rss-seconds", type=float, default=600.0)
    ap.add_argument("--rates", default="1000,5000,20000")
    ap.add_argument("--rss-only", action="store_true", help="only part 3, in this fresh process")
    args = ap.parse_args()
    with scratch_database("cryptolab_bench_capture") as dsn:
        if args.rss_only:
            rss_report(dsn, args.rss_seconds)
            return
        ceiling = exchange_ceiling(min(args.seconds, 10))
        print(f"local exchange ceiling (bare client, combined stream): {ceiling:,.0f} frames/s", flush=True)
        top = capture_run(dsn, 200_000, args.seconds)
        copy_rate, row_rate = copy_baseline(dsn, 200_000)
        print(f"capture at full speed: {top['rate']:,.0f} rows/s", flush=True)
        print("\n1) sustained throughput, exchange socket → committed rows (offered: as fast as the exchange can)")
        print(f"   {'path':46} {'rows/s':>10} {'vs COPY':>8}")
        for name, r in (("capture (socket → parse → COPY+dedupe+bars)", top["rate"]), ("plain COPY of the same rows, same table", copy_rate),
                        ("INSERT+commit per row (seed, 5k sample)", row_rate)):
            print(f"   {name:46} {r:10,.0f} {r / copy_rate:8.2f}")
        print("\n2) receive → commit latency (ms)")
        print(f"   {'offered/s':>10} {'achieved/s':>11} {'p50':>8} {'p99':>8} {'samples':>9}")
        for rate in [float(x) for x in args.rates.split(",")]:
            r = capture_run(dsn, rate, args.seconds)
            print(f"   {rate:10,.0f} {r['rate']:11,.0f} {r['p50']:8.1f} {r['p99']:8.1f} {r['n']:9,}", flush=True)
        if args.rss_seconds > 0:
            rss_report(dsn, args.rss_seconds)


def rss_report(dsn: str, seconds: float) -> None:
    print(f"\n3) capture RSS at 5,000 trades/s over {seconds:.0f} s (process RSS before the capture: {rss_mb():.1f} MiB)")
    series = rss_run(dsn, 5000, seconds)
    for t, mb in series:
        print(f"   t={t:6.0f} s  RSS {mb:7.1f} MiB")
    print(f"   growth after start: {series[-1][1] - series[0][1]:+.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
