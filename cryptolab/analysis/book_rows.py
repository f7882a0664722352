"""The stored book's rows as the readers need them: snapshots, diffs (ids, event times, the
level arrays as text, turned into exact int64 ticks in bulk when every level has Binance's fixed
number of decimals), the crossed books recorded. Bulk reads go over ADBC on two backends at
once (turning NUMERIC into text is most of a read's cost); small ones over psycopg's COPY.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..errors import DatabaseError, first_line


@dataclass(frozen=True)
class BookSpan:
    exchange: str
    symbol: str
    start: datetime
    end: datetime

    def values(self, **extra: Any) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "start": self.start,
            "end": self.end,
            **extra,
        }


@dataclass
class StoredSnapshot:
    update_id: int
    received_at: datetime
    bids: tuple[Any, Any]  # (price strings, qty strings) as polars String series
    asks: tuple[Any, Any]


class StoredDiffs:
    """Stored diffs in last-id order: `frame` (first_id, last_id, prev_id, event_us), `raw` (the
    level arrays as text), and `sides` (made when first asked: per side d = diff row, price,
    qty as strings, every level in order)."""

    def __init__(self, frame: Any, raw: Any, sides: dict[str, Any] | None = None) -> None:
        self.frame, self.raw = frame, raw
        self._sides = sides

    @property
    def sides(self) -> dict[str, Any]:
        if self._sides is None:
            self._sides = {s: _explode(self.raw, s) for s in ("bid", "ask")}
        return self._sides

    @property
    def futures(self) -> bool:
        return bool(self.frame.height) and self.frame["prev_id"].null_count() < self.frame.height


def _copy(conn: psycopg.Connection, query: sql.Composable) -> bytes:
    buf = io.BytesIO()
    try:
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
            for chunk in copy:
                buf.write(chunk)
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read the stored book: {first_line(exc)}") from None
    return buf.getvalue()


def _fetch_adbc(conn: psycopg.Connection, query: sql.Composable, names: list[str]) -> Any:
    """The rows of `query` over ADBC (binary COPY decoded in C++: much faster than psycopg's COPY
    for ~1M rows), on its own connection to the same database; None when the driver is missing."""
    import polars as pl

    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:  # pragma: no cover - install problem
        return None
    from .reader import _conninfo

    text = query.as_string(conn)
    try:
        with adbc.connect(_conninfo(conn)) as ac, ac.cursor() as cur:
            cur.execute(text)
            table = cur.fetch_arrow_table()
    except Exception as exc:  # adbc_driver_manager.Error and its subclasses
        raise DatabaseError(f"could not read the stored book over ADBC: {first_line(exc)}") from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.rename(dict(zip(frame.columns, names)))


def fixed_scale_ticks(
    raw: Any,
) -> tuple[tuple[int, int], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] | None:
    """Exact int64 ticks of every diff level straight from the arrays' text, when all prices
    have one number of decimals and all quantities another (as Binance writes them): drop the
    points, split, cast. Returns ((price scale, qty scale), per side (d, price, qty)) or None
    (mixed decimals, or more than 18 digits: the general path)."""
    import polars as pl

    if raw.height == 0:
        return None
    scales = []
    for kind in ("price", "qty"):
        probe = pl.concat(
            [raw[f"{s}_{kind}"].str.extract(r"^\{[0-9]+\.([0-9]+)[,}]", 1) for s in ("bid", "ask")]
        )
        first = probe.drop_nulls()
        if not len(first) or len(first[0]) > 17:
            return None
        scales.append(len(first[0]))
    from concurrent.futures import ThreadPoolExecutor

    # in slices: polars' string splitting slows down on ~1 GB of text at once; two at a time
    with ThreadPoolExecutor(2) as pool:
        parts = list(
            pool.map(
                lambda i: _ticks_slice(raw.slice(i, _SLICE), i, scales[0], scales[1]),
                range(0, raw.height, _SLICE),
            )
        )
    if any(x is None for x in parts):
        return None
    out = {}
    for side in ("bid", "ask"):
        got = [x[side] for x in parts if x is not None]
        out[side] = (
            np.concatenate([g[0] for g in got]),
            np.concatenate([g[1] for g in got]),
            np.concatenate([g[2] for g in got]),
        )
    return (scales[0], scales[1]), out


_SLICE = 65_536


def _ticks_slice(
    raw: Any, offset: int, price_scale: int, qty_scale: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """`fixed_scale_ticks` of rows offset … offset + len(raw): None when a level has other decimals."""
    import polars as pl

    checks = raw.select(  # every element has exactly that many decimals
        (
            pl.when(pl.col(c) == "{}").then(0).otherwise(pl.col(c).str.count_matches(",", literal=True) + 1)
            == pl.col(c).str.count_matches(
                r"\.[0-9]{" + str(price_scale if i % 2 == 0 else qty_scale) + r"}[,}]"
            )
        )
        .all()
        .alias(c)
        for i, c in enumerate(("bid_price", "bid_qty", "ask_price", "ask_qty"))
    ).row(0)
    if not all(checks):
        return None
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for side in ("bid", "ask"):
        lists = (
            raw.select(
                (pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias("d"),
                *(
                    pl.col(f"{side}_{k}")
                    .str.replace_all(".", "", literal=True)
                    .str.strip_chars("{}")
                    .str.split(",")
                    .alias(k)
                    for k in ("price", "qty")
                ),
            )
            .explode(["price", "qty"])
            .filter(pl.col("price") != "")
        )
        try:
            p = lists["price"].cast(pl.Int64, strict=True).to_numpy()
            q = lists["qty"].cast(pl.Int64, strict=True).to_numpy()
        except pl.exceptions.InvalidOperationError:
            return None  # a value beyond int64
        out[side] = (lists["d"].to_numpy(), p.astype(np.int64, copy=False), q.astype(np.int64, copy=False))
    return out


def _explode(frame: Any, side: str) -> Any:
    import polars as pl

    return (
        frame.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("d"),
            pl.col(f"{side}_price").str.strip_chars("{}").str.split(",").alias("price"),
            pl.col(f"{side}_qty").str.strip_chars("{}").str.split(",").alias("qty"),
        )
        .explode(["price", "qty"])
        .filter(pl.col("price").is_not_null() & (pl.col("price") != ""))
    )


_PARTS = 2
"""Bulk reads split the id range in this many parts read at once (each its own server backend:
turning NUMERIC into text is most of a read's cost)."""


def read_diffs(
    conn: psycopg.Connection,
    exch: str,
    sym: str,
    after_id: int | None,
    upto_id: int | None,
    t_end: datetime | None,
    *,
    inclusive: bool = False,
    bulk: bool = False,
    levels: bool = True,
) -> StoredDiffs:
    """Diffs with last id > after_id (≥ with `inclusive`) and ≤ upto_id / event_time < t_end, in id
    order; `bulk` (many rows) reads over ADBC in parallel parts, else psycopg's COPY on `conn`;
    without `levels`, their ids and times only (`raw` is then empty)."""
    import polars as pl

    names = ["first_id", "last_id", "prev_id", "event_us", "bid_price", "bid_qty", "ask_price", "ask_qty"]
    if not levels:
        names = names[:4]
    schema = {
        "first_id": pl.Int64,
        "last_id": pl.Int64,
        "prev_id": pl.Int64,
        "event_us": pl.Int64,
        "bid_price": pl.String,
        "bid_qty": pl.String,
        "ask_price": pl.String,
        "ask_qty": pl.String,
    }
    schema = {n: schema[n] for n in names}
    cols = ", bid_price::text, bid_qty::text, ask_price::text, ask_qty::text" if levels else ""

    def query(lo: int | None, lo_inclusive: bool, hi: int | None) -> sql.Composable:
        where = [
            sql.SQL("exchange = {}").format(sql.Literal(exch)),
            sql.SQL("symbol = {}").format(sql.Literal(sym)),
        ]
        if lo is not None:
            where.append(
                sql.SQL("last_update_id {} {}").format(
                    sql.SQL(">=" if lo_inclusive else ">"), sql.Literal(lo)
                )
            )
        if hi is not None:
            where.append(sql.SQL("last_update_id <= {}").format(sql.Literal(hi)))
        if t_end is not None:
            where.append(sql.SQL("event_time < {}").format(sql.Literal(t_end)))
        return sql.SQL(
            "SELECT first_update_id, last_update_id, prev_update_id,"
            " (extract(epoch FROM event_time) * 1000000)::bigint" + cols + " FROM book_diffs WHERE {}"
            " ORDER BY last_update_id"
        ).format(sql.SQL(" AND ").join(where))

    frame = None
    if bulk and after_id is not None and upto_id is not None and upto_id - after_id > _PARTS:
        from concurrent.futures import ThreadPoolExecutor

        cuts = [after_id + (upto_id - after_id) * i // _PARTS for i in range(_PARTS + 1)]
        parts = [query(cuts[i], inclusive and i == 0, cuts[i + 1]) for i in range(_PARTS)]
        with ThreadPoolExecutor(_PARTS) as pool:
            got = list(pool.map(lambda q: _fetch_adbc(conn, q, names), parts))
        if all(g is not None for g in got):
            frame = pl.concat([g.cast(schema) for g in got])
    elif bulk:
        frame = _fetch_adbc(conn, query(after_id, inclusive, upto_id), names)
    if frame is None:  # no ADBC driver: psycopg's COPY, parsed by polars
        data = _copy(conn, query(after_id, inclusive, upto_id))
        frame = (
            pl.DataFrame(schema=schema)
            if not data
            else pl.read_csv(
                io.BytesIO(data),
                separator="\t",
                has_header=False,
                new_columns=names,
                schema_overrides=schema,
                quote_char=None,
                null_values="\\N",
            )
        )
    frame = frame.cast(schema)  # type: ignore[arg-type]
    return StoredDiffs(frame.select(names[:4]), frame.select(names[4:]))


def read_snapshots(
    conn: psycopg.Connection, exch: str, sym: str, lo: int | None, hi: int | None
) -> list[StoredSnapshot]:
    import polars as pl

    q = (
        "SELECT last_update_id, received_at, bid_price::text[], bid_qty::text[], ask_price::text[],"
        " ask_qty::text[] FROM book_snapshots WHERE exchange = %s AND symbol = %s"
        " AND last_update_id >= %s AND last_update_id <= %s"
        " ORDER BY last_update_id"
    )
    rows = conn.execute(q, (exch, sym, -1 if lo is None else lo, 2**62 if hi is None else hi)).fetchall()
    return [
        StoredSnapshot(
            r[0],
            r[1],
            (pl.Series(r[2], dtype=pl.String), pl.Series(r[3], dtype=pl.String)),
            (pl.Series(r[4], dtype=pl.String), pl.Series(r[5], dtype=pl.String)),
        )
        for r in rows
    ]


def crossed_after(conn: psycopg.Connection, exch: str, sym: str, lo: int, hi: int) -> list[int]:
    rows = conn.execute(
        "SELECT after_update_id FROM book_gaps WHERE exchange = %s AND symbol = %s AND reason = "
        "'crossed' AND after_update_id BETWEEN %s AND %s",
        (exch, sym, lo, hi),
    ).fetchall()
    return [int(r[0]) for r in rows]


def scalar(conn: psycopg.Connection, q: str, args: tuple[Any, ...]) -> Any:
    row = conn.execute(q, args).fetchone()
    return None if row is None else row[0]


def read_tops(conn: psycopg.Connection, exch: str, sym: str, lo: int, hi: int, *, bulk: bool) -> Any:
    """The stored tops (`book_tops`) with update ids in [lo, hi], in id order: update_id and the
    four prices and quantities as text (null on an empty side)."""
    import polars as pl

    names = ["update_id", "bid_price", "bid_qty", "ask_price", "ask_qty"]
    schema = {"update_id": pl.Int64, **{n: pl.String for n in names[1:]}}
    query = sql.SQL(
        "SELECT update_id, bid_price::text, bid_qty::text, ask_price::text, ask_qty::text FROM book_tops"
        " WHERE exchange = {} AND symbol = {} AND update_id BETWEEN {} AND {} ORDER BY update_id"
    ).format(sql.Literal(exch), sql.Literal(sym), sql.Literal(lo), sql.Literal(hi))
    frame = _fetch_adbc(conn, query, names) if bulk else None
    if frame is None:
        data = _copy(conn, query)
        if not data:
            return pl.DataFrame(schema=schema)
        frame = pl.read_csv(
            io.BytesIO(data),
            separator="\t",
            has_header=False,
            new_columns=names,
            schema_overrides=schema,
            quote_char=None,
            null_values="\\N",
        )
    return frame.cast(schema)  # type: ignore[arg-type]
