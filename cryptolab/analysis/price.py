"""Price: OHLCV at any interval, SMA/EMA, VWAP with sigma bands, volume profile, pivots.

Runs the queries of `sql/price_analysis.sql`. Arguments and result types are those of
`cryptolab.analysis.scope` and `.frames`: exact `pl.Decimal` columns for prices and volumes (strings
if a value would not fit 38 digits), UTC datetimes, nothing through float.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg

from ..errors import DataError
from .args import (
    AGG_MODULE,
    AsType,
    DecimalLike,
    Frame,
    Kind,
    TimeLike,
    as_frame,
    check_as,
    parse_decimal,
    parse_interval,
    parse_time,
    parse_window,
)
from .execute import execute, run
from .frames import decimal_series
from .scope import check_buckets, connection, interval_for, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "ohlcv",
    "live_bars",
    "moving_averages",
    "sma",
    "ema",
    "vwap",
    "volume_profile",
    "pivots",
    "support_resistance",
]

_MODULE = "price_analysis"
_TIME_OF_DAY = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


@overload
def ohlcv(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
          interval: str | None = ..., *, exchange: str | None = ..., kind: Kind = ...,
          conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def ohlcv(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
          interval: str | None = ..., *, exchange: str | None = ..., kind: Kind = ...,
          conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def ohlcv(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    exchange: str | None = None,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """OHLCV bars per `interval` over [start, end), empty intervals included (OHLC null, volume 0).

    Columns: open_time, open, high, low, close, volume, quote_volume, taker_buy_volume,
    taker_buy_quote (Decimal), trades, first_trade_id, last_trade_id (int). Open and close
    follow trade-id order; built from the stored 1 s bars. `kind` (see `data_kind`): from
    aggregate trades, open/close follow agg_id order and trades = Σ(last − first + 1).
    """
    if interval is not None:
        parse_interval(interval)
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, kind=kind)
        iv, step = interval_for(span, interval)
        check_buckets(span, step)
        module = AGG_MODULE if span.kind == "aggTrades" else _MODULE
        return run(c, module, "ohlcv", span.values(interval=iv), as_)


@overload
def live_bars(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def live_bars(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["pandas"]) -> pd.DataFrame: ...


def live_bars(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The stored 1 s bars of [start, end) with delta, running CVD and VWAP — one cheap query.

    Made for a live chart's refresh (default: the last stored hour). Columns: ts, open,
    high, low, close, volume, delta (taker buy − taker sell), cvd (running delta from
    start), vwap (anchored at start, 20 decimals) as Decimal; trades (int).
    Seconds without trades have no row (use `ohlcv(..., "1s")` for the dense series).
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        return run(c, _MODULE, "live_bars", span.values(), as_)


@overload
def moving_averages(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                    interval: str | None = ..., *, window: int = ..., span: int = ...,
                    exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                    as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def moving_averages(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                    interval: str | None = ..., *, window: int = ..., span: int = ...,
                    exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                    as_: Literal["pandas"]) -> pd.DataFrame: ...


def moving_averages(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    window: int = 20,
    span: int = 20,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Close, SMA(`window` intervals) and EMA(`span`) per interval.

    Columns: open_time, close (null when nothing traded), price (close carried over empty
    intervals), sma (Decimal, 12 decimals, null until `window` prices are known), ema
    (Decimal: ema + (price - ema) * 2 / (span + 1), rounded to 12 decimals each step,
    seeded with the first price).
    """
    if interval is not None:
        parse_interval(interval)
    _positive_int(window, "window")
    _positive_int(span, "span")
    with connection(conn) as c:
        rng = resolve_span(c, symbol, start, end, exchange)
        iv, step = interval_for(rng, interval)
        check_buckets(rng, step)
        return run(c, _MODULE, "moving_averages", rng.values(interval=iv, window=window, span=span), as_)


@overload
def sma(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, window: int = ..., exchange: str | None = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def sma(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, window: int = ..., exchange: str | None = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def sma(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    window: int = 20,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Simple moving average of the close over `window` intervals (see `moving_averages`)."""
    check_as(as_)
    frame = moving_averages(symbol, start, end, interval, window=window, exchange=exchange, conn=conn)
    return as_frame(frame[["open_time", "close", "price", "sma"]], as_)


@overload
def ema(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, span: int = ..., exchange: str | None = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def ema(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, span: int = ..., exchange: str | None = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def ema(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    span: int = 20,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Exponential moving average of the close with `span` (see `moving_averages`)."""
    check_as(as_)
    frame = moving_averages(symbol, start, end, interval, span=span, exchange=exchange, conn=conn)
    return as_frame(frame[["open_time", "close", "price", "ema"]], as_)


@overload
def vwap(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
         interval: str | None = ..., *, mode: Literal["session", "anchored", "rolling"] = ...,
         anchor: TimeLike | None = ..., window: str | int | None = ..., session_start: str = ...,
         bands: bool = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
         as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def vwap(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
         interval: str | None = ..., *, mode: Literal["session", "anchored", "rolling"] = ...,
         anchor: TimeLike | None = ..., window: str | int | None = ..., session_start: str = ...,
         bands: bool = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
         as_: Literal["pandas"]) -> pd.DataFrame: ...


def vwap(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    mode: Literal["session", "anchored", "rolling"] = "session",
    anchor: TimeLike | None = None,
    window: str | int | None = None,
    session_start: str = "00:00",
    bands: bool = False,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """VWAP = exact sum(price*qty) / sum(qty) at the end of each interval, three ways.

    * mode="session": restarts every UTC day at `session_start` ('HH:MM'); counted from the
      session's start even when `start` is later.
    * mode="anchored": accumulates from `anchor` (a time; default `start`).
    * mode="rolling": over the trailing `window` (a duration like '5m', or a number of
      intervals), a multiple of `interval`.

    Columns: open_time, anchor (where the accumulation began), close, volume, quote_volume,
    cum_volume, cum_quote_volume, vwap (Decimal, 20 decimals), and with `bands=True` sigma
    (volume-weighted standard deviation of trade prices, from the 1 s bars' Σq·p², 12 decimals) and
    upper_1/lower_1/upper_2/lower_2 = vwap ± 1 and 2 sigma; without bands these are null.
    """
    if interval is not None:
        parse_interval(interval)
    if mode not in ("session", "anchored", "rolling"):
        raise DataError(f"mode {mode!r} is not a VWAP mode: use 'session', 'anchored' or 'rolling'")
    if not isinstance(bands, bool):
        raise DataError(f"bands must be True or False, not {bands!r}")
    offset = _time_of_day(session_start) if mode == "session" else timedelta(0)
    if mode == "rolling":
        if window is None:
            raise DataError("rolling VWAP needs window: a duration like '5m' or a number of intervals")
        if isinstance(window, bool) or not isinstance(window, (int, str)):
            raise DataError(f"window must be a duration like '5m' or a number of intervals, not {window!r}")
        if isinstance(window, int):
            _positive_int(window, "window")
        else:
            parse_window(window, name="window")
    with connection(conn) as c:
        rng = resolve_span(c, symbol, start, end, exchange)
        iv, step = interval_for(rng, interval)
        extra: dict[str, Any] = {"interval": iv, "bands": bands}
        if mode == "session":
            day = timedelta(days=1)
            if day % step or offset % step:
                raise DataError(
                    f"interval {iv} must divide a day and the session start {session_start}: "
                    "use e.g. '1m', '5m', '1h'"
                )
            extra["session_start"] = offset
        elif mode == "rolling":
            win = step * window if isinstance(window, int) else parse_window(window, name="window")
            if win % step:
                raise DataError(
                    f"window {window} is not a whole number of {iv} intervals: use a multiple of {iv}"
                )
            extra["vwap_window"] = f"{int(win.total_seconds())}s"
        if mode == "anchored":
            a = parse_time(anchor, "anchor") if anchor is not None else rng.start
            assert a is not None
            if a > rng.end:
                raise DataError(
                    f"anchor {a.isoformat()} is after end {rng.end.isoformat()}: "
                    "anchor inside or before the range"
                )
            extra["anchor"] = a
            check_buckets(rng, step)
            if a < rng.start and (rng.end - a) / step > 5_000_000:
                raise DataError("anchor is too far before start for this interval: use a larger interval")
        else:
            check_buckets(rng, step)
        return run(c, _MODULE, f"vwap_{mode}", rng.values(**extra), as_)


@overload
def volume_profile(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   bin_size: DecimalLike | None = ..., bins: int = ..., value_area: DecimalLike = ...,
                   exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                   as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def volume_profile(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   bin_size: DecimalLike | None = ..., bins: int = ..., value_area: DecimalLike = ...,
                   exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                   as_: Literal["pandas"]) -> pd.DataFrame: ...


def volume_profile(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    bin_size: DecimalLike | None = None,
    bins: int = 100,
    value_area: DecimalLike = "0.70",
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Traded volume per price bin over [start, end), from raw trades.

    Bins are [price_low, price_high) multiples of `bin_size` (default: the smallest multiple
    of the price tick — the finest price step traded — giving at most `bins` bins), dense
    between the lowest and highest price. Columns: price_low, price_high, volume,
    buy_volume, sell_volume, quote_volume (Decimal), trades, volume_share (Decimal, 12
    decimals), is_poc (point of control: most volume, ties to the lower price),
    in_value_area (grown from the POC toward the busier neighbour until `value_area` of the
    volume), node ('hvn' / 'lvn' / null), bin_size, tick.
    """
    _positive_int(bins, "bins")
    size = None if bin_size is None else parse_decimal(bin_size, "bin_size")
    share = parse_decimal(value_area, "value_area")
    if share > 1:
        raise DataError(
            f"value_area is a share of the volume: between 0 and 1 (e.g. '0.70'), not {value_area}"
        )
    with connection(conn) as c:
        rng = resolve_span(c, symbol, start, end, exchange)
        if size is not None:
            lo, hi = execute(c, _MODULE, "price_range", rng.values())[0]
            if lo is not None and (hi - lo) / size > 1_000_000:
                raise DataError(
                    f"bin_size {size} makes over a million bins for this range: use a larger bin_size"
                )
        values = rng.values(bin_size=None if size is None else str(size), bins=bins, value_area=share)
        return run(c, _MODULE, "volume_profile", values, as_)


@overload
def pivots(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
           interval: str | None = ..., *, pivot_bars: int = ..., exchange: str | None = ...,
           conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def pivots(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
           interval: str | None = ..., *, pivot_bars: int = ..., exchange: str | None = ...,
           conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def pivots(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    pivot_bars: int = 3,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Swing highs and lows on the interval's bars: columns open_time, kind ('high'/'low'), price.

    A swing high's high is above the `pivot_bars` non-empty bars before it and not below
    the ones after it (lows mirrored); bars nearer the range's ends cannot qualify.
    """
    if interval is not None:
        parse_interval(interval)
    _positive_int(pivot_bars, "pivot_bars")
    with connection(conn) as c:
        rng = resolve_span(c, symbol, start, end, exchange)
        iv, step = interval_for(rng, interval)
        check_buckets(rng, step)
        return run(c, _MODULE, "pivots", rng.values(interval=iv, pivot_bars=pivot_bars), as_)


@overload
def support_resistance(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                       interval: str | None = ..., *, bin_size: DecimalLike | None = ..., bins: int = ...,
                       value_area: DecimalLike = ..., pivot_bars: int = ..., exchange: str | None = ...,
                       conn: psycopg.Connection | None = ...,
                       as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def support_resistance(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                       interval: str | None = ..., *, bin_size: DecimalLike | None = ..., bins: int = ...,
                       value_area: DecimalLike = ..., pivot_bars: int = ..., exchange: str | None = ...,
                       conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def support_resistance(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    bin_size: DecimalLike | None = None,
    bins: int = 100,
    value_area: DecimalLike = "0.70",
    pivot_bars: int = 3,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Candidate support/resistance levels from the volume profile and from swing pivots.

    Columns: price (Decimal), kind ('poc', 'vah', 'val', 'hvn', 'lvn', 'swing_high',
    'swing_low'), source ('volume_profile' or 'pivots'), time (pivots only), volume (profile
    levels only). POC/HVN/LVN are bin midpoints, VAH the top of the value area, VAL its
    bottom. Sorted by price.
    """
    import polars as pl

    with connection(conn) as c:
        rng = resolve_span(c, symbol, start, end, exchange)
        prof = volume_profile(
            rng.symbol,
            rng.start,
            rng.end,
            bin_size=bin_size,
            bins=bins,
            value_area=value_area,
            exchange=rng.exchange,
            conn=c,
        )
        piv = pivots(
            rng.symbol, rng.start, rng.end, interval, pivot_bars=pivot_bars, exchange=rng.exchange, conn=c
        )
    levels: list[dict[str, Any]] = []
    if prof.height:
        rows = prof.to_dicts()
        area = [r for r in rows if r["in_value_area"]]
        with localcontext() as ctx:
            ctx.prec = 80
            for r in rows:
                mid = (r["price_low"] + r["price_high"]) / Decimal(2)
                for kind in ("poc" if r["is_poc"] else None, r["node"]):
                    if kind:
                        levels.append(
                            {
                                "price": mid,
                                "kind": kind,
                                "source": "volume_profile",
                                "time": None,
                                "volume": r["volume"],
                            }
                        )
        if area:
            levels.append(
                {
                    "price": area[-1]["price_high"],
                    "kind": "vah",
                    "source": "volume_profile",
                    "time": None,
                    "volume": None,
                }
            )
            levels.append(
                {
                    "price": area[0]["price_low"],
                    "kind": "val",
                    "source": "volume_profile",
                    "time": None,
                    "volume": None,
                }
            )
    for r in piv.to_dicts():
        levels.append(
            {
                "price": r["price"],
                "kind": f"swing_{r['kind']}",
                "source": "pivots",
                "time": r["open_time"],
                "volume": None,
            }
        )
    frame = pl.DataFrame(
        [
            decimal_series("price", [None if x["price"] is None else _plain(x["price"]) for x in levels]),
            pl.Series("kind", [x["kind"] for x in levels], dtype=pl.String),
            pl.Series("source", [x["source"] for x in levels], dtype=pl.String),
            pl.Series("time", [x["time"] for x in levels], dtype=pl.Datetime("us", "UTC")),
            decimal_series("volume", [None if x["volume"] is None else _plain(x["volume"]) for x in levels]),
        ]
    ).sort("price", "kind")
    return frame.to_pandas() if as_ == "pandas" else frame


def _plain(d: Decimal) -> str:
    """A Decimal as a plain (non-exponent) string."""
    return format(d, "f")


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 1_000_000:
        raise DataError(f"{name} must be a whole number from 1 to 1,000,000, not {value!r}")


def _time_of_day(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        if timedelta(0) <= value < timedelta(days=1):
            return value
    elif isinstance(value, str) and (m := _TIME_OF_DAY.fullmatch(value.strip())):
        return timedelta(hours=int(m.group(1)), minutes=int(m.group(2)), seconds=int(m.group(3) or 0))
    raise DataError(
        f"session_start {value!r} is not a time of day: use 'HH:MM' in UTC, e.g. '00:00' or '13:30'"
    )
