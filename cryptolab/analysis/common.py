"""What every analysis function shares: argument checks, the query runner, exact frames.

* Arguments: `symbol` (any case; stored upper case; None: the symbol with the newest
  stored trade), `exchange` (None: the exchange that holds the symbol's data, real
  `binance` first when several do — a warning says which was used when there was a
  choice), `start` / `end` (aware or naive-UTC datetimes, dates, or ISO-8601 strings;
  the range is [start, end)), `interval` (one of INTERVALS: '1s' … '1w'; None: chosen
  from the range so it shows about 30 to 120 bars). Without `end`, the range ends after
  the symbol's last stored second; without `start`, it covers the hour before `end`, or
  less when the data starts later (a 30 s capture gives a 30 s range).
* Bad input (unknown symbol, start after end, a malformed interval or time) raises
  `DataError` before any SQL runs; database failures raise `DatabaseError`. A
  psycopg error never reaches the caller.
* `kind` (where a function takes it): which data to read — "trades" (raw trades and their
  1 s bars), "aggTrades" (Binance aggregate trades, table `agg_trades`: counts are
  last_trade_id − first_trade_id + 1, volumes exact, ids inside an aggregate never gaps) or
  "auto" (default: raw trades when the range has any, else aggregates when it has those).
  Every analysis says which kind it read, once per market and kind: a `UserWarning` when
  "auto" fell back to aggregates, a log line on `cryptolab.analysis` otherwise;
  `data_kind(...)` returns it.
* Results are polars DataFrames (`as_="pandas"` for pandas). PostgreSQL NUMERIC
  columns become exact `pl.Decimal(38, s)` columns, s being the largest scale in the
  column; a column with a value that does not fit 38 digits (or NaN) is returned as
  exact decimal strings (`pl.String`) instead. Nothing is ever converted to float.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from .. import archive, db, queries
from ..errors import DatabaseError, DataError
from ..model import DEFAULT_EXCHANGE
from . import scales

__all__ = [
    "AsType",
    "Frame",
    "Span",
    "Market",
    "Kind",
    "KINDS",
    "check_kind",
    "data_kind",
    "INTERVALS",
    "INTERVAL_UNITS",
    "MAX_ROWS",
    "parse_interval",
    "parse_duration",
    "auto_interval",
    "interval_for",
    "stored_markets",
    "resolve_market",
    "parse_time",
    "parse_decimal",
    "normalize_symbol",
    "connection",
    "resolve_span",
    "check_buckets",
    "execute",
    "run",
    "to_frame",
    "decimal_exprs",
    "decimal_series",
]

Frame = Any
"""A polars DataFrame (or a pandas DataFrame when `as_="pandas"`)."""

AsType = Literal["polars", "pandas"]

Kind = Literal["auto", "trades", "aggTrades"]
KINDS = ("auto", "trades", "aggTrades")
"""Which data an analysis reads: raw trades, Binance aggregate trades, or auto (trades first)."""
AGG_MODULE = "agg_trades"
"""The SQL module (sql/agg_trades.sql) computing the analyses from aggregate trades."""

log = logging.getLogger("cryptolab.analysis")

INTERVALS = ("1s", "5s", "10s", "15s", "30s", "1m", "3m", "5m", "15m", "30m",
             "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w")
"""The bar sizes every function with an `interval` takes (all but 1w divide a day)."""
INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_INTERVAL = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,31}")
MAX_ROWS = 5_000_000
"""Largest dense series (buckets) one call may ask for."""


def parse_duration(value: Any, *, name: str = "window") -> tuple[str, timedelta]:
    """A free duration like '90s', '5m', '2h' (a positive count of s/m/h/d/w); returns (text, timedelta)."""
    text = str(value).strip() if value is not None else ""
    m = _INTERVAL.fullmatch(text)
    if not m:
        raise DataError(f"{name} {value!r} is not a duration: use a positive count and a unit s, m, h, d or w ('30s', '5m')")
    return text, timedelta(seconds=int(m.group(1)) * INTERVAL_UNITS[m.group(2)])


def parse_interval(value: Any, *, name: str = "interval") -> tuple[str, timedelta]:
    """Validate a bar size from INTERVALS ('1s', '15m', '4h', '1d', …); returns (text, timedelta)."""
    text = str(value).strip() if value is not None else ""
    if text not in INTERVALS:
        raise DataError(f"{name} {value!r} is not an interval: use one of {', '.join(INTERVALS)}")
    return parse_duration(text, name=name)


def auto_interval(length: timedelta, *, most: int = 120) -> tuple[str, timedelta]:
    """The finest interval of INTERVALS (up to 1d) giving at most `most` bars over `length`."""
    for iv in INTERVALS[:-1]:
        step = parse_duration(iv)[1]
        if length / step <= most:
            return iv, step
    return "1d", timedelta(days=1)


def parse_time(value: Any, name: str) -> datetime | None:
    """A datetime/date/ISO string as an aware UTC datetime (naive means UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise DataError(
                f"{name} {value!r} is not a time: use an ISO-8601 string like '2024-08-08T23:00:00Z' or a datetime"
            ) from None
    else:
        raise DataError(f"{name} must be a datetime, a date or an ISO-8601 string, not {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def parse_decimal(value: Any, name: str, *, positive: bool = True) -> Decimal:
    """An exact Decimal from a Decimal, int or decimal string (floats refused: not exact)."""
    if isinstance(value, float):
        raise DataError(f"{name} must be exact: pass a Decimal or a string like '0.01', not the float {value!r}")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise DataError(f"{name} {value!r} is not a number: pass a Decimal or a string like '0.01'") from None
    if not d.is_finite() or (positive and d <= 0):
        raise DataError(f"{name} must be a {'positive ' if positive else ''}finite number, not {value!r}")
    return d


def normalize_symbol(symbol: Any) -> str:
    """Symbols are stored upper case ('btcusdt' → 'BTCUSDT')."""
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol.strip().upper()):
        raise DataError(f"symbol {symbol!r} is not a symbol: pass a name like 'BTCUSDT'")
    return symbol.strip().upper()


def _normalize_exchange(exchange: Any) -> str:
    if not isinstance(exchange, str) or not exchange.strip():
        raise DataError(f"exchange {exchange!r} is not an exchange name: use e.g. {DEFAULT_EXCHANGE!r}, or None "
                        "for the one holding the data")
    return exchange.strip().lower()


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
        archive.detach(conn)  # `trades` is the database's table again (see _attach)
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
        return {"exchange": self.exchange, "symbol": self.symbol, "start": self.start, "end": self.end, **extra}


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


def check_kind(kind: Any) -> str:
    """A checked `kind`: "auto", "trades" or "aggTrades" (DataError otherwise)."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}, not {kind!r}")
    return kind


def _agg_markets(conn: psycopg.Connection) -> list[Market]:
    """Every (exchange, symbol) with stored aggregate trades (table agg_trades)."""
    return [Market(*r) for r in execute(conn, AGG_MODULE, "markets", {})]


def _merged(markets: Sequence[Market]) -> list[Market]:
    """One Market per (exchange, symbol): the earliest first and latest last second."""
    out: dict[tuple[str, str], Market] = {}
    for m in markets:
        o = out.get((m.exchange, m.symbol))
        out[(m.exchange, m.symbol)] = m if o is None else Market(
            m.exchange, m.symbol, min(o.first_second, m.first_second), max(o.last_second, m.last_second))
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


def resolve_market(conn: psycopg.Connection, symbol: Any = None, exchange: Any = None, *,
                   kind: str = "trades") -> tuple[str, str]:
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
    if k != "trades" and not any((sym is None or m.symbol == sym) and (exch is None or m.exchange == exch)
                                 for m in markets):
        markets = _merged([*markets, *_agg_markets(conn)])
    if exch is not None:
        mine = [m for m in markets if m.exchange == exch]
        if not mine:
            others = sorted({m.exchange for m in markets})
            hint = f"; data is stored for {', '.join(others)}: pass exchange=… or leave it None" if others else \
                "; nothing is stored yet: run `.venv/bin/cryptolab demo` or `cryptolab capture` first"
            raise DataError(f"nothing is stored for {exch}{hint}")
        return exch, max(mine, key=lambda m: m.last_second).symbol
    holders = [m for m in markets if sym is None or m.symbol == sym]
    if not holders:
        if sym is None:
            raise DataError("no trades are stored yet: run `.venv/bin/cryptolab demo` (simulated) or "
                            "`cryptolab capture` first, or point dsn / CRYPTOLAB_DSN at a database with trades")
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
        text = (f"using {what}: {sym or 'data'} is stored for {', '.join(exchanges)} "
                f"({DEFAULT_EXCHANGE!r}, real data, comes first); pass exchange=… to choose")
    else:
        text = f"using {what}, the {'only exchange holding it' if sym else 'newest stored symbol'}"
    _say((sym, None, chosen_exch, chosen_sym), text, choice=len(exchanges) > 1)
    return chosen_exch, chosen_sym


def resolve_span(
    conn: psycopg.Connection,
    symbol: Any,
    start: Any,
    end: Any,
    exchange: Any = None,
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
        known = [m.symbol for m in (_agg_markets(conn) if k == "aggTrades" else stored_markets(conn))
                 if m.exchange == exch]
        elsewhere = sorted({m.exchange for m in stored_markets(conn) if m.symbol == sym})
        hint = f"stored symbols on {exch}: {', '.join(known)}" if known else f"nothing is stored for {exch} yet"
        if elsewhere:
            hint += f"; {sym} is stored for {', '.join(elsewhere)} (pass exchange=… or leave it None)"
        if k == "trades" and execute(conn, AGG_MODULE, "stored_span", key)[0][0] is not None:
            hint += ("; only aggregate trades are stored for it: ohlcv, tps, tps_stats, cvd, gaps and "
                     "load_agg_trades read them (kind='auto' or 'aggTrades')")
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
        text = (f"reading aggregate trades (agg_trades) of {symbol} on {exchange!r}: trade counts are "
                "last_trade_id - first_trade_id + 1, volumes exact, ids inside an aggregate are not gaps")
        if asked == "auto":
            text += "; no raw trades are stored for the range (pass kind='aggTrades' to choose)"
    else:
        text = f"reading raw trades of {symbol} on {exchange!r}"
        if both:
            text += " (aggregate trades are stored for the range too: pass kind='aggTrades' to read them)"
    _say(("kind", exchange, symbol, asked, chosen), text, choice=asked == "auto" and chosen == "aggTrades")


def data_kind(
    symbol: Any = None,
    start: Any = None,
    end: Any = None,
    exchange: Any = None,
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _attach(conn: psycopg.Connection, values: Mapping[str, Any], query: queries.Query) -> None:
    """Days archived and dropped from the database (cryptolab archive) are read back into a
    session TEMP table `trades` for the range, so the SQL sees one history (cryptolab.archive.session)."""
    archive.attach_for(conn, values, query.source)


def execute(conn: psycopg.Connection, module: str, name: str, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run a named query and return its rows as Python values (Decimal for NUMERIC)."""
    query = queries.get(module, name)
    sql_, params = query.bind(values)
    _attach(conn, values, query)
    try:
        with conn.cursor(binary=True) as cur:  # binary: readable whatever the session's DateStyle
            cur.execute(sql_, params)
            return cur.fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"analysis query {module}.{name} failed: {_first_line(exc)}") from None


def run(
    conn: psycopg.Connection,
    module: str,
    name: str,
    values: Mapping[str, Any],
    as_: AsType = "polars",
    *,
    keep_scales: bool = True,
) -> Frame:
    """Run a named query into an exact DataFrame (see the module docstring). With `keep_scales`,
    a NUMERIC column with only nulls or zeros gets the scale the market's data gives it (`scales`)."""
    if as_ not in ("polars", "pandas"):
        raise DataError(f"as_ must be 'polars' or 'pandas', not {as_!r}")
    query = queries.get(module, name)
    sql_, params = query.bind(values)
    _attach(conn, values, query)
    try:
        iso = (conn.info.parameter_status("DateStyle") or "").startswith("ISO")
        with conn.cursor(binary=not iso) as cur:
            # NUMERIC and timestamps as text: exact, and parsed in bulk by polars (fast). A
            # session with another DateStyle gets binary rows (psycopg reads no other text form).
            cur.adapters.register_loader("numeric", TextLoader)
            cur.adapters.register_loader("timestamptz", TextLoader)
            cur.execute(sql_, params)
            desc = cur.description or []
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"analysis query {module}.{name} failed: {_first_line(exc)}") from None
    frame = to_frame([(d.name, d.type_code) for d in desc], rows, text=iso)
    if keep_scales:
        key = {k: values[k] for k in ("exchange", "symbol") if k in values}
        frame = scales.keep_scales(
            frame, [d.name for d in desc if d.type_code == _NUMERIC], values,
            lambda: execute(conn, AGG_MODULE if module == AGG_MODULE else "volume_stored", "stored_span", key)[0][1],
            lambda v: run(conn, module, name, v, keep_scales=False),
            f"{conn.info.host}:{conn.info.port}/{conn.info.dbname} {module}.{name}")
    return frame.to_pandas() if as_ == "pandas" else frame


# PostgreSQL type OIDs
_BOOL, _INT8, _INT2, _INT4, _TEXT, _FLOAT4, _FLOAT8 = 16, 20, 21, 23, 25, 700, 701
_TIMESTAMPTZ, _TIMESTAMP, _INTERVAL_OID, _NUMERIC, _DATE, _VARCHAR = 1184, 1114, 1186, 1700, 1082, 1043


def decimal_series(name: str, values: Sequence[str | None] | Any) -> Any:
    """Exact decimal strings → pl.Decimal(38, max scale); strings kept when 38 digits don't hold them."""
    import polars as pl

    s = values.rename(name) if isinstance(values, pl.Series) else pl.Series(name, values, dtype=pl.String)
    if s.len() == s.null_count():
        return pl.Series(name, [None] * s.len(), dtype=pl.Decimal(38, 0))
    length = s.str.len_bytes()
    dot = s.str.find(".", literal=True)
    scale = int((length - dot - 1).max() or 0)
    int_digits = int(dot.fill_null(length).max())  # type: ignore[arg-type]  # a '-' counts: errs on the safe side
    if int_digits + scale > 38:
        return s
    try:
        out = s.str.to_decimal(scale=scale)
    except pl.exceptions.ComputeError:
        return s  # NaN / Infinity
    return out if out.null_count() == s.null_count() else s


_TS_FORMAT = "%Y-%m-%d %H:%M:%S%.f%#z"


def _timestamps(name: str, values: Sequence[Any]) -> Any:
    """timestamptz values (ISO text from PostgreSQL, or datetimes) → pl.Datetime("us", "UTC")."""
    import polars as pl

    if values and any(isinstance(v, str) for v in values):
        s = pl.Series(name, values, dtype=pl.String)
        out = s.str.to_datetime(_TS_FORMAT, time_unit="us", time_zone="UTC", strict=False)
        if out.null_count() == s.null_count():
            return out
        values = [None if v is None else _parse_ts(v) for v in values]  # 'infinity', BC dates: rare
    return pl.Series(name, values, dtype=pl.Datetime("us", "UTC"))


def _parse_ts(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # 'infinity' has no datetime


def decimal_exprs(frame: Any, names: Sequence[str]) -> list[Any]:
    """Expressions turning the text NUMERIC columns `names` of `frame` into exact pl.Decimal(38, s).

    One vectorized pass finds each column's largest scale and integer digits; a column that
    would not fit 38 digits gets no expression (it stays exact text).
    """
    import polars as pl

    if not names:
        return []
    # per column: the longest text (digits + sign + point bound the precision) and the scale
    probe = frame.select(
        [pl.col(n).str.len_bytes().max().alias(f"l{i}") for i, n in enumerate(names)]
        + [(pl.col(n).str.len_bytes() - pl.col(n).str.find(".", literal=True) - 1).max().alias(f"s{i}")
           for i, n in enumerate(names)]
    ).row(0)
    k = len(names)
    out = []
    for i, n in enumerate(names):
        longest, scale = probe[i], probe[k + i]
        if longest is None:  # all null
            out.append(pl.col(n).cast(pl.Decimal(38, 0)))
            continue
        scale = max(int(scale or 0), 0)
        if longest > 38:  # maybe too many digits: look closer (integer digits + scale)
            ints = frame.select(pl.col(n).str.find(".", literal=True).fill_null(pl.col(n).str.len_bytes())
                                - pl.col(n).str.starts_with("-").cast(pl.Int64)).to_series().max()
            if int(ints or 0) + scale > 38:
                continue  # stays exact text
        out.append(pl.col(n).str.to_decimal(scale=scale))
    return out


def to_frame(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[Any]], *, text: bool = True) -> Any:
    """Rows → a polars DataFrame typed from the column OIDs.

    With `text` (as `run` reads them), NUMERIC and timestamptz values are PostgreSQL's text
    (ISO); otherwise Decimal and datetime objects.

    The text columns are converted in two vectorized passes over the whole frame (one to
    find each NUMERIC column's scale, one to convert), not column by column.
    """
    import polars as pl

    data = list(zip(*rows)) if rows else [() for _ in columns]
    series = []
    numeric: list[str] = []
    stamps: list[str] = []
    for (name, oid), values in zip(columns, data):
        if oid == _NUMERIC:
            if not text:  # Decimal objects
                values = tuple(None if v is None else format(v, "f") for v in values)
            series.append(pl.Series(name, values, dtype=pl.String))
            numeric.append(name)
        elif oid in (_INT2, _INT4, _INT8):
            series.append(pl.Series(name, values, dtype=pl.Int64))
        elif oid == _TIMESTAMPTZ:
            if text:
                series.append(pl.Series(name, values, dtype=pl.String))
                stamps.append(name)
            else:
                series.append(pl.Series(name, values, dtype=pl.Datetime("us", "UTC")))
        elif oid == _TIMESTAMP:
            series.append(pl.Series(name, values, dtype=pl.Datetime("us")))
        elif oid == _INTERVAL_OID:
            series.append(pl.Series(name, values, dtype=pl.Duration("us")))
        elif oid == _BOOL:
            series.append(pl.Series(name, values, dtype=pl.Boolean))
        elif oid in (_FLOAT4, _FLOAT8):
            series.append(pl.Series(name, values, dtype=pl.Float64))
        elif oid in (_TEXT, _VARCHAR):
            series.append(pl.Series(name, values, dtype=pl.String))
        elif oid == _DATE:
            series.append(pl.Series(name, values, dtype=pl.Date))
        else:
            series.append(pl.Series(name, values, strict=False))
    frame = pl.DataFrame(series)
    if not numeric and not stamps:
        return frame
    convert = decimal_exprs(frame, numeric)
    for n in stamps:
        convert.append(pl.col(n).str.to_datetime(_TS_FORMAT, time_unit="us", time_zone="UTC", strict=False))
    try:
        done = frame.with_columns(convert)
    except pl.exceptions.PolarsError:  # NaN / Infinity in a NUMERIC column: keep that one as text
        done = frame.with_columns([decimal_series(n, frame[n]) for n in numeric])
        done = done.with_columns([c for c in convert if c.meta.output_name() in stamps])
    fixes = []
    for n in numeric + stamps:
        if done[n].null_count() != frame[n].null_count():  # a value the fast path could not read
            fixes.append(decimal_series(n, frame[n]) if n in numeric else _timestamps(n, frame[n].to_list()))
    return done.with_columns(fixes) if fixes else done
