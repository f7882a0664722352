"""Benchmark: `cryptolab report` and the live dashboard's refresh on a big database.

    python benchmarks/bench_report.py                      # 1M trades
    python benchmarks/bench_report.py --trades 1000000 10000000

For each size: N trades of one symbol over one UTC day are written through the real
writer (COPY + bars_1s) into a fresh database on a private embedded server; then

* `run_reports` over the five analysis notebooks, default range (the last stored hour)
  and the whole day, beside the floor of the same run: an empty notebook through
  papermill (kernel start + imports), so the ratio shows what the analyses add;
* the dashboard's refresh per tick (read: the query set; tick: read + tiles + chart
  render) for the 15m, 1h and 1d windows, p50/p95 over 20 ticks, as a share of the 1 s
  refresh budget.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

DAY = datetime(2024, 3, 5, tzinfo=timezone.utc)


def generate(conn, n: int, batch: int = 200_000) -> float:  # type: ignore[no-untyped-def]
    """Write n BTCUSDT trades spread over DAY through TradeWriter; return seconds taken."""
    from cryptolab.model import Trade, datetime_to_us
    from cryptolab.storage.writer import TradeWriter

    rnd = random.Random(7)
    w = TradeWriter(conn)
    base = datetime_to_us(DAY)
    step = 86_400_000_000 / n
    price = 6_500_000  # cents
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        rows = []
        for i in range(lo, min(n, lo + batch)):
            price = max(1, price + rnd.randint(-3, 3))
            t = base + int(i * step)
            rows.append(Trade("binance", "BTCUSDT", i + 1, Decimal(price).scaleb(-2),
                              Decimal(rnd.randint(1, 500_000)).scaleb(-5), rnd.random() < 0.5,
                              t, t + 3_000, t + 40_000, "replay"))
        w.write(rows)

    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def ranges(only: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The report runs to time: 'default' (last stored hour) and/or 'day' (all of DAY)."""
    out = []
    if "default" in only:
        out.append(("default range (last stored hour)", {"symbol": "BTCUSDT"}))
    if "day" in only:
        out.append(("whole day", {"symbol": "BTCUSDT", "start": DAY.isoformat(),
                                  "end": (DAY + timedelta(days=1)).isoformat(), "interval": "5m"}))
    return out


def bench_size(n: int, server_uri: str, out_root: Path, only: list[str], keep: bool) -> None:
    import psycopg

    from cryptolab.notebook.dashboard import Dashboard
    from cryptolab.report.runner import run_reports
    from cryptolab.storage import db

    name = f"bench_report_{n}"
    dsn = psycopg.conninfo.make_conninfo(server_uri, dbname=name)
    os.environ["CRYPTOLAB_DSN"] = dsn
    print(f"\n== {n:,} trades (one symbol, one UTC day)")
    with psycopg.connect(server_uri, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists and keep:
        with db.connect(dsn) as conn:
            have = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
        if have == n:
            print(f"reusing database {name} ({n:,} trades)")
        else:
            exists = None
    if not (exists and keep):
        with psycopg.connect(server_uri, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        with db.connect(dsn) as conn:
            took = generate(conn, n)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")  # autovacuum may not have run yet on fresh data
            bars = conn.execute("SELECT count(*) FROM bars_1s").fetchone()[0]
        print(f"generated through TradeWriter in {took:.1f} s ({n / took:,.0f} trades/s); {bars:,} 1 s bars")

    quiet = lambda _s: None  # noqa: E731
    floor_nb = out_root / "floor" / "00_floor.ipynb"
    if not floor_nb.exists():
        import nbformat
        from nbformat.v4 import new_code_cell, new_notebook

        floor_nb.parent.mkdir(parents=True, exist_ok=True)
        cell = new_code_cell("live = False")
        cell.metadata["tags"] = ["parameters"]
        nb = new_notebook(
            cells=[
                cell,
                new_code_cell("import cryptolab.analysis, cryptolab.notebook.plots, cryptolab.notebook"),
            ]
        )
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(floor_nb))
    t0 = time.perf_counter()
    run_reports(out_root / f"floor_{n}", {}, [str(floor_nb)], progress=quiet)
    floor = time.perf_counter() - t0
    print(f"papermill floor (one empty notebook: kernel + imports): {floor:.1f} s")

    for label, params in ranges(only):
        t0 = time.perf_counter()
        lines: list[str] = []
        run_reports(out_root / f"report_{n}_{label.split()[0]}", params, progress=lines.append)
        total = time.perf_counter() - t0
        per = ", ".join(s.split("] ")[1].replace(".ipynb ok in", "") for s in lines if " ok in " in s)
        print(f"cryptolab report, {label}: {total:.1f} s = {total / floor:.1f}× the floor  [{per}]")

    from cryptolab.notebook.snapshot import read_snapshot

    dash = Dashboard(["BTCUSDT"], dsn=dsn)
    with db.connect(dsn, autocommit=True) as conn:
        for window in ("15m", "1h", "1d"):
            cold = [read_snapshot(conn, "BTCUSDT", window).took_ms for _ in range(5)]
            dash.window = window
            dash.refresh()  # warm the cache
            reads, ticks = [], []
            for _ in range(20):
                t0 = time.perf_counter()
                snap = dash.refresh()
                # as if a new trade had arrived every tick (refresh skips unchanged charts)
                dash.chart.render()
                ticks.append(1000 * (time.perf_counter() - t0))
                reads.append(snap.took_ms)
            print(
                f"dashboard tick, window {window:>3}: read cached p50 {statistics.median(reads):5.1f} ms "
                f"p95 {pct(reads, 0.95):5.1f} ms (uncached p50 {statistics.median(cold):6.1f} ms, once a "
                f"minute) | read+chart p50 {statistics.median(ticks):6.1f} ms p95 {pct(ticks, 0.95):6.1f} ms "
                f"= {statistics.median(ticks) / 10:.0f}% of the 1 s refresh budget"
            )
    dash.close()
    if not keep:
        with psycopg.connect(server_uri, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--trades", type=int, nargs="+", default=[1_000_000], help="database sizes (default 1000000)"
    )
    ap.add_argument(
        "--ranges",
        nargs="+",
        default=["default", "day"],
        choices=["default", "day"],
        help="report ranges to time (default: both)",
    )
    ap.add_argument(
        "--home",
        default=None,
        help="keep the embedded server and the generated databases in this CRYPTOLAB_HOME and reuse them "
        "on the next run (default: a temporary one, removed at the end)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cryptolab-bench-report-") as tmp:
        home = args.home or tmp
        os.environ["CRYPTOLAB_HOME"] = home
        os.environ.pop("CRYPTOLAB_DSN", None)
        from cryptolab.storage import embedded

        uri = embedded.start()
        try:
            for n in args.trades:
                bench_size(n, uri, Path(tmp) / "out", args.ranges, keep=args.home is not None)
        finally:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
