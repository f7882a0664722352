"""Archived trades back into polars: the days whose partitions were dropped, read from Parquet.

`read_archived_trades(...)` returns only what the database no longer holds (days recorded as dropped
in `archive_days`, read from where they were archived, each file checked against what was
recorded at publish — size, SHA-256, page CRCs, rows, ids — and named when it differs, then
filtered to [start, end) with the row groups' statistics); `merge(db_frame, archived)` joins it
to what `load_trades` read from the database into one frame in trade-id order, with the same
decimal scales the database alone would have given (the files keep the number of decimals
PostgreSQL stored each value with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from ...errors import DatabaseError, first_line
from .errors import ArchiveError
from .layout import DECIMALS, FILE_COLUMNS, SCALE_COLUMNS, TIMES
from .manifest import DayRecord, check_file
from .store import ArchiveStore, open_store

__all__ = ["ArchivedDay", "dropped_days", "read_day_files", "read_archived_trades", "merge"]


@dataclass(frozen=True)
class ArchivedDay:
    day: date
    location: str
    path: str
    record: DayRecord | None = None  # what was recorded at publish: every read checks the file against it


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def dropped_days(conn: psycopg.Connection, exchange: str, symbol: str,
                 start: datetime | None = None, end: datetime | None = None) -> list[ArchivedDay]:
    """Days of (exchange, symbol) that live only in the archive and overlap [start, end)."""
    try:
        row = conn.execute("SELECT to_regclass('archive_days') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return []
        rows = conn.execute(
            "SELECT day, location, path, rows, first_trade_id, last_trade_id, sum_qty, sum_quote, bytes, "
            "sha256, format FROM archive_days WHERE exchange = %s AND symbol = %s AND dropped_at IS NOT NULL "
            "ORDER BY day",
            (exchange, symbol),
        ).fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read archive_days: {first_line(exc)}") from None
    t0, t1 = _utc(start), _utc(end)
    out = []
    for day, location, path, n, lo, hi, sq, squote, size, digest, fmt in rows:
        d0 = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        if (t1 is not None and d0 >= t1) or (t0 is not None and d0 + timedelta(days=1) <= t0):
            continue
        rec = DayRecord(exchange, symbol, day, path, int(n), lo, hi, sq, squote, int(size), digest, int(fmt))
        out.append(ArchivedDay(day, location, path, rec))
    return out


def read_day_files(
    days: Sequence[ArchivedDay], start: datetime | None, end: datetime | None, columns: Sequence[str]
) -> Any | None:
    """Arrow table of `columns` ⊂ FILE_COLUMNS over [start, end) from `days` (plus the per-row
    display scales when a decimal is asked for), or None when there are no days."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not days:
        return None
    wanted = set(columns)
    if wanted & set(DECIMALS):
        wanted |= set(SCALE_COLUMNS.values())
    cols = [c for c in FILE_COLUMNS if c in wanted]
    t0, t1 = _utc(start), _utc(end)
    stores: dict[str, ArchiveStore] = {}
    tables = []
    for d in days:
        store = stores.get(d.location)
        if store is None:
            store = stores[d.location] = open_store(d.location, check=False)
        filters: list[tuple[str, str, Any]] = []
        if t0 is not None:
            filters.append(("trade_time", ">=", pa.scalar(t0, pa.timestamp("us", tz="UTC"))))
        if t1 is not None:
            filters.append(("trade_time", "<", pa.scalar(t1, pa.timestamp("us", tz="UTC"))))
        read_cols = list(dict.fromkeys(cols + (["trade_time"] if filters else [])))
        if not store.exists(d.path):
            raise ArchiveError(
                f"{d.day} is recorded as archived at {store.uri(d.path)} (and dropped from the "
                "database) but the file is missing: restore it there"
            )
        data = store.get(d.path)
        if d.record is not None:  # size, SHA-256, page CRCs, rows and ids as recorded at publish
            table = check_file(data, d.record, store.uri(d.path), read_cols, filters or None)
        else:
            table = decode(data, read_cols, store.uri(d.path))
        tables.append(table.select(cols))
    # decimals: one scale per column (the largest of the files) before concatenating
    for name in DECIMALS:
        if name not in cols:
            continue
        scale = max(t.schema.field(name).type.scale for t in tables)  # one contract; older files may differ
        typ = pa.decimal128(38, scale)
        tables = [
            t.set_column(t.schema.get_field_index(name), name, pc.cast(t.column(name), typ))
            if t.schema.field(name).type != typ
            else t
            for t in tables
        ]
    return pa.concat_tables(tables)


def _stored_scales(frame: Any) -> dict[str, int]:
    """The scale PostgreSQL gives each decimal column of these rows: its largest display scale."""
    out: dict[str, int] = {}
    if frame.height == 0 or "price_scale" not in frame.columns:
        return out
    row = frame.select(
        p=frame["price_scale"].max(),
        q=frame["qty_scale"].max(),
        pq=(frame["price_scale"].cast(int) + frame["qty_scale"].cast(int)).max(),
    ).row(0)
    return {"price": int(row[0]), "qty": int(row[1]), "quote_qty": int(row[2])}


def _to_polars(table: Any, exchange: str, symbol: str, columns: Sequence[str]) -> Any:
    """The archived rows as load_trades gives them: exact decimals with the database's scales."""
    import polars as pl

    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    scales = _stored_scales(frame)
    exprs = []
    for name in DECIMALS:
        if name in frame.columns and name in scales:
            want = pl.Decimal(38, scales[name])
            if frame.schema[name] != want:
                exprs.append(pl.col(name).cast(want))  # exact: no value has more decimals than that
    for name in TIMES:
        if name in frame.columns and frame.schema[name] != pl.Datetime("us", "UTC"):
            exprs.append(pl.col(name).cast(pl.Datetime("us", "UTC")))
    if exprs:
        frame = frame.with_columns(exprs)
    if "exchange" in columns:
        frame = frame.with_columns(pl.lit(exchange, pl.String).alias("exchange"))
    if "symbol" in columns:
        frame = frame.with_columns(pl.lit(symbol, pl.String).alias("symbol"))
    return frame.select(list(columns))


def as_stored_text(table: Any, exchange: str, symbol: str, columns: Sequence[str]) -> Any:
    """The archived rows with price, qty and quote_qty as the exact text PostgreSQL stored
    (each value with its own number of decimals), for COPY back into a table."""
    import polars as pl

    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    row_scale = {
        "price": pl.col("price_scale").cast(pl.Int64),
        "qty": pl.col("qty_scale").cast(pl.Int64),
        "quote_qty": pl.col("price_scale").cast(pl.Int64) + pl.col("qty_scale").cast(pl.Int64),
    }
    exprs = []
    for name in DECIMALS:
        text = pl.col(name).cast(pl.String)
        cut = frame.schema[name].scale - row_scale[name]  # type: ignore[attr-defined]
        exprs.append(
            text.str.head(text.str.len_chars() - cut - (row_scale[name] == 0).cast(pl.Int64)).alias(name)
        )
    frame = frame.with_columns(exprs).with_columns(
        pl.lit(exchange, pl.String).alias("exchange"), pl.lit(symbol, pl.String).alias("symbol")
    )
    return frame.select(list(columns))


def read_archived_trades(
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    columns: Sequence[str] = ("trade_id", "trade_time", "price", "qty", "is_buyer_maker"),
    conn: psycopg.Connection | None = None,
) -> Any:
    """The archived-and-dropped trades of (exchange, symbol) in [start, end) as a polars DataFrame
    (None when no dropped day overlaps the range). Prices and quantities exact `pl.Decimal(38, s)`."""
    from .. import db

    own = conn is None
    c = conn or db.connect()
    try:
        t0, t1 = _as_time(start), _as_time(end)
        days = dropped_days(c, exchange, symbol, t0, t1)
    finally:
        if own:
            c.close()
    got = read_day_files(days, t0, t1, columns)
    if got is None:
        return None
    return _to_polars(got, exchange, symbol, columns)


def _as_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    text = str(value).strip()
    return _utc(datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text))


def merge(db_frame: Any, archived: Any) -> Any:
    """One frame from the database's part and the archive's part, in trade-id order.

    Decimal columns get the larger scale of the two (the database's alone when the archive
    adds nothing, and vice versa), so the result is what one database holding everything gives.
    """
    import polars as pl

    if archived is None or archived.height == 0:
        return db_frame
    a, d = archived, db_frame
    fixes_a, fixes_d = [], []
    for name in DECIMALS:
        if name not in d.columns:
            continue
        dt_d, dt_a = d.schema[name], a.schema[name]
        if dt_d == pl.String:  # the database part was too wide for 38 digits: stay text
            fixes_a.append(pl.col(name).cast(pl.String))
            continue
        if d.height == 0:
            fixes_d.append(pl.col(name).cast(dt_a))
            continue
        scale = max(dt_d.scale or 0, dt_a.scale or 0)
        fixes_a.append(pl.col(name).cast(pl.Decimal(38, scale)))
        fixes_d.append(pl.col(name).cast(pl.Decimal(38, scale)))
    if fixes_a:
        a = a.with_columns(fixes_a)
    if fixes_d:
        d = d.with_columns(fixes_d)
    out = pl.concat([a, d.select(a.columns)], how="vertical")
    if "trade_id" in out.columns:
        if d.height and a.height:
            lo_d, hi_d = d["trade_id"].min(), d["trade_id"].max()
            lo_a, hi_a = a["trade_id"].min(), a["trade_id"].max()
            if lo_d <= hi_a and lo_a <= hi_d:  # ranges overlap: a day is in both
                out = out.unique(subset=["trade_id"], keep="first", maintain_order=True)
        if not out["trade_id"].is_sorted():
            out = out.sort("trade_id")
    return out


def decode(data: bytes, columns: list[str] | None = None, where: str = "the archived file") -> Any:
    """A file's table (page CRCs checked where the file has them); ArchiveError naming `where` if damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data), columns=columns, page_checksum_verification=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ArchiveError(
            f"{where} cannot be read as Parquet ({' '.join(str(exc).split())}): it is damaged or partial"
        ) from None
