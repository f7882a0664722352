"""A month of USD-M futures history for one symbol end to end, beside the same month of spot.

    python benchmarks/bench_futures_history.py [--rate 0.5] [--workers 4]

A local exchange (own process) prints a synthetic past reaching back over the last whole calendar
month at `--rate` trades/s; its dump tree serves spot and the synthetic perp (`futures/um`). In one
run, over that month:

* spot aggTrades (`cryptolab history --kind aggTrades`): the baseline;
* futures aggTrades (`--market usdm --kind aggTrades`): the same trades at the perp's price, ms times;
* the rest of a futures month: fundingRate (one monthly file), metrics (one file a day, 5-minute open
  interest), markPriceKlines 1m (one monthly file).

Prints time and rows/s of each and the futures/spot ratio for aggTrades.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from _common import scratch_database

from cryptolab.history import HistoryResult, fetch_history


def _month() -> tuple[date, date]:
    today = datetime.now(timezone.utc).date()
    last = today.replace(day=1) - timedelta(days=1)
    if (today - last).days < 2:
        last = last.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=0.5, help="synthetic trades/s (a busy perp: ~100)")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    from cryptolab.exchange import LocalExchange

    first, last = _month()
    days = (datetime.now(timezone.utc).date() - first).days
    print(f"== a month of history, {first} … {last}, one symbol at {args.rate:g} trades/s ==", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-futures-") as tmp, \
            scratch_database("cryptolab_bench_futures") as dsn, \
            LocalExchange(symbols=["btcusdt"], rate=1, seed=1, history_days=days, history_rate=args.rate,
                          weight_budget=10**7, process=True) as ex:
        print(
            f"local exchange up with its past: {ex.printed('BTCUSDT'):,} trades "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        kw = dict(
            dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=Path(tmp) / "cache", workers=args.workers
        )
        runs: list[tuple[str, HistoryResult]] = [
            ("spot aggTrades (baseline)", fetch_history("BTCUSDT", first, last, kind="aggTrades", **kw)),
            (
                "futures aggTrades",
                fetch_history("BTCUSDT", first, last, kind="aggTrades", market="usdm", **kw),
            ),
            (
                "futures fundingRate",
                fetch_history("BTCUSDT", first, last, kind="fundingRate", market="usdm", **kw),
            ),
            ("futures metrics", fetch_history("BTCUSDT", first, last, kind="metrics", market="usdm", **kw)),
            (
                "futures markPriceKlines 1m",
                fetch_history(
                    "BTCUSDT", first, last, kind="markPriceKlines", interval="1m", market="usdm", **kw
                ),
            ),
        ]
    for name, r in runs:
        print(
            f"{name:28s} {r.seconds:7.2f} s  {r.rows:>10,} rows  {r.rows / r.seconds:>10,.0f} rows/s  "
            f"{r.files_loaded:3d} file(s)  {r.bytes / 1e6:7.1f} MB"
        )
    spot, fut = runs[0][1], runs[1][1]
    total = sum(r.seconds for _, r in runs[1:])
    print(
        f"futures aggTrades / spot aggTrades: {fut.seconds / spot.seconds:.2f}× the time for "
        f"{fut.rows / max(1, spot.rows):.2f}× the rows; a whole futures month (4 kinds): {total:.1f} s"
    )
    print(f"\n(cores: {os.cpu_count()}; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
