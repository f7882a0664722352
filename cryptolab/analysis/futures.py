"""USD-M futures beside spot: funding, basis, liquidations, open interest (sql/futures.sql).

    an.funding("BTCUSDT", "2024-07-01", "2024-07-19")            # settlements, realised funding per unit
    an.basis("BTCUSDT", start, end, "1h")                         # perp − spot: absolute, bps, annualised
    an.liquidations("BTCUSDT", start, end, "5m")                  # count, qty, notional per side
    an.open_interest("BTCUSDT", start, end)                       # open interest and its change

The market is carried by the `exchange` column (`cryptolab.markets`): `binance-usdm` holds the
perpetuals (`simulator-usdm` the local exchange's), `binance` spot. Every function takes
`exchange` (a futures exchange name, or a base like "binance": its `-usdm` market is read; None:
the futures market holding the symbol, real `binance-usdm` first) and `market` (None: "usdm",
or the market of the named exchange). These are futures quantities: `market="spot"` (or a spot
exchange name) is refused with one line, and so is a symbol that has spot data but no futures
rows. Without `end`, just after the symbol's last stored futures row; without `start`, one day
before `end`. Numbers come back exact (polars Decimal columns).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg

from ..errors import DataError
from ..markets import check_market, market_of, spot_of, usdm_of
from ..model import DEFAULT_EXCHANGE
from .args import MAX_ROWS, AsType, Frame, TimeLike, normalize_symbol, parse_interval, parse_time
from .execute import execute, run
from .scope import connection

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "funding",
    "basis",
    "liquidations",
    "open_interest",
    "LIQUIDATION_NOTE",
    "futures_scope",
    "FuturesSpan",
]

_MODULE = "futures"
DEFAULT_RANGE = timedelta(days=1)
LIQUIDATION_NOTE = (
    "Binance sends at most one liquidation per symbol per second (the latest of that second): "
    "counts, quantities and notionals are lower bounds in busy seconds"
)


@dataclass(frozen=True)
class FuturesSpan:
    """A checked futures query: the perp's exchange, the spot exchange beside it, symbol, [start, end)."""

    exchange: str
    spot_exchange: str
    symbol: str
    start: datetime
    end: datetime

    def values(self, **extra: Any) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "spot_exchange": self.spot_exchange,
            "symbol": self.symbol,
            "start": self.start,
            "end": self.end,
            **extra,
        }


def _market(what: str, exchange: Any, market: Any) -> str | None:
    """The futures exchange asked (None: to be found); a spot market is refused with one line."""
    if exchange is not None and (not isinstance(exchange, str) or not exchange.strip()):
        raise DataError(f"exchange {exchange!r} is not an exchange name: use e.g. 'binance-usdm', or None")
    m = (
        check_market(market)
        if market is not None
        else (market_of(exchange) if exchange is not None else "usdm")
    )
    if m == "spot":
        base = exchange or DEFAULT_EXCHANGE
        raise DataError(
            f"{what} is a USD-M futures analysis: spot has no {what.replace('_', ' ')} — "
            f"pass market='usdm' (exchange {usdm_of(base)!r})"
        )
    return None if exchange is None else usdm_of(exchange)


def futures_scope(
    conn: psycopg.Connection, what: str, symbol: Any, start: Any, end: Any, exchange: Any, market: Any
) -> FuturesSpan:
    """Check the arguments and fill the defaults from the stored futures rows (see the module doc)."""
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    sym = None if symbol is None else normalize_symbol(symbol)
    exch = _market(what, exchange, market)
    rows = execute(conn, _MODULE, "markets", {})
    held = [r for r in rows if (sym is None or r[1] == sym) and (exch is None or r[0] == exch)]
    if not held:
        raise DataError(_nothing(conn, sym, exch, rows))
    if exch is None:
        real = [r for r in held if r[0] == usdm_of(DEFAULT_EXCHANGE)]
        exch = (real or sorted(held, key=lambda r: r[3]))[-1][0]
    mine = [r for r in held if r[0] == exch]
    if sym is None:
        sym = max(mine, key=lambda r: r[3])[1]
    last = max(r[3] for r in mine if r[1] == sym)
    if t1 is None:
        t1 = (
            (last.replace(microsecond=0) + timedelta(seconds=1))
            if t0 is None or t0 < last
            else t0 + DEFAULT_RANGE
        )
    if t0 is None:
        t0 = t1 - DEFAULT_RANGE
    if t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them or widen the range")
    return FuturesSpan(exch, spot_of(exch), sym, t0, t1)


def check_buckets_count(start: datetime, end: datetime, step: timedelta) -> None:
    """Refuse an absurdly long series (say what to change)."""
    if (end - start) / step > MAX_ROWS:
        raise DataError(
            f"{start.isoformat()} … {end.isoformat()} at interval {step} is more than {MAX_ROWS:,} "
            "buckets: use a larger interval or a shorter range"
        )


def _nothing(conn: psycopg.Connection, sym: str | None, exch: str | None, rows: list[tuple[Any, ...]]) -> str:
    where = f" on {exch}" if exch else ""
    if sym is None:
        return (
            f"no USD-M futures rows are stored{where}: load some with "
            "`cryptolab history --market usdm SYMBOL --from DATE --kind aggTrades` "
            "(and --kind fundingRate / metrics)"
        )
    spot = [
        r[0]
        for r in execute(
            conn, _MODULE, "spot_holders", {"symbol": sym, "exchange": exch or usdm_of(DEFAULT_EXCHANGE)}
        )
    ]
    if spot and not any(r[1] == sym for r in rows):
        return (
            f"{sym} has spot data only ({', '.join(spot)}): no USD-M futures rows are stored for it — "
            "it trades on spot only, or load its futures with "
            f"`cryptolab history --market usdm {sym} --from DATE`"
        )
    others = sorted({r[0] for r in rows if r[1] == sym})
    hint = f"; {sym} is stored for {', '.join(others)} (pass exchange=… or leave it None)" if others else ""
    return (
        f"no USD-M futures rows of {sym}{where}{hint}: load them with "
        f"`cryptolab history --market usdm {sym} --from DATE`"
    )


@overload
def funding(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
            exchange: str | None = ..., market: str | None = ..., conn: psycopg.Connection | None = ...,
            as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def funding(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
            exchange: str | None = ..., market: str | None = ..., conn: psycopg.Connection | None = ...,
            as_: Literal["pandas"]) -> pd.DataFrame: ...


def funding(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    market: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Funding settlements in [start, end): the rates seen — settled ones from fundingRate (dumps,
    REST), else the last rate the markPrice stream announced — and realised funding per unit.

    Columns: funding_time, source ('fundingRate' | 'markPrice'), settled, funding_rate, mark_price,
    mark_source, interval_hours, funding_per_unit (= funding_rate × mark_price: what one unit long
    paid, negative when it received; a short gets the opposite), cumulative_per_unit,
    rate_annualised (rate × 365 × settlements a day).
    """
    with connection(conn) as c:
        span = futures_scope(c, "funding", symbol, start, end, exchange, market)
        return run(c, _MODULE, "funding", span.values(), as_, keep_scales=False)


@overload
def basis(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
          interval: str | None = ..., *, exchange: str | None = ..., market: str | None = ...,
          conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def basis(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
          interval: str | None = ..., *, exchange: str | None = ..., market: str | None = ...,
          conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def basis(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = "1h",
    *,
    exchange: str | None = None,
    market: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The perp against its spot per interval (the last trade of each side in the bucket).

    Columns: open_time, perp_close, spot_close, basis (= perp − spot, exact), basis_bps
    (basis / spot × 10,000, 6 decimals), basis_annualised (basis / spot × 3 × 365: the premium of one
    8-hour funding period over a year, 10 decimals). Spot is `exchange`'s spot market (binance for
    binance-usdm), from its 1 s bars or, without them, its aggregate trades.
    """
    iv, step = parse_interval(interval or "1h")
    with connection(conn) as c:
        span = futures_scope(c, "basis", symbol, start, end, exchange, market)
        check_buckets_count(span.start, span.end, step)
        return run(c, _MODULE, "basis", span.values(interval=iv), as_, keep_scales=False)


@overload
def liquidations(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                 interval: str | None = ..., *, exchange: str | None = ..., market: str | None = ...,
                 conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def liquidations(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                 interval: str | None = ..., *, exchange: str | None = ..., market: str | None = ...,
                 conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def liquidations(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | None = "1h",
    *,
    exchange: str | None = None,
    market: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Liquidations per interval and side (SELL: longs liquidated, BUY: shorts).

    Columns: open_time, side, liquidated ('long' | 'short'), count, qty (filled), notional (average
    price × filled qty), note. Binance sends at most one liquidation per symbol per second: the
    figures are lower bounds in busy seconds (the `note` column says so, and a warning once).
    """
    iv, step = parse_interval(interval or "1h")
    with connection(conn) as c:
        span = futures_scope(c, "liquidations", symbol, start, end, exchange, market)
        check_buckets_count(span.start, span.end, step)
        frame = run(c, _MODULE, "liquidations", span.values(interval=iv), as_, keep_scales=False)
    warnings.warn(LIQUIDATION_NOTE, UserWarning, stacklevel=2)
    return frame


@overload
def open_interest(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., market: str | None = ...,
                  conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def open_interest(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., market: str | None = ...,
                  conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def open_interest(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    market: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Open interest in [start, end): ts, open_interest (contracts), open_interest_value (quote, where
    the source gives it), oi_change and oi_change_pct since the previous row, source."""
    with connection(conn) as c:
        span = futures_scope(c, "open_interest", symbol, start, end, exchange, market)
        return run(c, _MODULE, "open_interest", span.values(), as_, keep_scales=False)
