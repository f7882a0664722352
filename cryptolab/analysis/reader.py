"""load_trades (the reader): stored trades straight into a polars DataFrame, fast and exact.

The reader is ADBC (`adbc-driver-postgresql`, Apache Arrow's database connectivity): the
server streams the rows in binary COPY format and the driver builds Arrow columns in C++,
with real bind parameters; NUMERIC columns travel as their exact text (`::text`) and
become `pl.Decimal(38, s)` columns in one vectorized pass. Nothing is built per row in
Python. `engine="copy"` uses psycopg's `COPY … (FORMAT csv)` parsed by `pl.read_csv`
instead (no extra dependency). benchmarks/bench_analysis.py compares both with psycopg
binary COPY, connectorx and pandas.read_sql.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg
from psycopg import sql

from ..errors import DatabaseError, DataError, first_line
from ..storage.parquet.read import merge, read_archived_trades
from .args import AGG_MODULE, AsType, Frame, TimeLike, as_frame, parse_time
from .execute import run
from .frames import decimal_exprs, decimal_series
from .scope import connection, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["load_trades", "load_agg_trades", "TRADE_COLUMNS", "DEFAULT_COLUMNS"]

TRADE_COLUMNS = (
    "exchange", "symbol", "trade_id", "trade_time", "price", "qty", "quote_qty", "is_buyer_maker",
    "event_time", "received_at", "ingested_at", "source",
)
DEFAULT_COLUMNS = ("trade_id", "trade_time", "price", "qty", "is_buyer_maker")
_NUMERIC = {"price", "qty", "quote_qty"}
_TIMES = {"trade_time", "event_time", "received_at", "ingested_at"}


@overload
def load_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                columns: Sequence[str] = ..., exchange: str | None = ...,
                engine: Literal["adbc", "copy"] = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def load_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                columns: Sequence[str] = ..., exchange: str | None = ...,
                engine: Literal["adbc", "copy"] = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["pandas"]) -> pd.DataFrame: ...


def load_trades(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    exchange: str | None = None,
    engine: Literal["adbc", "copy"] = "adbc",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Every stored trade of `symbol` in [start, end) (default: all of them), in trade-id order.

    `symbol` / `exchange` None: taken from the data as everywhere in `cryptolab.analysis`.

    `columns` picks from TRADE_COLUMNS (default: trade_id, trade_time, price, qty,
    is_buyer_maker). Prices and quantities are exact `pl.Decimal(38, s)` columns (decimal
    strings if a value would not fit 38 digits), times `pl.Datetime("us", "UTC")`.
    `engine`: "adbc" (fastest; reads on its own connection to the same database) or
    "copy" (psycopg COPY to CSV, on `conn`).
    """
    import polars as pl

    cols = list(columns)
    bad = [c for c in cols if c not in TRADE_COLUMNS]
    if bad or not cols or len(set(cols)) != len(cols):
        raise DataError(
            f"columns {bad or cols} are not trade columns (once each): choose from {', '.join(TRADE_COLUMNS)}"
        )
    if engine not in ("adbc", "copy"):
        raise DataError(f"engine must be 'adbc' or 'copy', not {engine!r}")
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    if t0 and t1 and t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them")
    with connection(conn) as c:
        span = resolve_span(
            c, symbol, t0, t1, exchange
        )  # checks the symbol, fills exchange/symbol from the data
        if engine == "adbc":
            frame = _read_adbc(_conninfo(c), cols, span.exchange, span.symbol, t0, t1)
        else:
            frame = _read_copy(c, cols, span.exchange, span.symbol, t0, t1)
        # the dropped days
        archived = read_archived_trades(span.exchange, span.symbol, t0, t1, columns=cols, conn=c)
    numeric = [c for c in cols if c in _NUMERIC]
    if frame.height:
        try:
            result = frame.with_columns(decimal_exprs(frame, numeric))
        except pl.exceptions.PolarsError:  # NaN in a NUMERIC column: that column stays text
            result = frame.with_columns([decimal_series(c, frame[c]) for c in numeric])
    else:
        result = frame.with_columns([pl.col(c).cast(pl.Decimal(38, 8)) for c in numeric])
    result = merge(result, archived)  # one history: archive + database, in trade-id order
    if "trade_id" in cols and not result["trade_id"].is_sorted():
        result = result.sort("trade_id")  # in parallel, client side: cheaper than a server sort
    return as_frame(result, as_)


@overload
def load_agg_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                    exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                    as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def load_agg_trades(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                    exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                    as_: Literal["pandas"]) -> pd.DataFrame: ...


def load_agg_trades(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Every stored aggregate trade (table agg_trades) of `symbol` in [start, end), in agg_id order.

    Default range: every stored aggregate. Columns: agg_id, trade_time, price, qty, quote_qty
    (exact Decimal), first_trade_id, last_trade_id, trade_count (= last − first + 1),
    is_buyer_maker, source. A symbol with raw trades but no aggregates gives an empty frame;
    one with neither raises DataError.
    """
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    with connection(conn) as c:
        span = resolve_span(c, symbol, t0, t1, exchange, kind="aggTrades", require_stored=False)
        if span.first_stored is None:
            resolve_span(c, symbol, t0, t1, exchange)  # nothing stored at all: says what is
        values = span.values()
        if t0 is None and span.first_stored is not None:
            values["start"] = span.first_stored
        return run(c, AGG_MODULE, "agg_trades", values, as_)


def _conninfo(conn: psycopg.Connection) -> str:
    """A libpq connection string for the database `conn` is on (for ADBC's own connection)."""
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    return psycopg.conninfo.make_conninfo("", **params)


def _where(exchange: str, symbol: str, t0: Any, t1: Any, placeholder: Any) -> tuple[str, list[Any]]:
    args: list[Any] = [exchange, symbol]
    parts = [f"exchange = {placeholder(1)}", f"symbol = {placeholder(2)}"]
    if t0 is not None:
        args.append(t0)
        parts.append(f"trade_time >= {placeholder(len(args))}")
    if t1 is not None:
        args.append(t1)
        parts.append(f"trade_time < {placeholder(len(args))}")
    return " AND ".join(parts), args


def _select_list(cols: Sequence[str]) -> str:
    # names come from TRADE_COLUMNS only (checked above): plain identifiers
    return ", ".join(f"{c}::text AS {c}" if c in _NUMERIC else c for c in cols)


def _read_adbc(conninfo: str, cols: list[str], exchange: str, symbol: str, t0: Any, t1: Any) -> Any:
    import polars as pl

    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:  # pragma: no cover - install problem
        raise DataError(
            "engine='adbc' needs adbc-driver-postgresql: pip install adbc-driver-postgresql, "
            "or pass engine='copy'"
        ) from None
    where, args = _where(exchange, symbol, t0, t1, lambda i: f"${i}")
    query = f"SELECT {_select_list(cols)} FROM trades WHERE {where}"
    try:
        with adbc.connect(conninfo) as ac, ac.cursor() as cur:
            cur.execute(query, args)
            table = cur.fetch_arrow_table()
    except Exception as exc:  # adbc_driver_manager.Error and its subclasses
        first = first_line(exc)
        raise DatabaseError(f"could not read trades over ADBC: {first}") from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns([pl.col(c).dt.convert_time_zone("UTC") for c in cols if c in _TIMES])


def _read_copy(
    conn: psycopg.Connection, cols: list[str], exchange: str, symbol: str, t0: Any, t1: Any
) -> Any:
    import polars as pl

    where, args = _where(exchange, symbol, t0, t1, lambda i: "{}")
    exprs = []
    for c in cols:
        if c in _TIMES:  # epoch microseconds: exact, and parsed by polars as integers
            exprs.append(f"(extract(epoch FROM {c}) * 1000000)::bigint AS {c}")
        elif c == "is_buyer_maker":
            exprs.append(f"{c}::int AS {c}")
        else:
            exprs.append(c)
    # COPY takes no server-side parameters: psycopg quotes the values as literals (sql.Literal)
    template = "COPY (SELECT " + ", ".join(exprs) + " FROM trades WHERE " + where + ") TO STDOUT (FORMAT csv)"
    query = sql.SQL(template).format(*[sql.Literal(a) for a in args])  # our own text
    buf = io.BytesIO()
    try:
        with conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                buf.write(chunk)
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read trades: {first_line(exc)}") from None
    schema = {
        c: (pl.Int64 if c in _TIMES or c in ("trade_id", "is_buyer_maker") else pl.String) for c in cols
    }
    if buf.tell() == 0:
        frame = pl.DataFrame({c: pl.Series(c, [], dtype=schema[c]) for c in cols})
    else:
        buf.seek(0)
        frame = pl.read_csv(buf, has_header=False, new_columns=cols, schema_overrides=schema)
    return frame.with_columns(
        [pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") for c in cols if c in _TIMES]
        + ([pl.col("is_buyer_maker").cast(pl.Boolean)] if "is_buyer_maker" in cols else [])
    )
