"""What every analysis function shares: argument checks, the query runner, exact frames.

* Arguments: `symbol` (any case; stored upper case), `exchange` ('binance'),
  `start` / `end` (aware or naive-UTC datetimes, dates, or ISO-8601 strings; the
  range is [start, end)), `interval` ('1s', '5s', '1m', '15m', '1h', '4h', '1d', '1w':
  a positive count of s/m/h/d/w). Without `end`, the range ends after the symbol's
  last stored second; without `start`, it covers the hour before `end`.
* Bad input (unknown symbol, start after end, a malformed interval or time) raises
  `DataError` before any SQL runs; database failures raise `DatabaseError`. A
  psycopg error never reaches the caller.
* Results are polars DataFrames (`as_="pandas"` for pandas). PostgreSQL NUMERIC
  columns become exact `pl.Decimal(38, s)` columns, s being the largest scale in the
  column; a column with a value that does not fit 38 digits (or NaN) is returned as
  exact decimal strings (`pl.String`) instead. Nothing is ever converted to float.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from .. import db, queries
from ..errors import DatabaseError, DataError

__all__ = [
    "AsType",
    "Frame",
    "Span",
    "INTERVAL_UNITS",
    "MAX_ROWS",
    "parse_interval",
    "parse_time",
    "parse_decimal",
    "normalize_symbol",
    "connection",
    "resolve_span",
    "check_buckets",
    "stored_symbols",
    "execute",
    "run",
    "to_frame",
    "decimal_exprs",
    "decimal_series",
]

Frame = Any
"""A polars DataFrame (or a pandas DataFrame when `as_="pandas"`)."""

AsType = Literal["polars", "pandas"]

INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_INTERVAL = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,31}")
MAX_ROWS = 5_000_000
"""Largest dense series (buckets) one call may ask for."""


def parse_interval(value: str, *, name: str = "interval") -> tuple[str, timedelta]:
    """Validate an interval string like '1s', '15m', '4h', '1d'; returns (text, timedelta)."""
    text = str(value).strip() if value is not None else ""
    m = _INTERVAL.fullmatch(text)
    if not m:
        raise DataError(
            f"{name} {value!r} is not an interval: use a positive count and a unit s, m, h, d or w "
            "('1s', '5s', '1m', '15m', '1h', '4h', '1d', '1w')"
        )
    return text, timedelta(seconds=int(m.group(1)) * INTERVAL_UNITS[m.group(2)])


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
        raise DataError(f"exchange {exchange!r} is not an exchange name: use 'binance'")
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

    def values(self, **extra: Any) -> dict[str, Any]:
        """The variables the SQL modules take, plus `extra`."""
        return {"exchange": self.exchange, "symbol": self.symbol, "start": self.start, "end": self.end, **extra}


def stored_symbols(conn: psycopg.Connection, exchange: str) -> list[str]:
    """Symbols with stored bars on `exchange` (for error messages and listings)."""
    rows = execute(conn, "volume_stored", "symbols", {"exchange": exchange})
    return [r[0] for r in rows]


def resolve_span(
    conn: psycopg.Connection,
    symbol: Any,
    start: Any,
    end: Any,
    exchange: Any = "binance",
    *,
    default: timedelta = timedelta(hours=1),
    require_stored: bool = True,
) -> Span:
    """Check the arguments and fill the default range; DataError explains what to pass."""
    sym = normalize_symbol(symbol)
    exch = _normalize_exchange(exchange)
    t0 = parse_time(start, "start")
    t1 = parse_time(end, "end")
    row = execute(conn, "volume_stored", "stored_span", {"exchange": exch, "symbol": sym})[0]
    first, last = row[0], row[1]
    if first is None and require_stored:
        known = stored_symbols(conn, exch)
        hint = f"stored symbols on {exch}: {', '.join(known)}" if known else f"nothing is stored for {exch} yet"
        raise DataError(f"unknown symbol {sym!r}: no trades stored for it ({hint}); capture or load it first")
    if t1 is None:
        if last is not None:
            t1 = last + timedelta(seconds=1)
        elif t0 is not None:
            t1 = t0 + default
        else:
            t1 = datetime.now(timezone.utc).replace(microsecond=0)
    if t0 is None:
        t0 = t1 - default
    if t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them or widen the range")
    return Span(exch, sym, t0, t1, first, last)


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


def execute(conn: psycopg.Connection, module: str, name: str, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run a named query and return its rows as Python values (Decimal for NUMERIC)."""
    query = queries.get(module, name)
    sql_, params = query.bind(values)
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
) -> Frame:
    """Run a named query into an exact DataFrame (see the module docstring)."""
    if as_ not in ("polars", "pandas"):
        raise DataError(f"as_ must be 'polars' or 'pandas', not {as_!r}")
    query = queries.get(module, name)
    sql_, params = query.bind(values)
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
    scale = int((length - dot - 1).max() or 0)  # type: ignore[arg-type]
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
            if int(ints or 0) + scale > 38:  # type: ignore[arg-type]
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
