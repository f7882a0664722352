"""Traffic: trades per second (dense), TPS percentiles, bursts, inter-arrival times, ingest rate.

Runs the queries of `sql/traffic_analysis.sql`; arguments and result types as in
`cryptolab.analysis.scope` and `.frames`. Counts are integers; percentiles are observed values
(percentile_disc).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal, overload

import psycopg

from ..errors import DataError
from .args import AGG_MODULE, AsType, DecimalLike, Frame, Kind, TimeLike, parse_decimal
from .execute import run
from .scope import check_buckets, connection, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["tps", "tps_stats", "bursts", "inter_arrival", "inter_arrival_stats", "ingest_throughput"]

_MODULE = "traffic_analysis"
_SECOND = timedelta(seconds=1)


@overload
def tps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
        exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
        as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def tps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
        exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
        as_: Literal["pandas"]) -> pd.DataFrame: ...


def tps(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Trades per second over [start, end), every second present (zero when quiet).

    Columns: ts, trades (int), volume, quote_volume (Decimal). From the 1 s bars, or from
    aggregate trades (`kind`, see `data_kind`: trades = Σ(last − first + 1)).
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, kind=kind)
        check_buckets(span, _SECOND, "range")
        return run(c, AGG_MODULE if span.kind == "aggTrades" else _MODULE, "tps", span.values(), as_)


@overload
def tps_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def tps_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["pandas"]) -> pd.DataFrame: ...


def tps_stats(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """One row: seconds, active_seconds, trades, mean_tps (Decimal), p50, p90, p95, p99, max_tps.

    Percentiles over the dense per-second series (quiet seconds count as zero); `kind` as in `tps`.
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, kind=kind)
        check_buckets(span, _SECOND, "range")
        return run(c, AGG_MODULE if span.kind == "aggTrades" else _MODULE, "tps_stats", span.values(), as_)


@overload
def bursts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
           window: int = ..., factor: DecimalLike = ..., exchange: str | None = ...,
           conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def bursts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
           window: int = ..., factor: DecimalLike = ..., exchange: str | None = ...,
           conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def bursts(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    window: int = 60,
    factor: DecimalLike = 3,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Runs of seconds whose trades exceed `factor` × max(median of the `window` seconds before, 1).

    Columns: burst_start, burst_end (exclusive), seconds, trades, peak_tps, median_before,
    peak_ratio (Decimal, 2 decimals).
    """
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 86_400:
        raise DataError(f"window is a number of seconds from 1 to 86400, not {window!r}")
    k = parse_decimal(factor, "factor")
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        check_buckets(span, _SECOND, "range")
        return run(c, _MODULE, "bursts", span.values(burst_window=window, burst_factor=k), as_)


@overload
def inter_arrival(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def inter_arrival(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["pandas"]) -> pd.DataFrame: ...


def inter_arrival(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Histogram of the time between consecutive trades (id order), in microsecond bins.

    Columns: label, lower_us, upper_us (bin [lower, upper); 'same time' = 0, 'negative' =
    time went back), gaps (int), share, cumulative_share (Decimal, 6 decimals). From raw trades.
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        return run(c, _MODULE, "inter_arrival", span.values(), as_)


@overload
def inter_arrival_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                        *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                        as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def inter_arrival_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                        *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                        as_: Literal["pandas"]) -> pd.DataFrame: ...


def inter_arrival_stats(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """One row: gaps, same_time, negative, mean_us (Decimal), p10_us, p50_us, p90_us, p99_us, max_us."""
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        return run(c, _MODULE, "inter_arrival_stats", span.values(), as_)


@overload
def ingest_throughput(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                      exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                      as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def ingest_throughput(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                      exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                      as_: Literal["pandas"]) -> pd.DataFrame: ...


def ingest_throughput(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Rows stored per second by `ingested_at` (dense), and how many transactions committed them.

    Columns: ts, rows, commits. The range is in ingestion time here, not trade time.
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        check_buckets(span, _SECOND, "range")
        return run(c, _MODULE, "ingest_throughput", span.values(), as_)
