"""cryptolab.analysis: the SQL modules of `sql/` as Python functions returning DataFrames.

Every function takes a symbol (None: the one with the newest stored trade), an optional
[start, end) range (UTC; default: the last stored hour, or less when the data starts
later), an interval where it makes sense (one of `INTERVALS`; None: chosen from the
range), `exchange` (None: the one holding the symbol's data, real `binance` first when
several do), an optional psycopg `conn` (reuse one for repeated calls; a new connection
is opened otherwise) and `as_="polars"` (or "pandas"). `an.ohlcv()` with no arguments
works on whatever is stored. Prices and volumes come back exact: polars Decimal columns
(or decimal strings where 38 digits cannot hold a value), never floats. Bad arguments raise
`cryptolab.errors.DataError` before any SQL runs. `ohlcv`, `tps`, `tps_stats`, `cvd` and
`gaps` take `kind` ("auto", "trades", "aggTrades"): Binance aggregate trades are read
exactly (`sql/agg_trades.sql`) when asked, or by "auto" when the range has no raw trades;
which kind was read is said (a warning on the fallback, a log line otherwise) and
`data_kind(...)` returns it.

| module   | functions |
|----------|-----------|
| price    | ohlcv, live_bars, moving_averages, sma, ema, vwap, volume_profile, pivots, support_resistance |
| traffic  | tps, tps_stats, bursts, inter_arrival, inter_arrival_stats, ingest_throughput |
| quality  | quality_report, source_counts, duplicates, null_counts, timestamp_checks, time_backwards, |
|          | gaps, halts, price_outliers, dead_letter_counts, capture_runs, bars_consistency |
| volume   | stored_symbols, daily_totals, cvd, fetch_klines, reconcile_klines, reconcile_or_skip |
| latency  | latest_trades, latency_stats, clock_offset, clock_skew |
| reader   | load_trades, load_agg_trades |
| futures  | funding, basis, liquidations, open_interest (USD-M perpetuals: `market="usdm"`, |
|          | exchange binance-usdm) |
| scope    | data_kind |
| book     | book_at, book_top, quotes, book_gaps, book_markets (the stored order book: |
|          | docs/book_analysis.md) |
| microstructure | book_stats, trade_costs, effective_spread, quote_stats |
"""

from __future__ import annotations

from .args import INTERVALS
from .book import book_at, book_gaps, book_markets, book_top, quotes
from .futures import basis, funding, liquidations, open_interest
from .latency import clock_offset, clock_skew, latency_stats, latest_trades
from .microstructure import book_stats, effective_spread, quote_stats, trade_costs
from .price import (
    ema,
    live_bars,
    moving_averages,
    ohlcv,
    pivots,
    sma,
    support_resistance,
    volume_profile,
    vwap,
)
from .quality import (
    bars_consistency,
    capture_runs,
    dead_letter_counts,
    duplicates,
    gaps,
    halts,
    null_counts,
    price_outliers,
    quality_report,
    source_counts,
    time_backwards,
    timestamp_checks,
)
from .reader import load_agg_trades, load_trades
from .scope import data_kind
from .traffic import bursts, ingest_throughput, inter_arrival, inter_arrival_stats, tps, tps_stats
from .volume import cvd, daily_totals, fetch_klines, reconcile_klines, reconcile_or_skip, stored_symbols

__all__ = [
    "INTERVALS",
    "data_kind",
    "ohlcv",
    "live_bars",
    "moving_averages",
    "sma",
    "ema",
    "vwap",
    "volume_profile",
    "pivots",
    "support_resistance",
    "tps",
    "tps_stats",
    "bursts",
    "inter_arrival",
    "inter_arrival_stats",
    "ingest_throughput",
    "quality_report",
    "source_counts",
    "duplicates",
    "null_counts",
    "timestamp_checks",
    "time_backwards",
    "gaps",
    "halts",
    "price_outliers",
    "dead_letter_counts",
    "capture_runs",
    "bars_consistency",
    "stored_symbols",
    "daily_totals",
    "cvd",
    "fetch_klines",
    "reconcile_klines",
    "reconcile_or_skip",
    "latest_trades",
    "latency_stats",
    "clock_offset",
    "clock_skew",
    "load_trades",
    "load_agg_trades",
    "funding",
    "basis",
    "liquidations",
    "open_interest",
    "book_at",
    "book_top",
    "quotes",
    "book_gaps",
    "book_markets",
    "book_stats",
    "trade_costs",
    "effective_spread",
    "quote_stats",
]
