"""Volume: what is stored, CVD (aggressor side, tick rule beside it), and klines reconciliation.

Runs the queries of `sql/volume_stored.sql`; arguments and result types as in
`cryptolab.analysis.scope` and `.frames`. Aggressor side: `is_buyer_maker` false = the taker bought =
+qty; true = the taker sold = -qty.

Reconciliation compares minute by minute the stored *trades* (the ground truth, not the
1 s bars derived from them) with the exchange's own 1m klines, fetched over REST into the
`klines` table by `fetch_klines`. Reading trades costs more than reading bars, but a
reconciliation must check what we hold, not a summary of it; `bars_consistency` in
`cryptolab.analysis.quality` checks the bars against the trades separately.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg

from ..errors import CryptolabError, DatabaseError, DataError, SourceError, first_line
from .args import AGG_MODULE, AsType, Frame, Kind, TimeLike, normalize_symbol, parse_interval
from .execute import run
from .scope import check_buckets, connection, interval_for, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["stored_symbols", "daily_totals", "cvd", "fetch_klines", "reconcile_klines", "reconcile_or_skip",
           "DEFAULT_REST_URL"]

_MODULE = "volume_stored"
_MINUTE = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEFAULT_REST_URL = "https://api.binance.com"

_UPSERT_KLINE = """
INSERT INTO klines (exchange, symbol, interval, open_time, close_time, open, high, low, close,
                    volume, quote_volume, trade_count, taker_buy_volume, taker_buy_quote, fetched_at)
VALUES (%s, %s, '1m', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
    close_time = EXCLUDED.close_time, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume,
    trade_count = EXCLUDED.trade_count, taker_buy_volume = EXCLUDED.taker_buy_volume,
    taker_buy_quote = EXCLUDED.taker_buy_quote, fetched_at = EXCLUDED.fetched_at
"""


@overload
def stored_symbols(exchange: str | None = ..., *, conn: psycopg.Connection | None = ...,
                   as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def stored_symbols(exchange: str | None = ..., *, conn: psycopg.Connection | None = ...,
                   as_: Literal["pandas"]) -> pd.DataFrame: ...


def stored_symbols(exchange: str | None = None, *, conn: psycopg.Connection | None = None,
                   as_: AsType = "polars") -> Frame:
    """What is stored: exchange, symbol, first_second, last_second — on every exchange, or
    on `exchange` only."""
    import polars as pl

    with connection(conn) as c:
        frame = run(c, _MODULE, "markets", {})
    if exchange is not None:
        frame = frame.filter(pl.col("exchange") == exchange.strip().lower())
    return frame.to_pandas() if as_ == "pandas" else frame


@overload
def daily_totals(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def daily_totals(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["pandas"]) -> pd.DataFrame: ...


def daily_totals(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Stored totals per UTC day (default: every stored day).

    Columns: day, trades, volume, quote_volume, taker_buy_volume, taker_buy_quote,
    taker_sell_volume, taker_sell_quote (Decimal), first_trade_id, last_trade_id,
    missing_ids (ids in the span not stored: > 0 means a gap), active_seconds.
    """
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        values = span.values()
        if start is None and span.first_stored is not None:
            values["start"] = span.first_stored
        return run(c, _MODULE, "daily_totals", values, as_)


@overload
def cvd(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, tick_rule: bool = ..., exchange: str | None = ..., kind: Kind = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def cvd(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
        interval: str | None = ..., *, tick_rule: bool = ..., exchange: str | None = ..., kind: Kind = ...,
        conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def cvd(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = None,
    *,
    tick_rule: bool = False,
    exchange: str | None = None,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Cumulative volume delta per interval from `start` (dense: quiet intervals add zero).

    Default (from the 1 s bars): open_time, trades, buy_volume, sell_volume, delta, cvd,
    quote_delta, cvd_quote. With `tick_rule=True` (from raw trades): open_time, trades,
    delta, cvd (aggressor side), tick_delta, tick_cvd (tick rule: up-tick buy, down-tick
    sell, zero tick keeps the previous side; the previous trade is the adjacent id only, so after
    an id gap the side is unknown until the price moves), classified, agree (trades where both agree).
    `kind` (see `data_kind`): from aggregate trades, the default columns with buy/sell from
    each aggregate's `is_buyer_maker` and trades = Σ(last − first + 1); `tick_rule` needs raw trades.
    """
    if interval is not None:
        parse_interval(interval)
    if not isinstance(tick_rule, bool):
        raise DataError(f"tick_rule must be True or False, not {tick_rule!r}")
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, kind=kind)
        iv, step = interval_for(span, interval)
        check_buckets(span, step)
        if span.kind == "aggTrades":
            if tick_rule:
                raise DataError(
                    "tick_rule=True needs raw trades; only aggregate trades are read for this range "
                    "(pass kind='trades' for raw trades, or tick_rule=False)"
                )
            return run(c, AGG_MODULE, "cvd", span.values(interval=iv), as_)
        return run(c, _MODULE, "cvd_tick_rule" if tick_rule else "cvd", span.values(interval=iv), as_)


def _ms(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _kline_row(exchange: str, symbol: str, k: list[Any]) -> tuple[Any, ...]:
    try:
        return (
            exchange,
            symbol,
            _from_ms(k[0]),
            _from_ms(k[6]),
            Decimal(k[1]),
            Decimal(k[2]),
            Decimal(k[3]),
            Decimal(k[4]),
            Decimal(k[5]),
            Decimal(k[7]),
            int(k[8]),
            Decimal(k[9]),
            Decimal(k[10]),
        )
    except (IndexError, TypeError, ValueError, ArithmeticError) as exc:
        raise SourceError(f"unexpected kline from the exchange ({exc}): {k!r:.200}") from None


async def _fetch(base_url: str, symbol: str, start_ms: int, end_ms: int) -> list[list[Any]]:
    from ..binance.rest import RestClient

    out: list[list[Any]] = []
    async with RestClient(base_url) as client:
        cursor = start_ms
        while cursor <= end_ms:
            page = await client.klines(symbol, "1m", cursor, end_ms, limit=1000)
            if not page:
                break
            out.extend(page)
            nxt = int(page[-1][0]) + 60_000
            if nxt <= cursor:
                break
            cursor = nxt
    return out


def fetch_klines(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    base_url: str = DEFAULT_REST_URL,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
) -> int:
    """Fetch the exchange's 1m klines for the minutes of [start, end) into `klines`; return how many.

    `base_url` is the exchange's REST root (Binance: https://api.binance.com; the local
    exchange: `LocalExchange.http_url`). Klines already stored are replaced (a kline fetched
    before its minute closed is refreshed); `fetched_at` records when.
    """
    from ..aio import run_sync

    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, require_stored=False)
        first = span.start.replace(second=0, microsecond=0)
        last_ms = _ms(span.end) - 1
        if span.end <= span.start:
            return 0
        if (span.end - first) / _MINUTE > 527_040:
            raise DataError("fetch at most a year of 1m klines per call: narrow start/end")
        try:
            raw = run_sync(_fetch(base_url, span.symbol, _ms(first), last_ms))
        except CryptolabError:
            raise
        except Exception as exc:  # the client raises SourceError; anything else is unexpected wire trouble
            raise SourceError(f"could not fetch klines from {base_url}: {exc}") from None
        rows = [_kline_row(span.exchange, span.symbol, k) for k in raw]
        rows = [r for r in rows if first <= r[2] < span.end]
        if not rows:
            return 0
        try:
            with c.transaction():
                with c.cursor() as cur:
                    cur.executemany(_UPSERT_KLINE, rows)
        except psycopg.Error as exc:
            raise DatabaseError(f"could not store klines: {first_line(exc)}") from None
        if not c.autocommit and c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            c.commit()
        return len(rows)


@overload
def reconcile_klines(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     fetch: bool = ..., base_url: str = ..., exchange: str | None = ...,
                     conn: psycopg.Connection | None = ...,
                     as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def reconcile_klines(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     fetch: bool = ..., base_url: str = ..., exchange: str | None = ...,
                     conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def reconcile_klines(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    fetch: bool = False,
    base_url: str = DEFAULT_REST_URL,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Stored trades against the exchange's 1m klines, one row per minute of [start, end).

    With `fetch=True` the klines are fetched first (`fetch_klines`, from `base_url`).
    status: 'match' (trades, volume, quote volume — ours rounded to the kline's 8 decimals —
    taker-buy volume and quote, and OHLC of minutes with trades all equal), 'mismatch'
    (see the *_diff columns: stored − exchange), or 'incomplete' (no kline for the minute,
    or one fetched before the minute closed that differs: fetch again later).
    Columns: open_time, status, trades, kline_trades, trades_diff, volume, kline_volume,
    volume_diff, quote_volume, kline_quote_volume, quote_volume_diff, taker_buy_volume_diff,
    taker_buy_quote_diff, open … kline_close, open_diff … close_diff.
    """
    if symbol is not None:
        normalize_symbol(symbol)
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        check_buckets(span, _MINUTE)
        if fetch:
            fetch_klines(span.symbol, span.start, span.end, base_url=base_url, exchange=span.exchange, conn=c)
        return run(c, _MODULE, "klines_reconcile", span.values(), as_)


@overload
def reconcile_or_skip(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                      base_url: str | None = ..., exchange: str | None = ...,
                      conn: psycopg.Connection | None = ...,
                      as_: Literal["polars"] = ...) -> tuple[pl.DataFrame | None, str]: ...


@overload
def reconcile_or_skip(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                      base_url: str | None = ..., exchange: str | None = ...,
                      conn: psycopg.Connection | None = ...,
                      as_: Literal["pandas"]) -> tuple[pd.DataFrame | None, str]: ...


def reconcile_or_skip(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    base_url: str | None = None,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> tuple[Frame | None, str]:
    """`reconcile_klines`, or why it cannot run: returns (frame, "") or (None, reason).

    With `base_url` the klines are fetched first; an exchange that cannot be reached is a
    reason to skip (klines stored earlier are still used when there are any). Without it
    only stored klines are used, and a range with none is skipped with a reason instead of
    a chart of minutes that are all 'incomplete'.
    """
    import polars as pl

    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)
        unreachable = ""
        if base_url:
            try:
                fetch_klines(
                    span.symbol, span.start, span.end, base_url=base_url, exchange=span.exchange, conn=c
                )
            except SourceError as exc:
                unreachable = f"{base_url} cannot be reached ({first_line(exc)[:160]})"
        frame = reconcile_klines(span.symbol, span.start, span.end, exchange=span.exchange, conn=c)
    have = frame.filter(pl.col("kline_trades").is_not_null()).height if frame.height else 0
    if have == 0:
        if unreachable:
            return None, f"reconciliation skipped: {unreachable}, and no klines are stored for this range"
        return None, (
            "reconciliation skipped: no exchange klines are stored for this range and no exchange was "
            "asked (set klines_url, e.g. 'https://api.binance.com' or a local exchange's "
            "http://127.0.0.1:PORT, to fetch them)"
        )
    note = f"klines: stored ones only ({unreachable})" if unreachable else ""
    return (frame.to_pandas() if as_ == "pandas" else frame), note
