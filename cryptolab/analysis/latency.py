"""Latency: where the time goes between a trade and its stored row, and our clock's offset.

Components (durations): exchange_push = E − T, network = received − E (network, client and
the offset between our clock and the exchange's), pipeline = ingested − received, total =
ingested − T. Runs the queries of `sql/latency.sql`; arguments and result types as in
`cryptolab.analysis.scope` and `.frames` (durations are `pl.Duration("us")`). Latency applies to trades a
capture took from the stream (source 'live' or 'simulator') received within a day of their
trade time; trades fetched from REST ('backfill'), loaded dumps and stream recordings
('replay': ingested when the file was loaded) and history replayed through a stream (received
long after its trade time: years-old trades, not a pipeline delay) have null latencies —
latency does not apply to them — and are left out of the percentiles; `latency_stats`
counts them in `history`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, overload

import psycopg

from ..errors import CryptolabError, DataError, SourceError
from .args import AsType, Frame, TimeLike, parse_interval
from .execute import run
from .scope import check_buckets, connection, interval_for, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["latest_trades", "latency_stats", "clock_offset", "clock_skew"]

_MODULE = "latency"


@overload
def latest_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  limit: int = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def latest_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  limit: int = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["pandas"]) -> pd.DataFrame: ...


def latest_trades(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    limit: int = 50,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The newest `limit` trades of [start, end) (newest first) with their latency breakdown.

    Like every other function it takes `start, end`; without `start` the newest trades are
    returned whatever their age. Columns: trade_id, trade_time, event_time, received_at,
    ingested_at, source, price, qty (Decimal), is_buyer_maker, exchange_push, network,
    pipeline, total (durations; null where latency does not apply — see the module doc).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1_000_000:
        raise DataError(f"limit must be a whole number from 1 to 1,000,000, not {limit!r}")
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        values = span.values(limit=limit)
        if start is None and span.first_stored is not None:
            values["start"] = span.first_stored  # latest N whatever their age
        return run(c, _MODULE, "latest_trades", values, as_)


@overload
def latency_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                  interval: str | None = ..., *, exchange: str | None = ...,
                  conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def latency_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                  interval: str | None = ..., *, exchange: str | None = ...,
                  conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def latency_stats(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Per interval: trades, streamed, and p50/p95/p99/max of push, network, pipeline, total.

    Percentiles are observed values (percentile_disc); only intervals with trades appear.
    `streamed` counts the trades latency applies to, `history` those it does not (loaded or
    replayed history); an interval with only history has null percentiles.
    """
    if interval is not None:
        parse_interval(interval)
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        iv, step = interval_for(span, interval)
        check_buckets(span, step)
        return run(c, _MODULE, "latency_stats", span.values(interval=iv), as_)


@overload
def clock_offset(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def clock_offset(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["pandas"]) -> pd.DataFrame: ...


def clock_offset(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """What stored times say about our clock: one row streamed, min_network, p1_network, p50_network.

    min(received − E) = clock offset + fastest one-way trip: a negative value proves our
    clock runs behind the exchange's by at least that much.
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        return run(c, _MODULE, "clock_offset", span.values(), as_)


async def _probe(base_url: str, samples: int) -> list[tuple[int, int, int]]:
    from ..binance.rest import RestClient

    out = []
    async with RestClient(base_url) as client:
        for _ in range(samples):
            before = time.time_ns() // 1000
            server_ms = await client.server_time()
            after = time.time_ns() // 1000
            out.append((before, int(server_ms), after))
    return out


@overload
def clock_skew(base_url: str, *, samples: int = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def clock_skew(base_url: str, *, samples: int = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def clock_skew(base_url: str, *, samples: int = 5, as_: AsType = "polars") -> Frame:
    """Our clock against the exchange's `/api/v3/time` (NTP-style, best of `samples` round trips).

    One row: samples, rtt (shortest round trip), offset (exchange − local at the midpoint
    of that round trip: positive means our clock is behind), offset_low, offset_high (the
    bounds the round trip and the server's millisecond resolution allow).
    """
    import polars as pl

    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 100:
        raise DataError(f"samples must be a whole number from 1 to 100, not {samples!r}")
    from ..aio import run_sync

    try:
        probes = run_sync(_probe(base_url, samples))
    except CryptolabError:
        raise
    except Exception as exc:
        raise SourceError(f"could not ask {base_url} for its time: {exc}") from None
    before, server_ms, after = min(probes, key=lambda p: p[2] - p[0])
    server_us = server_ms * 1000
    mid = (before + after) // 2
    frame = pl.DataFrame(
        {
            "samples": [len(probes)],
            "rtt": [timedelta(microseconds=after - before)],
            "offset": [timedelta(microseconds=server_us + 500 - mid)],
            "offset_low": [timedelta(microseconds=server_us - after)],
            "offset_high": [timedelta(microseconds=server_us + 1000 - before)],
        },
        schema={"samples": pl.Int64, "rtt": pl.Duration("us"), "offset": pl.Duration("us"),
                "offset_low": pl.Duration("us"), "offset_high": pl.Duration("us")},
    )
    return frame.to_pandas() if as_ == "pandas" else frame
