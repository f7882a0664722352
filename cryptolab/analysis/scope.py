"""Which market, range and kind of data an analysis reads: defaults that follow the data.

Without `symbol`, the symbol with the newest stored trade; without `exchange`, the one
holding its data (real `binance` first, a warning when there was a choice); without `end`,
after the last stored second; without `start`, the hour before `end` or less. `kind`
'auto' reads raw trades when the range has any, else aggregate trades, and says which.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ..errors import DataError
from ..model import DEFAULT_EXCHANGE
from ..storage import db
from ..storage.parquet.session import detach
from .args import (
    AGG_MODULE,
    MAX_ROWS,
    Kind,
    TimeLike,
    _normalize_exchange,
    auto_interval,
    check_kind,
    normalize_symbol,
    parse_interval,
    parse_time,
)
from .execute import execute

__all__ = [
    "Span",
    "Market",
    "data_kind",
    "interval_for",
    "stored_markets",
    "resolve_market",
    "connection",
    "resolve_span",
    "check_buckets",
]

log = logging.getLogger("cryptolab.analysis")


@contextmanager
def connection(conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    """Use the caller's connection (left as found: no transaction left open) or a new one."""
    if conn is None:
        own = db.connect()
        try:
            yield own
        finally:
            own.close()
        return
    idle = conn.info.transaction_status == TransactionStatus.IDLE and not conn.autocommit
    try:
        yield conn
    finally:
        detach(conn)  # `trades` is the database's table again (see _attach)
        if idle and conn.info.transaction_status != TransactionStatus.IDLE and not conn.closed:
            conn.rollback()  # we only read: end the transaction our queries opened


@dataclass(frozen=True)
class Span:
    """A checked query range: exchange, symbol and [start, end) in UTC."""

    exchange: str
    symbol: str
    start: datetime
    end: datetime
    first_stored: datetime | None
    last_stored: datetime | None
    kind: str = "trades"
    """The data the range is read from: "trades" or "aggTrades" (see `resolve_span`)."""

    def values(self, **extra: Any) -> dict[str, Any]:
        """The variables the SQL modules take, plus `extra`."""
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "start": self.start,
            "end": self.end,
            **extra,
        }


@dataclass(frozen=True)
class Market:
    """One (exchange, symbol) with stored bars, and its first and last stored second."""

    exchange: str
    symbol: str
    first_second: datetime
    last_second: datetime


def stored_markets(conn: psycopg.Connection, exchange: str | None = None) -> list[Market]:
    """Every (exchange, symbol) with stored bars (one index probe each), optionally on one exchange."""
    rows = execute(conn, "volume_stored", "markets", {})
    return [Market(*r) for r in rows if exchange is None or r[0] == exchange]


def _agg_markets(conn: psycopg.Connection) -> list[Market]:
    """Every (exchange, symbol) with stored aggregate trades (table agg_trades)."""
    return [Market(*r) for r in execute(conn, AGG_MODULE, "markets", {})]


def _merged(markets: Sequence[Market]) -> list[Market]:
    """One Market per (exchange, symbol): the earliest first and latest last second."""
    out: dict[tuple[str, str], Market] = {}
    for m in markets:
        o = out.get((m.exchange, m.symbol))
        out[(m.exchange, m.symbol)] = (
            m
            if o is None
            else Market(
                m.exchange, m.symbol, min(o.first_second, m.first_second), max(o.last_second, m.last_second)
            )
        )
    return sorted(out.values(), key=lambda m: (m.exchange, m.symbol))


_told: set[tuple[str | None, ...]] = set()


def _say(key: tuple[str | None, ...], text: str, choice: bool) -> None:
    """Tell once per process which exchange/symbol a call without them used."""
    if key in _told:
        return
    _told.add(key)
    if choice:
        warnings.warn(text, UserWarning, stacklevel=4)
    else:
        log.info(text)


def resolve_market(
    conn: psycopg.Connection, symbol: Any = None, exchange: Any = None, *, kind: str = "trades"
) -> tuple[str, str]:
    """The (exchange, symbol) a call means. Named ones are checked and kept; a missing
    exchange is the one holding the symbol's data (real `binance` first when several do),
    a missing symbol the one with the newest stored trade. Which was used is said once
    (a warning when there was a choice, a log line otherwise). With `kind` "aggTrades",
    the markets holding aggregate trades; with "auto", those holding raw trades, or the
    ones holding aggregates when none holding raw trades matches."""
    sym = None if symbol is None else normalize_symbol(symbol)
    exch = None if exchange is None else _normalize_exchange(exchange)
    if sym is not None and exch is not None:
        return exch, sym
    k = check_kind(kind)
    markets = [] if k == "aggTrades" else stored_markets(conn)
    if k != "trades" and not any(
        (sym is None or m.symbol == sym) and (exch is None or m.exchange == exch) for m in markets
    ):
        markets = _merged([*markets, *_agg_markets(conn)])
    if exch is not None:
        mine = [m for m in markets if m.exchange == exch]
        if not mine:
            others = sorted({m.exchange for m in markets})
            hint = (
                f"; data is stored for {', '.join(others)}: pass exchange=… or leave it None"
                if others
                else "; nothing is stored yet: run `.venv/bin/cryptolab demo` or `cryptolab capture` first"
            )
            raise DataError(f"nothing is stored for {exch}{hint}")
        return exch, max(mine, key=lambda m: m.last_second).symbol
    holders = [m for m in markets if sym is None or m.symbol == sym]
    if not holders:
        if sym is None:
            raise DataError(
                "no trades are stored yet: run `.venv/bin/cryptolab demo` (simulated) or "
                "`cryptolab capture` first, or point dsn / CRYPTOLAB_DSN at a database with trades"
            )
        return DEFAULT_EXCHANGE, sym  # resolve_span explains what is stored
    exchanges = sorted({m.exchange for m in holders})
    if DEFAULT_EXCHANGE in exchanges:
        chosen_exch = DEFAULT_EXCHANGE
    else:
        chosen_exch = max(holders, key=lambda m: m.last_second).exchange
    on = [m for m in holders if m.exchange == chosen_exch]
    chosen_sym = sym or max(on, key=lambda m: m.last_second).symbol
    what = f"{chosen_sym} on exchange {chosen_exch!r}"
    if len(exchanges) > 1:
        text = (
            f"using {what}: {sym or 'data'} is stored for {', '.join(exchanges)} "
            f"({DEFAULT_EXCHANGE!r}, real data, comes first); pass exchange=… to choose"
        )
    else:
        text = f"using {what}, the {'only exchange holding it' if sym else 'newest stored symbol'}"
    _say((sym, None, chosen_exch, chosen_sym), text, choice=len(exchanges) > 1)
    return chosen_exch, chosen_sym


def resolve_span(
    conn: psycopg.Connection,
    symbol: Any,
    start: Any,
    end: Any,
    exchange: str | None = None,
    *,
    default: timedelta = timedelta(hours=1),
    require_stored: bool = True,
    kind: str = "trades",
) -> Span:
    """Check the arguments and fill the defaults (exchange, symbol, range) from the data;
    DataError explains what to pass.

    `kind` (see KINDS): "trades" reads raw trades, "aggTrades" aggregate trades, "auto" raw
    trades when [start, end) has any, else aggregates when it has those. The span's `kind`
    is the one read, said once per market and kind (`_say_kind`)."""
    t0 = parse_time(start, "start")
    t1 = parse_time(end, "end")
    k = check_kind(kind)
    if symbol is not None:
        normalize_symbol(symbol)
    if exchange is not None:
        _normalize_exchange(exchange)
    exch, sym = resolve_market(conn, symbol, exchange, kind=k)
    key = {"exchange": exch, "symbol": sym}
    ends = []
    if k != "aggTrades":
        ends.append(execute(conn, "volume_stored", "stored_span", key)[0])
    if k != "trades":
        ends.append(execute(conn, AGG_MODULE, "stored_span", key)[0])
    firsts = [r[0] for r in ends if r[0] is not None]
    lasts = [r[1] for r in ends if r[1] is not None]
    first, last = (min(firsts) if firsts else None), (max(lasts) if lasts else None)
    if first is None and require_stored:
        what = "aggregate trades (aggTrades)" if k == "aggTrades" else "trades"
        known = [
            m.symbol
            for m in (_agg_markets(conn) if k == "aggTrades" else stored_markets(conn))
            if m.exchange == exch
        ]
        elsewhere = sorted({m.exchange for m in stored_markets(conn) if m.symbol == sym})
        hint = (
            f"stored symbols on {exch}: {', '.join(known)}" if known else f"nothing is stored for {exch} yet"
        )
        if elsewhere:
            hint += f"; {sym} is stored for {', '.join(elsewhere)} (pass exchange=… or leave it None)"
        if k == "trades" and execute(conn, AGG_MODULE, "stored_span", key)[0][0] is not None:
            hint += (
                "; only aggregate trades are stored for it: ohlcv, tps, tps_stats, cvd, gaps and "
                "load_agg_trades read them (kind='auto' or 'aggTrades')"
            )
        raise DataError(f"unknown symbol {sym!r}: no {what} stored for it ({hint}); capture or load it first")
    if t1 is None:
        if last is not None:
            t1 = last + timedelta(seconds=1)
        elif t0 is not None:
            t1 = t0 + default
        else:
            t1 = datetime.now(timezone.utc).replace(microsecond=0)
    if t0 is None:
        t0 = t1 - default
        if first is not None and first > t0 and first < t1:
            t0 = first  # the data starts later: no empty head
    if t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them or widen the range")
    chosen, both = k, False
    if k == "auto":
        has_trades, has_agg = execute(conn, AGG_MODULE, "data_kind", {**key, "start": t0, "end": t1})[0]
        chosen = "aggTrades" if has_agg and not has_trades else "trades"
        both = bool(has_trades and has_agg)
    _say_kind(exch, sym, k, chosen, both)
    return Span(exch, sym, t0, t1, first, last, chosen)


def _say_kind(exchange: str, symbol: str, asked: str, chosen: str, both: bool) -> None:
    """Every analysis says which kind of data it read (once per market and kind): a warning
    when "auto" fell back to aggregate trades, a log line otherwise."""
    if chosen == "aggTrades":
        text = (
            f"reading aggregate trades (agg_trades) of {symbol} on {exchange!r}: trade counts are "
            "last_trade_id - first_trade_id + 1, volumes exact, ids inside an aggregate are not gaps"
        )
        if asked == "auto":
            text += "; no raw trades are stored for the range (pass kind='aggTrades' to choose)"
    else:
        text = f"reading raw trades of {symbol} on {exchange!r}"
        if both:
            text += " (aggregate trades are stored for the range too: pass kind='aggTrades' to read them)"
    _say(("kind", exchange, symbol, asked, chosen), text, choice=asked == "auto" and chosen == "aggTrades")


def data_kind(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    exchange: str | None = None,
    *,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
) -> str:
    """Which data an analysis called with these arguments reads: "trades" (raw trades) or
    "aggTrades" (aggregate trades); `kind="auto"` (the default) picks raw trades when the
    range has any, else aggregates."""
    with connection(conn) as c:
        return resolve_span(c, symbol, start, end, exchange, kind=kind).kind


def interval_for(span: Span, interval: Any) -> tuple[str, timedelta]:
    """The given interval (checked), or one chosen from the span's length (`auto_interval`)."""
    if interval is None:
        return auto_interval(span.end - span.start)
    return parse_interval(interval)


def check_buckets(span: Span, step: timedelta, what: str = "interval") -> None:
    """Refuse a dense series that would be absurdly long (say what to change)."""
    count = (span.end - span.start) / step
    if count > MAX_ROWS:
        raise DataError(
            f"{span.start.isoformat()} … {span.end.isoformat()} at {what} {step} is {int(count):,} rows "
            f"(limit {MAX_ROWS:,}): use a larger {what} or a shorter range"
        )
