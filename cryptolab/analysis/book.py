"""Reading the stored order book: the book at an update id or a time, the top after every
update, the stored quotes and the recorded gaps (docs/book_analysis.md).

The book is rebuilt from `book_snapshots` and `book_diffs` alone (the decisions and the
vectorised arithmetic are in `book_replay`, pure). Arguments follow `cryptolab.analysis`:
`symbol`/`exchange` None take them from the stored book data (the symbol with the newest
snapshot; real `binance` first), times are datetimes or ISO strings (UTC), `[start, end)`
defaults to the last hour of stored diffs, `conn` reuses a connection, `as_` picks polars or
pandas. Prices and quantities are exact `pl.Decimal` columns. A symbol without depth data is a
`DataError` saying what is stored; a book asked for inside a break is a `BookBreakError`
naming the gap and the snapshot that heals it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..book.state import OrderBook
from ..errors import DatabaseError, DataError
from ..model import DEFAULT_EXCHANGE
from ..storage.parquet.book_session import book_attached
from .args import AsType, Frame, _normalize_exchange, normalize_symbol, parse_time
from .book_archive import (
    archived_book,
    archived_markets,
    cover_edge_time,
    cover_first,
    cover_ids,
    cover_last,
    cover_time,
    first_archived_before,
)
from .book_replay import NONE, Run, best_levels, final_levels, plan_runs, scale_of, ticks_to_decimal, to_ticks
from .execute import run
from .scope import connection

__all__ = ["book_at", "book_top", "quotes", "book_gaps", "book_markets", "BookBreakError", "TOP_COLUMNS",
           "BookSpan", "resolve_book", "load_book", "Rebuilt"]

_MODULE = "book"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DEFAULT = timedelta(hours=1)
TOP_COLUMNS = ("update_id", "ts", "bid_price", "bid_qty", "ask_price", "ask_qty", "spread", "mid")


class BookBreakError(DataError):
    """The book cannot be rebuilt at the asked point: it lies in a break of the stored diffs."""

    def __init__(self, message: str, *, after_id: int | None, snapshot_id: int | None) -> None:
        super().__init__(message)
        self.after_id = after_id
        self.snapshot_id = snapshot_id
        """The update id of the snapshot that heals the break (None: none stored yet)."""


# ---------------------------------------------------------------- which market, which range


def book_markets(
    *, what: str = "depth", conn: psycopg.Connection | None = None, as_: AsType = "polars"
) -> Frame:
    """Every (exchange, symbol) with stored book data: columns exchange, symbol, last (the newest
    snapshot's receive time with what="depth", the newest quote's with what="quotes")."""
    import polars as pl

    if what not in ("depth", "quotes"):
        raise DataError(f"what must be 'depth' or 'quotes', not {what!r}")
    with connection(conn) as c, archived_book(c):
        rows = sorted(_markets(c, what))
    frame = pl.DataFrame(
        {
            "exchange": [r[0] for r in rows],
            "symbol": [r[1] for r in rows],
            "last": pl.Series([r[2] for r in rows], dtype=pl.Datetime("us", "UTC")),
        }
    )
    return frame.to_pandas() if as_ == "pandas" else frame


def _markets(conn: psycopg.Connection, what: str) -> list[tuple[str, str, Any]]:
    q = (
        "SELECT exchange, symbol, max(received_at) FROM book_snapshots GROUP BY 1, 2"
        if what == "depth"
        else "SELECT exchange, symbol, max(received_at) FROM quotes GROUP BY 1, 2"
    )
    try:
        stored = [(r[0], r[1], r[2]) for r in conn.execute(q).fetchall()]
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not read the stored book markets: {str(exc).strip().splitlines()[0]}"
        ) from None
    # markets whose days were archived and dropped stay listed, with their newest time
    return archived_markets(conn, "book_snapshots" if what == "depth" else "quotes", stored)


def resolve_book(
    conn: psycopg.Connection, symbol: Any, exchange: Any, what: str = "depth"
) -> tuple[str, str]:
    """The (exchange, symbol) a book call means, checked against the stored book data
    (`what`: "depth" = snapshots and diffs, "quotes" = bookTicker rows)."""
    sym = None if symbol is None else normalize_symbol(symbol)
    exch = None if exchange is None else _normalize_exchange(exchange)
    markets = _markets(conn, what)
    mine = [m for m in markets if (sym is None or m[1] == sym) and (exch is None or m[0] == exch)]
    if not mine:
        kind = "depth data (book snapshots and diffs)" if what == "depth" else "quotes (bookTicker)"
        stored = ", ".join(f"{s} on {e}" for e, s, _ in sorted(markets)) or "none"
        who = f"{sym or 'any symbol'}{'' if exch is None else ' on ' + exch}"
        raise DataError(
            f"no {kind} stored for {who} (stored: {stored}): capture them with "
            "`cryptolab capture --streams trade,depth,bookTicker` or load a recording that holds them "
            "(`cryptolab load`), then ask again"
        )
    best = max(mine, key=lambda m: (m[0] == DEFAULT_EXCHANGE, m[2]))
    return best[0], best[1]


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


def _span(
    conn: psycopg.Connection, symbol: Any, start: Any, end: Any, exchange: Any, what: str = "depth"
) -> BookSpan:
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    exch, sym = resolve_book(conn, symbol, exchange, what)
    if t0 is None or t1 is None:
        table, col, key = (
            ("book_diffs", "event_time", "last_update_id")
            if what == "depth"
            else ("quotes", "received_at", "update_id")
        )
        q = f"SELECT {col} FROM {table} WHERE exchange = %s AND symbol = %s ORDER BY {key} {{}} LIMIT 1"
        if t1 is None:
            cover_last(conn, table, exch, sym)
            last = _one(conn, q.format("DESC"), (exch, sym))
            t1 = (
                (last + timedelta(microseconds=1))
                if last is not None
                else (t0 + _DEFAULT if t0 else datetime.now(timezone.utc))
            )
        if t0 is None:
            t0 = t1 - _DEFAULT
            # the first row only clips a start after it: when it lies in an archived day wholly
            # before t0 it cannot, and that day is not loaded to find it
            if not first_archived_before(conn, table, exch, sym, t0):
                first = _one(conn, q.format("ASC"), (exch, sym))
                if first is not None and t0 < first < t1:
                    t0 = first
    if t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them or widen the range")
    return BookSpan(exch, sym, t0, t1)


# ---------------------------------------------------------------- reading rows


@dataclass
class _Snap:
    update_id: int
    received_at: datetime
    bids: tuple[Any, Any]  # (price strings, qty strings) as polars String series
    asks: tuple[Any, Any]


class _Diffs:
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
        raise DatabaseError(f"could not read the stored book: {str(exc).strip().splitlines()[0]}") from None
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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"could not read the stored book over ADBC: {first}") from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.rename(dict(zip(frame.columns, names)))


def _fixed_scale_ticks(
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
    """`_fixed_scale_ticks` of rows offset … offset + len(raw): None when a level has other decimals."""
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


def _read_diffs(
    conn: psycopg.Connection,
    exch: str,
    sym: str,
    after_id: int | None,
    upto_id: int | None,
    t_end: datetime | None,
    *,
    inclusive: bool = False,
    bulk: bool = False,
) -> _Diffs:
    """Diffs with last id > after_id (≥ with `inclusive`) and ≤ upto_id / event_time < t_end, in id
    order; `bulk` (many rows) reads over ADBC in parallel parts, else psycopg's COPY on `conn`."""
    import polars as pl

    names = ["first_id", "last_id", "prev_id", "event_us", "bid_price", "bid_qty", "ask_price", "ask_qty"]
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
            " (extract(epoch FROM event_time) * 1000000)::bigint, bid_price::text, bid_qty::text,"
            " ask_price::text, ask_qty::text FROM book_diffs WHERE {} ORDER BY last_update_id"
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
    return _Diffs(frame.select(names[:4]), frame.select(names[4:]))


def _read_snapshots(
    conn: psycopg.Connection, exch: str, sym: str, lo: int | None, hi: int | None
) -> list[_Snap]:
    import polars as pl

    q = (
        "SELECT last_update_id, received_at, bid_price::text[], bid_qty::text[], ask_price::text[], ask_qty::text[]"
        " FROM book_snapshots WHERE exchange = %s AND symbol = %s AND last_update_id >= %s AND last_update_id <= %s"
        " ORDER BY last_update_id"
    )
    rows = conn.execute(q, (exch, sym, -1 if lo is None else lo, 2**62 if hi is None else hi)).fetchall()
    return [
        _Snap(
            r[0],
            r[1],
            (pl.Series(r[2], dtype=pl.String), pl.Series(r[3], dtype=pl.String)),
            (pl.Series(r[4], dtype=pl.String), pl.Series(r[5], dtype=pl.String)),
        )
        for r in rows
    ]


def _crossed(conn: psycopg.Connection, exch: str, sym: str, lo: int, hi: int) -> list[int]:
    rows = conn.execute(
        "SELECT after_update_id FROM book_gaps WHERE exchange = %s AND symbol = %s AND reason = "
        "'crossed' AND after_update_id BETWEEN %s AND %s",
        (exch, sym, lo, hi),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _one(conn: psycopg.Connection, q: str, args: tuple[Any, ...]) -> Any:
    row = conn.execute(q, args).fetchone()
    return None if row is None else row[0]


# ---------------------------------------------------------------- book_at


def book_at(
    symbol: str | None = None,
    at: Any = None,
    depth: int = 20,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The book's best `depth` levels per side at `at`: an update id (int) or a time (the state
    after the last diff whose event time is ≤ it); None: the newest stored.

    Rebuilt from the latest snapshot at or before that id plus the stored diffs after it, as
    long as they are continuous and no crossed book lies between. Columns: side ('bid' best
    first, then 'ask' best first), level (1 = best), price, qty (exact Decimal), update_id
    (the id the book is at). Inside a break: `BookBreakError` naming the gap and the snapshot
    that heals it."""
    import polars as pl

    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise DataError(f"depth must be a whole number of levels ≥ 1, not {depth!r}")
    with connection(conn) as c, archived_book(c):
        exch, sym = resolve_book(c, symbol, exchange)
        target = _target_id(c, exch, sym, at)
        cover_last(c, "book_snapshots", exch, sym, below=target + 1)
        snap_id = _one(
            c,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s "
            "AND last_update_id <= %s",
            (exch, sym, target),
        )
        if snap_id is None:
            cover_first(c, "book_snapshots", exch, sym)
            first = _one(
                c,
                "SELECT min(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s",
                (exch, sym),
            )
            raise BookBreakError(
                f"{sym}'s book on {exch} is not known at update id {target}: the first stored "
                f"snapshot is at update id {first}; ask for an id ≥ {first}",
                after_id=None,
                snapshot_id=first,
            )
        cover_ids(c, "book_snapshots", exch, sym, snap_id, snap_id)
        cover_ids(c, "book_diffs", exch, sym, snap_id, target)
        snaps = _read_snapshots(c, exch, sym, snap_id, snap_id)
        diffs = _read_diffs(c, exch, sym, snap_id, target, None, inclusive=True)
        futures = diffs.futures
        if not futures and diffs.frame.height and diffs.frame["last_id"][0] == snap_id:
            diffs = _drop_first(diffs)  # spot: a diff ending at the snapshot's id is in it already
        crossed = _crossed(c, exch, sym, snap_id, target)
        f = diffs.frame
        runs = plan_runs(
            f["first_id"].to_numpy(),
            f["last_id"].to_numpy(),
            f["prev_id"].to_numpy() if futures else None,
            [snap_id],
            crossed,
            futures,
        )
        n = f.height
        if not runs or runs[0].last < n - 1:
            raise _break_error(c, exch, sym, target, runs[0] if runs else None, f)
        book_id = int(f["last_id"][n - 1]) if n else snap_id
        snap = snaps[0]
        out = []
        for side, s_levels in (("bid", snap.bids), ("ask", snap.asks)):
            lv = diffs.sides[side]
            prices = pl.concat([s_levels[0], lv["price"]])
            qtys = pl.concat([s_levels[1], lv["qty"]])
            out.append((side, prices, qtys))
    try:
        frame = _levels_frame(out, depth, book_id)
    except ValueError:  # more than 18 digits: the exact Decimal book
        frame = _levels_frame_decimal(out, depth, book_id)
    return frame.to_pandas() if as_ == "pandas" else frame


def _levels_frame(out: list[tuple[str, Any, Any]], depth: int, book_id: int) -> Any:
    """book_at's frame from every update per side (in order), on exact int64 ticks."""
    import polars as pl

    ps = scale_of(*(o[1] for o in out))
    qs = scale_of(*(o[2] for o in out))
    parts = []
    for side, prices, qtys in out:
        p, q = final_levels(to_ticks(prices, ps), to_ticks(qtys, qs))
        if side == "bid":
            p, q = p[::-1], q[::-1]
        p, q = p[:depth], q[:depth]
        parts.append(
            pl.DataFrame(
                [
                    pl.Series("side", [side] * len(p), dtype=pl.String),
                    pl.Series("level", np.arange(1, len(p) + 1), dtype=pl.Int64),
                    ticks_to_decimal("price", p, ps),
                    ticks_to_decimal("qty", q, qs),
                    pl.Series("update_id", [book_id] * len(p), dtype=pl.Int64),
                ]
            )
        )
    return pl.concat(parts)


def _levels_frame_decimal(out: list[tuple[str, Any, Any]], depth: int, book_id: int) -> Any:
    """book_at's frame by applying the updates to an exact Decimal book (values beyond int64)."""
    import polars as pl

    from .frames import decimal_series

    book = OrderBook()
    sides = {side: list(zip(prices.to_list(), qtys.to_list())) for side, prices, qtys in out}
    book.load([], [], book_id)
    book.apply(sides["bid"], sides["ask"], book_id)
    rows = [
        (side, i + 1, p, q) for side in ("bid", "ask") for i, (p, q) in enumerate(book.levels(side, depth))
    ]
    return pl.DataFrame(
        [
            pl.Series("side", [r[0] for r in rows], dtype=pl.String),
            pl.Series("level", [r[1] for r in rows], dtype=pl.Int64),
            decimal_series("price", [format(r[2], "f") for r in rows]),
            decimal_series("qty", [format(r[3], "f") for r in rows]),
            pl.Series("update_id", [book_id] * len(rows), dtype=pl.Int64),
        ]
    )


def _drop_first(diffs: _Diffs) -> _Diffs:
    import polars as pl

    sides = {s: v.filter(pl.col("d") > 0).with_columns(pl.col("d") - 1) for s, v in diffs.sides.items()}
    return _Diffs(diffs.frame.slice(1), diffs.raw.slice(1), sides)


def _target_id(conn: psycopg.Connection, exch: str, sym: str, at: Any) -> int:
    """The update id `at` means: an int is one; a time, the last diff's (or snapshot's) id at or before it."""
    if isinstance(at, bool):
        raise DataError(f"at must be an update id (int) or a time, not {at!r}")
    if isinstance(at, int):
        if at < 0:
            raise DataError(f"update id {at} is negative: pass a stored update id or a time")
        return at
    t = parse_time(at, "at")
    if t is None:
        cover_last(conn, "book_diffs", exch, sym)
        cover_last(conn, "book_snapshots", exch, sym)
        got = _one(
            conn,
            "SELECT last_update_id FROM book_diffs WHERE exchange = %s AND symbol = %s "
            "ORDER BY last_update_id DESC LIMIT 1",
            (exch, sym),
        )
        snap = _one(
            conn,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s",
            (exch, sym),
        )
        return int(max(x for x in (got, snap) if x is not None))
    cover_last(conn, "book_diffs", exch, sym, at_or_before=t)
    got = _one(
        conn,
        "SELECT max(last_update_id) FROM book_diffs WHERE exchange = %s AND symbol = %s AND event_time <= %s",
        (exch, sym, t),
    )
    if got is None:
        cover_last(conn, "book_snapshots", exch, sym, at_or_before=t)
        got = _one(
            conn,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s "
            "AND received_at <= %s",
            (exch, sym, t),
        )
    if got is None:
        cover_edge_time(conn, "book_snapshots", exch, sym, newest=False)
        first = _one(
            conn,
            "SELECT min(received_at) FROM book_snapshots WHERE exchange = %s AND symbol = %s",
            (exch, sym),
        )
        raise DataError(
            f"{sym}'s book on {exch} is not known at {t.isoformat()}: the first snapshot was received "
            f"at {first.isoformat() if first else '?'}; ask for a later time"
        )
    return int(got)


def _break_error(
    conn: psycopg.Connection, exch: str, sym: str, target: int, r: Run | None, f: Any
) -> BookBreakError:
    """Say which break `target` lies in and which snapshot heals it."""
    reached = int(f["last_id"][r.last]) if r is not None and r.last >= r.first else None
    gap = conn.execute(
        "SELECT reason, after_update_id, before_update_id, missing, detected_at, snapshot_update_id FROM book_gaps "
        "WHERE exchange = %s AND symbol = %s AND after_update_id <= %s "
        "AND (snapshot_update_id IS NULL OR snapshot_update_id > %s) ORDER BY after_update_id DESC LIMIT 1",
        (exch, sym, target, target),
    ).fetchone()
    if gap is not None:
        reason, after, before, missing, detected, healer = gap
        what = {
            "gap": "a gap (diffs missed on the stream)",
            "crossed": "a crossed book (not stored as truth)",
            "restart": "a restart (diffs published while no capture ran)",
        }.get(reason, reason)
        lost = f", {missing} update ids missing" if missing else ""
        head = (
            f"{sym}'s book on {exch} cannot be rebuilt at update id {target}: it lies in {what} after update id "
            f"{after}{'' if before is None else f' (next seen {before}'}{lost}{'' if before is None else ')'}, "
            f"detected {detected.isoformat()}"
        )
    else:
        after = reached
        nxt = int(f["first_id"][r.last + 1]) if r is not None and r.last + 1 < f.height else None
        head = (
            f"{sym}'s book on {exch} cannot be rebuilt at update id {target}: the stored diffs break after update "
            f"id {reached}{'' if nxt is None else f' (the next stored diff starts at {nxt})'}"
        )
        healer = None
    cover_first(conn, "book_snapshots", exch, sym, above=target if healer is None else healer - 1)
    heal = conn.execute(
        "SELECT last_update_id, received_at FROM book_snapshots WHERE exchange = %s AND symbol = %s "
        "AND last_update_id > %s ORDER BY last_update_id LIMIT 1",
        (exch, sym, target if healer is None else healer - 1),
    ).fetchone()
    if heal is not None:
        tail = (
            f"; the snapshot at update id {heal[0]} (received {heal[1].isoformat()}) heals it: ask for an update "
            f"id ≥ {heal[0]} or a later time"
        )
        healer = heal[0]
    else:
        tail = (
            "; no snapshot after it is stored yet: the book is unknown from there until the capture re-syncs"
        )
        healer = None
    return BookBreakError(head + tail, after_id=after, snapshot_id=healer)


# ---------------------------------------------------------------- book_top


def book_top(
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """One row per book update (applied diff) with event time in [start, end): update_id (the
    diff's last id), ts (its event time), bid_price, bid_qty, ask_price, ask_qty, spread
    (ask − bid) and mid ((bid + ask) / 2, one more decimal) — exact Decimal; null on an empty
    side. Diffs the stored book cannot be rebuilt through (a break until its healing snapshot)
    have no row: `book_gaps` says where. The book at `start` comes from the latest snapshot
    before it plus the diffs since."""
    import polars as pl

    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange)
        rb = load_book(c, span)
    if rb is None:
        return _empty_top(as_)
    frame = rb.top().drop("run")
    t0 = int((span.start - _EPOCH) / timedelta(microseconds=1))
    frame = frame.filter(pl.col("ts") >= pl.lit(t0).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return frame.to_pandas() if as_ == "pandas" else frame


def load_book(c: psycopg.Connection, span: BookSpan) -> Rebuilt | None:
    """The rows that rebuild the book through `span`: the latest snapshot before its first diff,
    the snapshots and diffs up to its last one, the crossed books recorded; None when the span
    holds no diff or no snapshot precedes any of them."""
    exch, sym = span.exchange, span.symbol
    cover_time(c, "book_diffs", exch, sym, span.start, span.end)
    ids = c.execute(
        "SELECT min(last_update_id), max(last_update_id) FROM book_diffs WHERE exchange = %s AND "
        "symbol = %s AND event_time >= %s AND event_time < %s",
        (exch, sym, span.start, span.end),
    ).fetchone()
    if ids is None or ids[0] is None:
        return None
    lo, hi = int(ids[0]), int(ids[1])
    cover_last(c, "book_snapshots", exch, sym, below=lo)
    s0 = _one(
        c,
        "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s AND "
        "last_update_id < %s",
        (exch, sym, lo),
    )
    cover_ids(c, "book_snapshots", exch, sym, s0, hi)
    snaps = _read_snapshots(c, exch, sym, s0, hi)
    if not snaps:
        return None
    s_first = snaps[0].update_id
    cover_ids(c, "book_diffs", exch, sym, s_first, hi)
    # archived days live in this session only: no reads on other connections (ADBC) then
    bulk = hi - s_first > 200_000 and not book_attached(c)
    diffs = _read_diffs(c, exch, sym, s_first, hi, span.end, inclusive=True, bulk=bulk)
    return Rebuilt(diffs, snaps, _crossed(c, exch, sym, s_first, hi))


def _empty_top(as_: AsType) -> Frame:
    import polars as pl

    d = pl.Decimal(38, 8)
    frame = pl.DataFrame(
        schema={
            "update_id": pl.Int64,
            "ts": pl.Datetime("us", "UTC"),
            "bid_price": d,
            "bid_qty": d,
            "ask_price": d,
            "ask_qty": d,
            "spread": d,
            "mid": pl.Decimal(38, 9),
        }
    )
    return frame.to_pandas() if as_ == "pandas" else frame


class Rebuilt:
    """Stored rows that rebuild a book (pure from here on): its runs, exact ticks, tops, levels."""

    def __init__(self, diffs: _Diffs, snaps: list[_Snap], crossed: list[int]) -> None:
        self.diffs, self.snaps, self.crossed = diffs, snaps, crossed
        f = diffs.frame
        self.futures = diffs.futures
        self.last = f["last_id"].to_numpy()
        self.runs = [
            r
            for r in plan_runs(
                f["first_id"].to_numpy(),
                self.last,
                f["prev_id"].to_numpy() if self.futures else None,
                [s.update_id for s in snaps],
                crossed,
                self.futures,
            )
            if r.diffs
        ]
        self.ticks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        fast = _fixed_scale_ticks(diffs.raw)
        snap_ps = scale_of(*[x.bids[0] for x in snaps], *[x.asks[0] for x in snaps])
        snap_qs = scale_of(*[x.bids[1] for x in snaps], *[x.asks[1] for x in snaps])
        if fast is not None:  # every diff level has the same number of decimals (Binance: 8)
            (ps, qs), ticks = fast
            self.price_scale, self.qty_scale = max(ps, snap_ps), max(qs, snap_qs)
            up_p, up_q = 10 ** (self.price_scale - ps), 10 ** (self.qty_scale - qs)
            self.ticks = {
                s: (d, p * up_p if up_p > 1 else p, q * up_q if up_q > 1 else q)
                for s, (d, p, q) in ticks.items()
            }
            return
        sides = ("bid", "ask")
        self.price_scale = max(snap_ps, scale_of(*[diffs.sides[s]["price"] for s in sides]))
        self.qty_scale = max(snap_qs, scale_of(*[diffs.sides[s]["qty"] for s in sides]))
        try:
            self.ticks = {
                s: (
                    diffs.sides[s]["d"].to_numpy(),
                    to_ticks(diffs.sides[s]["price"], self.price_scale),
                    to_ticks(diffs.sides[s]["qty"], self.qty_scale),
                )
                for s in sides
            }
        except ValueError:  # more than 18 digits: the exact Decimal replay (slow, rare)
            self.ticks = None

    def updates(self, r: Run, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every level update of run `r` on `side` in order: (k, price, qty) ticks, the
        snapshot's levels first with k = 0, then diff r.first + k's."""
        assert self.ticks is not None
        snap = self.snaps[r.snapshot]
        levels = snap.bids if side == "bid" else snap.asks
        d, p, q = self.ticks[side]
        a, b = np.searchsorted(d, r.first), np.searchsorted(d, r.last, side="right")
        sp, sq = to_ticks(levels[0], self.price_scale), to_ticks(levels[1], self.qty_scale)
        k = np.concatenate([np.zeros(len(sp), dtype=np.int64), d[a:b] - r.first])
        return k, np.concatenate([sp, p[a:b]]), np.concatenate([sq, q[a:b]])

    def top(self) -> Any:
        """The top after every diff the runs rebuild: the book_top frame plus `run` (its index)."""
        import polars as pl

        if self.ticks is None:
            return _top_decimal(self.diffs, self.snaps, self.runs)
        ps, qs = self.price_scale, self.qty_scale
        rows: list[np.ndarray] = []
        run_no: list[np.ndarray] = []
        best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"bid": [], "ask": []}
        from concurrent.futures import ThreadPoolExecutor

        def side_best(r: Run, side: str) -> tuple[np.ndarray, np.ndarray]:
            k, p, q = self.updates(r, side)
            return best_levels(k, p, q, r.diffs, highest=side == "bid")

        with ThreadPoolExecutor(2) as pool:  # numpy's sorts and ufuncs release the GIL: both sides at once
            for i, r in enumerate(self.runs):
                bid, ask = pool.submit(side_best, r, "bid"), pool.submit(side_best, r, "ask")
                best["bid"].append(bid.result())
                best["ask"].append(ask.result())
                rows.append(np.arange(r.first, r.last + 1))
                run_no.append(np.full(r.diffs, i, dtype=np.int64))
        if not rows:
            return _empty_top("polars").with_columns(pl.lit(0, dtype=pl.Int64).alias("run"))
        idx = np.concatenate(rows)
        bp = np.concatenate([x[0] for x in best["bid"]])
        bq = np.concatenate([x[1] for x in best["bid"]])
        ap = np.concatenate([x[0] for x in best["ask"]])
        aq = np.concatenate([x[1] for x in best["ask"]])
        hb, ha = bp != NONE, ap != NONE
        both = hb & ha
        event_us = self.diffs.frame["event_us"].to_numpy()[idx]
        return pl.DataFrame(
            [
                pl.Series("update_id", self.last[idx], dtype=pl.Int64),
                pl.Series("ts", event_us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                ticks_to_decimal("bid_price", np.where(hb, bp, 0), ps, hb),
                ticks_to_decimal("bid_qty", bq, qs, hb),
                ticks_to_decimal("ask_price", np.where(ha, ap, 0), ps, ha),
                ticks_to_decimal("ask_qty", aq, qs, ha),
                ticks_to_decimal("spread", np.where(both, ap - bp, 0), ps, both),
                ticks_to_decimal("mid", np.where(both, (ap + bp) * 5, 0), ps + 1, both),
                pl.Series("run", np.concatenate(run_no), dtype=pl.Int64),
            ]
        )


def _top_decimal(diffs: _Diffs, snaps: list[_Snap], runs: list[Run]) -> Any:
    """book_top's frame by applying each diff to an exact Decimal book (values beyond int64)."""
    import polars as pl

    from .frames import decimal_series

    f = diffs.frame
    per = {s: diffs.sides[s].group_by("d", maintain_order=True).agg("price", "qty") for s in ("bid", "ask")}
    lv = {s: {int(d): list(zip(p, q)) for d, p, q in per[s].iter_rows()} for s in per}
    out: list[tuple[Any, ...]] = []
    run_no: list[int] = []
    for no, r in enumerate(runs):
        snap = snaps[r.snapshot]
        book = OrderBook()
        book.load(zip(snap.bids[0], snap.bids[1]), zip(snap.asks[0], snap.asks[1]), snap.update_id)
        for i in range(r.first, r.last + 1):
            book.apply(lv["bid"].get(i, []), lv["ask"].get(i, []), int(f["last_id"][i]))
            b, a = book.best_bid(), book.best_ask()
            spread = mid = None
            if b and a:
                spread, mid = a[0] - b[0], (a[0] + b[0]) / 2
            out.append(
                (
                    int(f["last_id"][i]),
                    int(f["event_us"][i]),
                    b and b[0],
                    b and b[1],
                    a and a[0],
                    a and a[1],
                    spread,
                    mid,
                )
            )
            run_no.append(no)
    cols = list(zip(*out)) if out else [()] * 8

    def dec(name: str, vals: Any) -> Any:
        return decimal_series(name, [None if v is None else format(v, "f") for v in vals])

    return pl.DataFrame(
        [
            pl.Series("update_id", cols[0], dtype=pl.Int64),
            pl.Series("ts", cols[1], dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            *(dec(n, cols[i]) for i, n in enumerate(TOP_COLUMNS[2:], start=2)),
            pl.Series("run", run_no, dtype=pl.Int64),
        ]
    )


# ---------------------------------------------------------------- quotes and gaps


def quotes(
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The stored bookTicker rows with received time in [start, end) (default: the last hour of
    stored quotes), in update-id order: update_id, received_at, bid_price, bid_qty, ask_price,
    ask_qty (exact Decimal)."""
    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange, what="quotes")
        cover_time(c, "quotes", span.exchange, span.symbol, span.start, span.end)
        return run(c, _MODULE, "quotes", span.values(), as_, keep_scales=False)


def book_gaps(
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The recorded breaks of the stored book detected in [start, end) (default: all of them):
    reason ('gap', 'crossed', 'restart'), after_update_id (the last id the book was right at; for
    'crossed' the diff that crossed it), before_update_id, missing (ids never seen), detected_at,
    snapshot_update_id and healed_at (the snapshot that re-synced the book; null: not yet)."""
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    with connection(conn) as c, archived_book(c):
        exch, sym = resolve_book(c, symbol, exchange)
        values = {
            "exchange": exch,
            "symbol": sym,
            "start": t0 or datetime(1970, 1, 1, tzinfo=timezone.utc),
            "end": t1 or datetime(9999, 1, 1, tzinfo=timezone.utc),
        }
        return run(c, _MODULE, "book_gaps", values, as_, keep_scales=False)
