"""Archived book days back: the days whose rows were dropped from PostgreSQL, read from Parquet.

Like `read_archived_trades`, these return only what the database no longer holds (days recorded as
dropped in `archive_book_days`, read from where they were archived, each file checked against
its record — size, SHA-256, page CRCs, rows, ids — and named when it differs), filtered to
[start, end) on the table's day column (`event_time` for diffs, `received_at` for quotes and
snapshots). A reader adds them to what it reads from the database: the two never overlap.

    read_book_diffs(exchange, symbol, start=None, end=None, *, conn=None, rows=False)
    read_quotes(exchange, symbol, start=None, end=None, *, conn=None, rows=False)
    read_book_snapshots(exchange, symbol, start=None, end=None, *, conn=None, rows=False)

Each gives a polars DataFrame with the table's columns in its order (`exchange`, `symbol`, then
the rest; prices and quantities exact `pl.Decimal(38, s)`, level arrays `pl.List(pl.Decimal(38, s))`,
`s` the most decimals of the column's values; times `Datetime("us", "UTC")`), in update-id order,
or None when no dropped day overlaps the range; with `rows=True` a list of the book's own rows
(`DepthDiff`, `Quote`, `BookSnapshot`) holding the stored decimal text, ready for `OrderBook`.
`book_gaps` is never dropped: read it from PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from ...book.model import BookSnapshot, DepthDiff, Quote
from ...errors import DatabaseError, first_line
from .book import KINDS, BookRecord, check_book_file
from .errors import ArchiveError
from .store import ArchiveStore, open_store

__all__ = ["dropped_book_days", "read_book", "read_book_diffs", "read_quotes", "read_book_snapshots"]


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    text = str(value).strip()
    return _utc(datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text))


def dropped_book_days(conn: psycopg.Connection, kind: str, exchange: str, symbol: str,
                      start: Any = None, end: Any = None) -> list[BookRecord]:
    """The book days of `kind` for (exchange, symbol) that live only in the archive and overlap
    [start, end)."""
    try:
        row = conn.execute("SELECT to_regclass('archive_book_days') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return []
        rows = conn.execute(
            "SELECT kind, exchange, symbol, day, location, path, rows, first_id, last_id, checksum, bytes, "
            "sha256, format FROM archive_book_days WHERE kind = %s AND exchange = %s AND symbol = %s AND "
            "dropped_at IS NOT NULL ORDER BY day",
            (kind, exchange, symbol),
        ).fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read archive_book_days: {first_line(exc)}") from None
    t0, t1 = _utc(start), _utc(end)
    out = []
    for r in rows:
        d0 = datetime(r[3].year, r[3].month, r[3].day, tzinfo=timezone.utc)
        if (t1 is not None and d0 >= t1) or (t0 is not None and d0 + timedelta(days=1) <= t0):
            continue
        out.append(
            BookRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                int(r[6]),
                r[7],
                r[8],
                r[9],
                int(r[10]),
                r[11],
                int(r[12]),
                True,
            )
        )
    return out


def read_book(
    kind: str,
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    conn: psycopg.Connection | None = None,
) -> Any | None:
    """The archived-and-dropped rows of a book table in [start, end) as one Arrow table (None:
    no such day)."""
    import pyarrow as pa

    from .. import db

    if kind not in KINDS or not KINDS[kind].droppable:
        raise ArchiveError(
            f"{kind!r} is not an archived book table that is dropped: use one of book_diffs, quotes, "
            "book_snapshots"
        )
    own = conn is None
    c = conn or db.connect()
    try:
        days = dropped_book_days(c, kind, exchange, symbol, start, end)
    finally:
        if own:
            c.close()
    if not days:
        return None
    t0, t1 = _utc(start), _utc(end)
    col = KINDS[kind].day_column
    filters: list[tuple[str, str, Any]] = []
    if t0 is not None:
        filters.append((col, ">=", pa.scalar(t0, pa.timestamp("us", tz="UTC"))))
    if t1 is not None:
        filters.append((col, "<", pa.scalar(t1, pa.timestamp("us", tz="UTC"))))
    stores: dict[str, ArchiveStore] = {}
    tables = []
    for rec in days:
        store = stores.get(rec.location)
        if store is None:
            store = stores[rec.location] = open_store(rec.location, check=False)
        if not store.exists(rec.path):
            raise ArchiveError(
                f"{kind} of {exchange} {symbol} {rec.day} is recorded as archived at "
                f"{store.uri(rec.path)} (and dropped from the database) but the file is missing: "
                "restore it there"
            )
        table = check_book_file(store.get(rec.path), rec, store.uri(rec.path), filters or None)
        tables.append(table.select(KINDS[kind].names).replace_schema_metadata(None))
    return pa.concat_tables(tables)


def _scale(values: list[str]) -> int:
    return max((len(v) - v.index(".") - 1 for v in values if "." in v), default=0)


def _frame(table: Any, kind: str, exchange: str, symbol: str) -> Any:
    import polars as pl

    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    exprs = []
    for name, arrow, _spark, _null in KINDS[kind].columns:
        if arrow == "list<string>":
            s = _scale(frame[name].explode().drop_nulls().unique().to_list())
            exprs.append(pl.col(name).cast(pl.List(pl.Decimal(38, s))))
        elif name in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
            s = _scale(frame[name].unique().to_list())
            exprs.append(pl.col(name).cast(pl.Decimal(38, s)))
        elif arrow.startswith("timestamp"):
            exprs.append(pl.col(name).cast(pl.Datetime("us", "UTC")))
    frame = frame.with_columns(exprs).with_columns(
        pl.lit(exchange, pl.String).alias("exchange"), pl.lit(symbol, pl.String).alias("symbol")
    )
    return frame.select(["exchange", "symbol", *KINDS[kind].names])


def _us(t: datetime | None) -> int | None:
    if t is None:
        return None
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _read(
    kind: str, exchange: str, symbol: str, start: Any, end: Any, conn: psycopg.Connection | None, rows: bool
) -> Any:
    table = read_book(kind, exchange, symbol, start, end, conn=conn)
    if not rows:
        return None if table is None else _frame(table, kind, exchange, symbol)
    if table is None:
        return []
    out: list[Any] = []
    for r in table.to_pylist():
        if kind == "book_diffs":
            out.append(
                DepthDiff(
                    exchange,
                    symbol,
                    r["first_update_id"],
                    r["last_update_id"],
                    _us(r["event_time"]) or 0,
                    list(zip(r["bid_price"], r["bid_qty"])),
                    list(zip(r["ask_price"], r["ask_qty"])),
                    _us(r["received_at"]),
                    r["prev_update_id"],
                    r["source"],
                )
            )
        elif kind == "quotes":
            out.append(
                Quote(
                    exchange,
                    symbol,
                    r["update_id"],
                    r["bid_price"],
                    r["bid_qty"],
                    r["ask_price"],
                    r["ask_qty"],
                    _us(r["received_at"]) or 0,
                    _us(r["event_time"]),
                    r["source"],
                )
            )
        else:
            out.append(
                BookSnapshot(
                    exchange,
                    symbol,
                    r["last_update_id"],
                    list(zip(r["bid_price"], r["bid_qty"])),
                    list(zip(r["ask_price"], r["ask_qty"])),
                    _us(r["received_at"]) or 0,
                    _us(r["event_time"]),
                    r["source"],
                )
            )
    return out


def read_book_diffs(
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    conn: psycopg.Connection | None = None,
    rows: bool = False,
) -> Any:
    """Archived-and-dropped `book_diffs` of [start, end) on event_time (see the module doc)."""
    return _read("book_diffs", exchange, symbol, start, end, conn, rows)


def read_quotes(
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    conn: psycopg.Connection | None = None,
    rows: bool = False,
) -> Any:
    """Archived-and-dropped `quotes` of [start, end) on received_at (see the module doc)."""
    return _read("quotes", exchange, symbol, start, end, conn, rows)


def read_book_snapshots(
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    conn: psycopg.Connection | None = None,
    rows: bool = False,
) -> Any:
    """Archived-and-dropped `book_snapshots` of [start, end) on received_at (see the module doc)."""
    return _read("book_snapshots", exchange, symbol, start, end, conn, rows)
