"""Headless demo: local exchange → capture → database → report, in one command, offline."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from ..capture import Capture
from ..durations import parse_seconds
from ..storage import db


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="simulator",
                   help="simulator (default: the local exchange, no internet needed), binance, or a URL")
    p.add_argument(
        "--symbols", default="btcusdt,ethusdt", help="comma-separated symbols (default btcusdt,ethusdt)"
    )
    p.add_argument(
        "--seconds",
        type=partial(parse_seconds, name="--seconds"),
        default=30.0,
        help="how long to capture, > 0: seconds or a duration like 2m (default 30)",
    )
    p.add_argument(
        "--rate",
        type=_positive,
        default=200.0,
        help="simulator trades/s in total, split evenly between the symbols, > 0 (default 200)",
    )
    p.add_argument("--out", default=None, help="report directory (default reports/demo-<time>)")
    p.add_argument("--no-report", action="store_true", help="capture and summarize only")


def _positive(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number more than 0")
    return value


def stored_summary(exchange: str, symbols: list[str], since: datetime) -> list[tuple[Any, ...]]:
    """Per symbol: trades, first/last id, Σqty, VWAP and aggressor CVD stored since `since` (exact)."""
    with db.connect() as conn:
        return conn.execute(
            """
            SELECT symbol, count(*), min(trade_id), max(trade_id), sum(qty),
                   round(sum(quote_qty) / nullif(sum(qty), 0), 8) AS vwap,
                   sum(CASE WHEN is_buyer_maker THEN -qty ELSE qty END) AS cvd
            FROM trades
            WHERE exchange = %s AND symbol = ANY(%s) AND ingested_at >= %s
            GROUP BY symbol ORDER BY symbol
            """,
            (exchange, [s.upper() for s in symbols], since),
        ).fetchall()


def run(args: argparse.Namespace) -> int:
    symbols = [s for s in args.symbols.split(",") if s]
    t0 = time.perf_counter()
    with db.connect() as conn:
        version = db.apply_schema(conn)
    print(f"database ready (schema version {version}, {time.perf_counter() - t0:.1f} s)", flush=True)
    since = datetime.now(timezone.utc)
    # the order book too (the local exchange keeps one per symbol): notebook 06 reads what was captured
    cap = Capture(
        symbols, source=args.source, simulator_rate=args.rate, streams=("trade", "depth", "bookTicker")
    )
    cap.start()
    where = cap.local_exchange.ws_url if cap.local_exchange is not None else args.source
    print(
        f"capturing {', '.join(s.upper() for s in symbols)} from {where} for {args.seconds:.0f} s …",
        flush=True,
    )
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            st = cap.status()
            print(
                f"  {st.rows_stored:>8} stored  {st.trades_per_s:7.0f} trades/s  lag "
                + (f"{st.lag_ms:.0f} ms" if st.lag_ms is not None else "-"),
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    final = cap.stop()
    print(final.summary())
    print("\nstored in the database (exact):")
    print(
        f"  {'symbol':10} {'trades':>8} {'first id':>10} {'last id':>10} {'volume':>18} {'VWAP':>18} "
        f"{'CVD':>18}"
    )
    for sym, n, lo, hi, vol, vwap, cvd in stored_summary(cap.exchange, symbols, since):
        print(f"  {sym:10} {n:>8} {lo:>10} {hi:>10} {vol:>18} {vwap:>18} {cvd:>18}")
    if args.no_report:
        return 0
    try:
        from ..report.runner import run_reports
    except ImportError:
        print("(reports are not available in this build)")
        return 0
    out = Path(args.out or f"reports/demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    # no symbol: the report covers every symbol stored on the demo's exchange
    run_reports(out, parameters={"exchange": cap.exchange})  # prints the index's path as its last line
    print(
        "next: open that index.html in a browser; `.venv/bin/cryptolab report` (finds this data by itself), "
        f"`make lab`, or in Python `import cryptolab.analysis as an; an.ohlcv()` — all default to exchange "
        f"{cap.exchange!r} while it holds the only data"
    )
    return 0
