"""Book ingest at full speed: depth diffs + bookTicker quotes through the capture, beside a bare client.

    python benchmarks/bench_book_ingest.py [--record-seconds 20] [--pace-x 200]

1. The local exchange records a synthetic market at BTCUSDT's mix × `--pace-x` (`--pace btcusdt
   --record`): trades, depth@100ms diffs and bookTicker quotes in Binance's raw format, with its
   REST snapshot inline.
2. The recording is replayed as fast as the exchange can send it (`--replay FILE --speed 0`),
   once to a bare client (the stock `websockets` client: receive and count, nothing else) and
   once to a capture (`streams=("depth", "bookTicker")`, its book followed with BookSync and
   every diff, quote and snapshot stored), each in its own process against its own replay.
3. Printed: level updates/s and quotes/s each side reaches (wall time from the first message to
   the last one received, or for the capture to the last row committed), the capture's CPU per
   level update (its process + its PostgreSQL backends, from /proc) and the ratio to the bare
   client. Target (issue 22): ≥ 200k level updates/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import scratch_database
from bench_capture import _cpu_backends, _cpu_self, stop_exchange

ROOT = Path(__file__).resolve().parent.parent


def _exchange(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "-m", "cryptolab.cli.main", "exchange", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    return proc, dict(p.split("=", 1) for p in proc.stdout.readline().split())


def record(path: Path, seconds: float, pace_x: float) -> dict[str, int]:
    proc, _ = _exchange("--seed", "1", "--pace", "btcusdt", "--pace-x", str(pace_x), "--record", str(path))
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    diffs = levels = quotes = 0
    with open(path, "rb") as fh:
        for line in fh:
            if b"@depth@100ms" in line[:80]:
                diffs += 1
                levels += line.count(b"],[") + (line.count(b'"b":[[') + line.count(b'"a":[['))
            elif b"@bookTicker" in line[:80]:
                quotes += 1
    return {"diffs": diffs, "levels": levels, "quotes": quotes}


async def _bare(url: str, want: int) -> dict[str, float]:
    import websockets

    n = 0
    c0 = _cpu_self()
    async with websockets.connect(url, max_size=None, max_queue=4096, compression=None) as c:
        t0 = last = 0.0
        while n < want:
            try:
                await asyncio.wait_for(c.recv(decode=False), 10)
            except asyncio.TimeoutError:
                break
            last = time.monotonic()
            t0 = t0 or last
            n += 1
    return {"messages": n, "wall": last - t0, "cpu": _cpu_self() - c0}


def bare(path: Path, want: int) -> dict[str, float]:
    proc, urls = _exchange("--replay", str(path), "--speed", "0")
    try:
        return asyncio.run(_bare(f"{urls['ws']}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker", want))
    finally:
        stop_exchange(proc)


def _child(args: str) -> None:
    from cryptolab.capture import Capture

    dsn, ws, levels, quotes = json.loads(args)
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    c0, pg0 = _cpu_self(), _cpu_backends(dbname)
    cap = Capture(["btcusdt"], source=ws, dsn=dsn, streams=("depth", "bookTicker"), depth_snapshot=5000).start()
    t_first = t_last = None
    seen = (-1, -1)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        st = cap.status()
        now = time.monotonic()
        if t_first is None and st.messages:
            t_first = now
        if (st.level_updates, st.quotes) != seen:
            seen, t_last = (st.level_updates, st.quotes), now
        if st.level_updates >= levels and st.quotes >= quotes:
            break
        if t_last is not None and now - t_last > 10:
            break
        time.sleep(0.01)
    c1, pg1 = _cpu_self(), _cpu_backends(dbname)
    st = cap.stop()
    pg = sum(pg1[p] - pg0.get(p, 0.0) for p in pg1)
    print(json.dumps({"levels": st.level_updates, "quotes": st.quotes, "diffs": st.book_diffs,
                      "wall": (t_last or 0) - (t_first or 0), "cpu": c1 - c0, "pg": pg, "gaps": len(st.book_gaps),
                      "synced": bool(st.book.get("BTCUSDT", {}).get("synced")), "dead": st.dead_letters}))


def capture(path: Path, dsn: str, levels: int, quotes: int) -> dict[str, float]:
    proc, urls = _exchange("--replay", str(path), "--speed", "0")
    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps([dsn, urls["ws"], levels, quotes])],
                             capture_output=True, text=True, cwd=ROOT)
    finally:
        stop_exchange(proc)
    if out.returncode:
        raise SystemExit(f"the capture run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record-seconds", type=float, default=20.0)
    ap.add_argument("--pace-x", type=float, default=200.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recording.txt"
        rec = record(path, args.record_seconds, args.pace_x)
        print(f"recording: {rec['diffs']:,} diffs carrying {rec['levels']:,} level updates, {rec['quotes']:,} quotes "
              f"({args.record_seconds:g} s at {args.pace_x:g}× BTCUSDT's pace); load {os.getloadavg()[0]:.2f}")
        b = bare(path, rec["diffs"] + rec["quotes"])
        print(f"bare client:  {rec['levels'] / b['wall']:>10,.0f} level updates/s, {rec['quotes'] / b['wall']:>9,.0f} "
              f"quotes/s  ({b['messages']:,} messages in {b['wall']:.2f} s, {b['cpu']:.2f} s CPU)")
        with scratch_database("cryptolab_bench_book_ingest") as dsn:
            c = capture(path, dsn, rec["levels"], rec["quotes"])
        cpu = c["cpu"] + c["pg"]
        print(f"capture:      {c['levels'] / c['wall']:>10,.0f} level updates/s, {c['quotes'] / c['wall']:>9,.0f} "
              f"quotes/s  ({c['diffs']:,} diffs, {c['levels']:,} level updates, {c['quotes']:,} quotes stored in "
              f"{c['wall']:.2f} s; book synced {c['synced']}, gaps {c['gaps']}, dead letters {c['dead']})")
        print(f"capture CPU:  {c['cpu']:.2f} s process + {c['pg']:.2f} s PostgreSQL = "
              f"{cpu / max(c['levels'] + c['quotes'], 1) * 1e6:.2f} µs per level update or quote stored")
        print(f"ratio:        capture {b['wall'] / c['wall']:.2f}× the bare client's speed on the same replay")


if __name__ == "__main__":
    main()
