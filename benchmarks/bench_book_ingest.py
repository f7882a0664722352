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


def record(path: Path, seconds: float, pace_x: float, symbols: list[str]) -> dict[str, int]:
    proc, _ = _exchange(
        "--seed", "1", "--pace", ",".join(symbols), "--pace-x", str(pace_x), "--record", str(path)
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    diffs = levels = quotes = 0
    with open(path, "rb") as fh:
        for line in fh:
            if b"@depth@100ms" in line[:90]:
                diffs += 1
                levels += line.count(b"],[") + (line.count(b'"b":[[') + line.count(b'"a":[['))
            elif b"@bookTicker" in line[:90]:
                quotes += 1
    return {"diffs": diffs, "levels": levels, "quotes": quotes}


def write_ceiling_recording(path: Path, diffs: int, levels: int) -> dict[str, int]:
    """A depth-only recording of `diffs` BTCUSDT-shaped diffs of ~`levels` levels (a consistent,
    never-crossed synthetic book, `analysis.book_synth`), its snapshot first, in Binance's format:
    a source much faster than a capture, to find the capture's own ceiling."""
    import orjson

    from cryptolab.analysis.book_synth import synthetic_book
    from cryptolab.book import BookSnapshot, DepthDiff

    t0 = 1_735_689_600_000_000
    n = lv = 0
    snapshot: bytes | None = None
    with open(path, "wb") as fh:
        for r in synthetic_book(
            "binance", "BTCUSDT", t0, t0 + diffs * 100_000, levels=levels, quotes=False, snapshot_levels=1000
        ):
            if (
                type(r) is BookSnapshot
            ):  # written after the first diff (a bare snapshot line follows its symbol's diff)
                snapshot = orjson.dumps({"lastUpdateId": r.last_update_id, "bids": r.bids, "asks": r.asks})
                continue
            if type(r) is DepthDiff:
                ns = r.event_time_us * 1000
                n += 1
                lv += len(r.bids) + len(r.asks)
                body = orjson.dumps(
                    {
                        "stream": "btcusdt@depth@100ms",
                        "data": {
                            "e": "depthUpdate",
                            "E": r.event_time_us // 1000,
                            "s": "BTCUSDT",
                            "U": r.first_id,
                            "u": r.last_id,
                            "b": r.bids,
                            "a": r.asks,
                        },
                    }
                )
            else:
                continue
            fh.write(b"%d %s\n" % (ns, body))
            # one trade beside each diff: the replay is driven by a recording's trades (not subscribed here)
            fh.write(
                b'%d {"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":%d,'
                b'"p":"61800.00000000","q":"0.00100000","T":%d,"m":true,'
                b'"M":true}}\n' % (ns, ns // 1_000_000, n, ns // 1_000_000)
            )
            if snapshot is not None:
                fh.write(b"%d %s\n" % (ns, snapshot))
                snapshot = None
    return {"diffs": n, "levels": lv}


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


def bare(path: Path, want: int, streams: str) -> dict[str, float]:
    proc, urls = _exchange("--replay", str(path), "--speed", "0")
    try:
        return asyncio.run(_bare(f"{urls['ws']}/stream?streams={streams}", want))
    finally:
        stop_exchange(proc)


def _child(args: str) -> None:
    from cryptolab.capture import Capture

    dsn, ws, levels, quotes, symbols = json.loads(args)
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    c0, pg0 = _cpu_self(), _cpu_backends(dbname)
    streams = ("depth", "bookTicker") if quotes else ("depth",)
    cap = Capture(symbols, source=ws, dsn=dsn, streams=streams, depth_snapshot=5000).start()
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
    print(
        json.dumps(
            {
                "levels": st.level_updates,
                "quotes": st.quotes,
                "diffs": st.book_diffs,
                "wall": (t_last or 0) - (t_first or 0),
                "cpu": c1 - c0,
                "pg": pg,
                "gaps": len(st.book_gaps),
                "synced": all(b.get("synced") for b in st.book.values()) and len(st.book) == len(symbols),
                "dead": st.dead_letters,
            }
        )
    )


def capture(path: Path, dsn: str, levels: int, quotes: int, symbols: list[str]) -> dict[str, float]:
    proc, urls = _exchange("--replay", str(path), "--speed", "0")
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps([dsn, urls["ws"], levels, quotes, symbols])],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    finally:
        stop_exchange(proc)
    if out.returncode:
        raise SystemExit(f"the capture run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record-seconds", type=float, default=20.0)
    ap.add_argument("--pace-x", type=float, default=100.0)
    ap.add_argument(
        "--symbols",
        default="btcusdt,ethusdt,solusdt,bnbusdt,xrpusdt,adausdt,dogeusdt,ltcusdt",
        help="symbols at the real mix each (the exchange caps one book's flow at 10k changes/s)",
    )
    ap.add_argument(
        "--ceiling-diffs", type=int, default=60_000, help="diffs in the ceiling's synthetic recording"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recording.txt"
        symbols = [s.strip().lower() for s in args.symbols.split(",") if s.strip()]
        rec = record(path, args.record_seconds, args.pace_x, symbols)
        both = "/".join(f"{s}@depth@100ms/{s}@bookTicker" for s in symbols)
        depth = "/".join(f"{s}@depth@100ms" for s in symbols)
        print(
            f"recording: {rec['diffs']:,} diffs carrying {rec['levels']:,} level updates, {rec['quotes']:,} "
            f"quotes ({len(symbols)} symbols, {args.record_seconds:g} s at {args.pace_x:g}× BTCUSDT's pace "
            f"each); load {os.getloadavg()[0]:.2f}"
        )
        b = bare(path, rec["diffs"] + rec["quotes"], both)
        print(
            f"bare client:  {rec['levels'] / b['wall']:>10,.0f} level updates/s, "
            f"{rec['quotes'] / b['wall']:>9,.0f} quotes/s  ({b['messages']:,} messages in {b['wall']:.2f} s, "
            f"{b['cpu']:.2f} s CPU)"
        )
        with scratch_database("cryptolab_bench_book_ingest") as dsn:
            c = capture(path, dsn, rec["levels"], rec["quotes"], symbols)
        cpu = c["cpu"] + c["pg"]
        print(
            f"capture:      {c['levels'] / c['wall']:>10,.0f} level updates/s, "
            f"{c['quotes'] / c['wall']:>9,.0f} quotes/s  ({c['diffs']:,} diffs, {c['levels']:,} level "
            f"updates, {c['quotes']:,} quotes stored in {c['wall']:.2f} s; book synced {c['synced']}, gaps "
            f"{c['gaps']}, dead letters {c['dead']})"
        )
        print(
            f"capture CPU:  {c['cpu']:.2f} s process + {c['pg']:.2f} s PostgreSQL = "
            f"{cpu / max(c['levels'] + c['quotes'], 1) * 1e6:.2f} µs per level update or quote stored"
        )
        print(
            f"ratio:        capture {b['wall'] / c['wall']:.2f}× the bare client's speed on the same replay"
        )
        # the diffs alone (no quotes): what the book path itself does per level update
        b = bare(path, rec["diffs"], depth)
        with scratch_database("cryptolab_bench_book_ingest") as dsn:
            c = capture(path, dsn, rec["levels"], 0, symbols)
        print(
            f"depth only:   bare client {rec['levels'] / b['wall']:,.0f} level updates/s; capture "
            f"{c['levels'] / c['wall']:,.0f} level updates/s ({c['cpu']:.2f} s process + {c['pg']:.2f} s "
            f"PostgreSQL = {(c['cpu'] + c['pg']) / max(c['levels'], 1) * 1e6:.2f} µs per level update; book "
            f"synced {c['synced']}, gaps {c['gaps']})"
        )
        # the capture's own ceiling: a depth-only recording of real-sized diffs, sent faster than it
        # can take them
        ceiling = Path(tmp) / "ceiling.txt"
        rec = write_ceiling_recording(ceiling, args.ceiling_diffs, 46)
        b = bare(ceiling, rec["diffs"], "btcusdt@depth@100ms")
        with scratch_database("cryptolab_bench_book_ingest") as dsn:
            c = capture(ceiling, dsn, rec["levels"], 0, ["btcusdt"])
        print(
            f"ceiling:      {rec['diffs']:,} synthetic diffs of ~46 levels ({rec['levels']:,} level "
            f"updates): bare client {rec['levels'] / b['wall']:,.0f} level updates/s, capture "
            f"{c['levels'] / c['wall']:,.0f} level updates/s "
            f"({(c['cpu'] + c['pg']) / max(c['levels'], 1) * 1e6:.2f} µs CPU per level update with "
            f"PostgreSQL; book synced {c['synced']}, gaps {c['gaps']}; stored {c['levels']:,})"
        )


if __name__ == "__main__":
    main()
