"""Capture benchmarks: throughput, receive→commit latency, memory over time.

    python benchmarks/bench_capture.py [--seconds 20] [--rss-seconds 600] [--rss-rate 20000]
                                       [--rates 1000,5000,20000] [--workers 1,2]
                                       [--baseline REV] [--loop asyncio,uvloop] [--repeat 2]
                                       [--no-backpressure]

`--baseline REV` also runs the capture code of git revision REV (e.g. `HEAD~3`), each of its
runs next to one of this tree's, so before/after figures come from one run on one machine
load; `--loop` names the event loops to run this tree's capture on (uvloop if installed).
Part 1 also runs this tree with `backpressure=True` (reading paused while the writer is behind,
instead of spilling to the journal), interleaved with the others; `--no-backpressure` leaves it out.

The local exchange runs in its own process (`cryptolab exchange`, pre-encoded frames)
so it competes for a core, not for this process's GIL. Printed, all from one run:

1. sustained trades/s from the exchange over a real socket to committed rows, beside a
   raw COPY of the same rows and the seed's one INSERT+commit per row (on a sample);
   plus the exchange's own ceiling (a bare client that only counts frames);
2. receive→commit latency p50/p99 at several offered rates;
3. the capture's RSS at start and after --rss-seconds at --rss-rate trades/s;
4. `cryptolab capture --workers N` on two symbols at full speed, for each N of --workers: rows/s
   stored and CPU per row (the capture processes and their PostgreSQL backends, from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from _common import TRADE_COLUMNS, insert_per_row, plain_copy, scratch_database

from cryptolab.capture import Capture
from cryptolab.storage import db


def start_exchange(rate: float, symbols: str = "btcusdt") -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # always this tree's exchange
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "exchange",
            "--symbols",
            symbols,
            "--rate",
            str(rate),
            "--seed",
            "1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    ws = dict(p.split("=", 1) for p in first)["ws"]
    return proc, ws


def stop_exchange(proc: subprocess.Popen[str]) -> None:
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


def exchange_ceiling(seconds: float, client: str = "websockets") -> float:
    """Frames/s one bare client receives from the exchange at an unreachable offered rate.

    `websockets`: the stock asyncio client (the ceiling the issue's ratios use); `picows`
    (if installed): a Cython client, to show how much of that ceiling is the client's own.
    """
    proc, ws = start_exchange(1_000_000)
    url = f"{ws}/stream?streams=btcusdt@trade"
    try:
        return asyncio.run(
            _bare_websockets(url, seconds) if client == "websockets" else _bare_picows(url, seconds)
        )
    finally:
        stop_exchange(proc)


async def _bare_websockets(url: str, seconds: float) -> float:
    import websockets

    async with websockets.connect(url, max_queue=4096, compression=None) as c:
        n, t0 = 0, 0.0
        end = time.monotonic() + seconds + 1
        while time.monotonic() < end:
            await c.recv(decode=False)
            if not t0 and n == 2000:
                t0, n = time.monotonic(), 0
            n += 1
        return n / (time.monotonic() - t0)


async def _bare_picows(url: str, seconds: float) -> float:
    import picows

    count = [0]

    class Counter(picows.WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            frame.get_payload_as_bytes()
            count[0] += 1

    transport, _ = await picows.ws_connect(Counter, url)
    await asyncio.sleep(1.0)
    n0, t0 = count[0], time.monotonic()
    await asyncio.sleep(seconds)
    rate = (count[0] - n0) / (time.monotonic() - t0)
    transport.disconnect()
    return float(rate)


ROOT = Path(__file__).resolve().parent.parent


def capture_run(
    dsn: str,
    rate: float,
    seconds: float,
    code: str | None = None,
    loop: str = "asyncio",
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """One capture against a fresh exchange at `rate`: rows/s stored, receive→commit p50/p99 (ms).

    The capture runs in a child process importing `cryptolab` from `code` (a tree extracted
    from another revision) or from this tree; `loop` is its event loop, `options` its
    CaptureOptions overrides (e.g. backpressure=True).
    """
    with db.connect(dsn) as conn:  # each run's exchange numbers trades from 1 again
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
        conn.commit()
    proc, ws = start_exchange(rate)
    try:
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = code
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps([dsn, ws, seconds, loop, options or {}])],
            env=env,
            cwd=code or ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        stop_exchange(proc)
    if out.returncode:
        raise SystemExit(f"the capture run failed ({code or 'this tree'}, {loop}):\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _child(args: str) -> None:
    dsn, ws, seconds, loop, options = json.loads(args)
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the capture thread's new_event_loop()
    from cryptolab.capture import Capture

    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    cap = Capture(["btcusdt"], source=ws, dsn=dsn, **options).start()
    time.sleep(1.0)
    s0, t0, c0, pg0 = cap.status().rows_stored, time.monotonic(), _cpu_self(), _cpu_backends(str(dbname))
    cap.reset_latencies()
    time.sleep(seconds)
    s1, t1, c1, pg1 = cap.status().rows_stored, time.monotonic(), _cpu_self(), _cpu_backends(str(dbname))
    lat = sorted(cap.latencies_us())
    c = cap.counters
    events = {k: float(getattr(c, k, 0)) for k in ("spilled", "reconnects", "read_pauses", "backfilled")}
    cap.stop()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")

    rows = max(s1 - s0, 1)
    pg = sum(pg1[pid] - pg0[pid] for pid in pg1 if pid in pg0)
    print(
        json.dumps(
            {
                "rate": (s1 - s0) / (t1 - t0),
                "p50": q(0.50),
                "p99": q(0.99),
                "n": len(lat),
                "cpu_us": (c1 - c0) / rows * 1e6,
                "pg_us": pg / rows * 1e6,
                "load": os.getloadavg()[0],
                **events,
            }
        )
    )


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_self() -> float:
    """CPU seconds (user + system) this process used so far."""
    t = os.times()
    return t.user + t.system


def _cpu_backends(dbname: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to `dbname` (from /proc)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
            if not cmd.startswith(b"postgres: ") or f" {dbname} ".encode() not in cmd:
                continue
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


def extract(rev: str) -> str:
    """The tree of git revision `rev`, in a temporary directory (left for the OS to clean)."""
    where = tempfile.mkdtemp(prefix="cryptolab-bench-baseline-")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True)
    return where


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


def workers_run(dsn: str, workers: int, seconds: float) -> dict[str, float]:
    """`cryptolab capture --workers N` of two symbols against an exchange sending as fast as it
    can: rows/s stored over the run, CPU per row of the capture processes and their backends."""
    import threading

    with db.connect(dsn) as conn:
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
        conn.commit()
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    proc, ws = start_exchange(1_000_000, "btcusdt,ethusdt")
    seen: dict[int, tuple[float, float]] = {}  # backend pid -> (first, last) CPU seconds seen
    counts: list[tuple[float, int]] = []  # (time, rows stored)
    done = threading.Event()

    def sample() -> None:  # backends exit with the capture: keep what each used while alive
        with db.connect(dsn) as conn:
            conn.autocommit = True
            while not done.is_set():
                for pid, cpu in _cpu_backends(dbname).items():
                    seen[pid] = (seen.get(pid, (cpu, cpu))[0], cpu)
                n = conn.execute("SELECT count(*) FROM trades").fetchone()
                counts.append((time.monotonic(), int(n[0]) if n else 0))
                done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        subprocess.run(
            [sys.executable, "-m", "cryptolab.cli.main", "capture", "--symbols", "btcusdt,ethusdt",
             "--source", ws, "--dsn", dsn, "--workers", str(workers), "--seconds", str(seconds), "--quiet"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
    finally:
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        exchange_cpu = _cpu_of(proc.pid)
        stop_exchange(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with db.connect(dsn) as conn:
        rows = int(conn.execute("SELECT count(*) FROM trades").fetchone()[0])  # type: ignore[index]
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) - exchange_cpu
    pg = sum(last - first for first, last in seen.values())
    # steady rate: rows committed over the middle half of the run (not the start, not the final flush)
    mid = [c for c in counts if t0 + wall * 0.25 <= c[0] <= t0 + wall * 0.75]
    rate = (mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0]) if len(mid) > 1 else rows / wall
    return {"rows": rows, "wall": wall, "rate": rate, "cpu_us": own / max(rows, 1) * 1e6,
            "pg_us": pg / max(rows, 1) * 1e6}


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
    ap.add_argument("--rss-rate", type=float, default=20_000.0, help="trades/s of the RSS run (part 3)")
    ap.add_argument("--workers", default="1,2", help="part 4: capture processes to compare ('' skips)")
    ap.add_argument(
        "--baseline", metavar="REV", help="also run the capture code of this git revision, interleaved"
    )
    ap.add_argument("--loop", default="asyncio", help="event loops for this tree's capture: asyncio,uvloop")
    ap.add_argument("--repeat", type=int, default=1, help="full-speed runs per variant (interleaved)")
    ap.add_argument(
        "--backpressure",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="part 1 also runs this tree with backpressure=true (default; --no-backpressure skips it)",
    )
    ap.add_argument("--rss-only", action="store_true", help="only part 3, in this fresh process")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    variants: list[tuple[str, str | None, str]] = []
    if args.baseline:
        variants.append((f"{args.baseline} (baseline)", extract(args.baseline), "asyncio"))
    for loop in args.loop.split(","):
        variants.append(("this tree" + ("" if loop == "asyncio" else f", {loop}"), None, loop))
    # part 1 only: at the rates of part 2 the writer keeps up, so backpressure never acts there
    full_speed: list[tuple[str, str | None, str, dict[str, Any]]] = [(*v, {}) for v in variants]
    if args.backpressure:
        full_speed.append(("this tree, backpressure=true", None, "asyncio", {"backpressure": True}))
    with scratch_database("cryptolab_bench_capture") as dsn:
        if args.rss_only:
            rss_report(dsn, args.rss_seconds, args.rss_rate)
            return
        print(
            f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)",
            flush=True,
        )
        ceiling = exchange_ceiling(min(args.seconds, 10))
        print(
            f"local exchange ceiling (bare websockets client, combined stream): {ceiling:,.0f} frames/s",
            flush=True,
        )
        try:
            import picows  # noqa: F401

            fast_bare = exchange_ceiling(min(args.seconds, 10), "picows")
            print(
                f"  the same exchange to a bare picows (Cython) client:            {fast_bare:,.0f} frames/s",
                flush=True,
            )
        except ImportError:
            pass
        tops: dict[str, list[float]] = {name: [] for name, _, _, _ in full_speed}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _, _ in full_speed}
        for _ in range(args.repeat):
            for name, code, loop, options in full_speed:
                r = capture_run(dsn, 200_000, args.seconds, code, loop, options)
                tops[name].append(r["rate"])
                cpu[name].append((r["cpu_us"], r["pg_us"]))
                print(
                    f"capture at full speed, {name}: {r['rate']:,.0f} rows/s ({r['rate'] / ceiling:.2f}x the "
                    f"bare client); CPU per row: capture process {r['cpu_us']:.1f} µs, its PostgreSQL "
                    f"backends {r['pg_us']:.1f} µs; spilled {r.get('spilled', 0):,.0f}, read pauses "
                    f"{r.get('read_pauses', 0):,.0f}, reconnects {r.get('reconnects', 0):,.0f}, backfilled "
                    f"{r.get('backfilled', 0):,.0f}; load {r.get('load', 0):.2f}",
                    flush=True,
                )
        copy_rate, row_rate = copy_baseline(dsn, 200_000)
        print(
            "\n1) sustained throughput, exchange socket → committed rows (offered: as fast as the exchange "
            "can)"
        )
        rows = [(f"capture, {name} (socket → parse → COPY+dedupe+bars)", max(r)) for name, r in tops.items()]
        rows += [
            ("plain COPY of the same rows, same table", copy_rate),
            ("INSERT+commit per row (seed, 5k sample)", row_rate),
        ]
        w = max(58, *(len(name) for name, _ in rows))
        print(f"   {'path':{w}} {'rows/s':>10} {'vs COPY':>8} {'vs bare':>8}")
        for name, rate in rows:
            print(f"   {name:{w}} {rate:10,.0f} {rate / copy_rate:8.2f} {rate / ceiling:8.2f}")
        if args.repeat > 1:
            print(
                "   (capture: best of",
                args.repeat,
                "runs; all runs:",
                "; ".join(f"{n}: " + ", ".join(f"{x:,.0f}" for x in r) for n, r in tops.items()) + ")",
            )
        print(
            "   CPU per row committed during the run at full speed (median of runs; rows spilled to the"
            " journal meanwhile are not counted, so this overstates the cost per row: part 4 counts every"
            " row):"
        )
        for name, pairs in cpu.items():
            own, pg = (
                sorted(p[0] for p in pairs)[len(pairs) // 2],
                sorted(p[1] for p in pairs)[len(pairs) // 2],
            )
            print(f"     {name:40} capture process {own:6.1f} µs   PostgreSQL backends {pg:6.1f} µs")
        print("\n2) receive → commit latency (ms), and CPU per stored row when the capture keeps up (µs)")
        print(
            f"   {'code':22} {'offered/s':>10} {'achieved/s':>11} {'p50':>8} {'p99':>8} {'samples':>9}"
            f" {'capture':>8} {'PG':>6}"
        )
        for rate in [float(x) for x in args.rates.split(",") if x]:
            for name, code, loop in variants:
                r = capture_run(dsn, rate, args.seconds, code, loop)
                print(
                    f"   {name:22} {rate:10,.0f} {r['rate']:11,.0f} {r['p50']:8.1f} {r['p99']:8.1f} "
                    f"{r['n']:9,.0f} {r['cpu_us']:8.1f} {r['pg_us']:6.1f}",
                    flush=True,
                )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        if args.rss_seconds > 0:
            rss_report(dsn, args.rss_seconds, args.rss_rate)
        if args.workers:
            workers_report(dsn, [int(x) for x in args.workers.split(",")], args.seconds)


def workers_report(dsn: str, counts: list[int], seconds: float) -> None:
    print(
        "\n4) `cryptolab capture --workers N`, btcusdt + ethusdt from one exchange sending as fast as it can "
        f"({seconds:.0f} s each)"
    )
    base = None
    for n in counts:
        r = workers_run(dsn, n, seconds)
        base = base or r["rate"]
        print(
            f"   --workers {n}: {r['rate']:9,.0f} rows/s committed "
            f"({r['rate'] / base:.2f}x --workers {counts[0]}); "
            f"{r['rows']:,.0f} rows stored in all; CPU per stored row: processes {r['cpu_us']:.1f} µs, "
            f"PostgreSQL backends {r['pg_us']:.1f} µs",
            flush=True,
        )


def rss_report(dsn: str, seconds: float, rate: float = 20_000.0) -> None:
    print(
        f"\n3) capture RSS at {rate:,.0f} trades/s over {seconds:.0f} s "
        f"(process RSS before the capture: {rss_mb():.1f} MiB)"
    )
    series = rss_run(dsn, rate, seconds)
    for t, mb in series:
        print(f"   t={t:6.0f} s  RSS {mb:7.1f} MiB")
    print(f"   growth after start: {series[-1][1] - series[0][1]:+.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
