"""Reading the stored order book: the book at an update id or a time, the top after every
update, the stored quotes and the recorded gaps (docs/book_analysis.md).

The book is rebuilt from `book_snapshots` and `book_diffs` alone (`book_rebuild`; the decisions
and the vectorised arithmetic are in `book_replay`, pure; the row reads in `book_rows`), or its
top read from `book_tops` where the capture stored it. Arguments follow `cryptolab.analysis`:
`symbol`/`exchange` None take them from the stored book data (the symbol with the newest
snapshot; real `binance` first), times are datetimes or ISO strings (UTC), `[start, end)`
defaults to the last hour of stored diffs, `conn` reuses a connection, `as_` picks polars or
pandas. Prices and quantities are exact `pl.Decimal` columns. A symbol without depth data is a
`DataError` saying what is stored; a book asked for inside a break is a `BookBreakError`
naming the gap and the snapshot that heals it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import psycopg

from ..book.state import OrderBook
from ..errors import DatabaseError, DataError, first_line
from ..model import DEFAULT_EXCHANGE
from .args import AsType, Frame, TimeLike, _normalize_exchange, as_frame, normalize_symbol, parse_time
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
from .book_rebuild import empty_top, plan_book, rebuild
from .book_replay import Run, final_levels, plan_runs, scale_of, ticks_to_decimal, to_ticks
from .book_rows import BookSpan, StoredDiffs, crossed_after, read_diffs, read_snapshots, scalar
from .book_tops import stored_top
from .execute import run
from .scope import connection

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "book_at",
    "book_top",
    "quotes",
    "book_gaps",
    "book_markets",
    "BookBreakError",
    "BookSpan",
    "resolve_book",
]


_MODULE = "book"


_DEFAULT = timedelta(hours=1)


class BookBreakError(DataError):
    """The book cannot be rebuilt at the asked point: it lies in a break of the stored diffs."""

    def __init__(self, message: str, *, after_id: int | None, snapshot_id: int | None) -> None:
        super().__init__(message)
        self.after_id = after_id
        self.snapshot_id = snapshot_id
        """The update id of the snapshot that heals the break (None: none stored yet)."""


@overload
def book_markets(*, what: str = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def book_markets(*, what: str = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["pandas"]) -> pd.DataFrame: ...


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
            f"could not read the stored book markets: {first_line(exc)}"
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
            last = scalar(conn, q.format("DESC"), (exch, sym))
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
                first = scalar(conn, q.format("ASC"), (exch, sym))
                if first is not None and t0 < first < t1:
                    t0 = first
    if t0 > t1:
        raise DataError(f"start {t0.isoformat()} is after end {t1.isoformat()}: swap them or widen the range")
    return BookSpan(exch, sym, t0, t1)


@overload
def book_at(symbol: str | None = ..., at: TimeLike | None = ..., depth: int = ..., *,
            exchange: str | None = ..., conn: psycopg.Connection | None = ...,
            as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def book_at(symbol: str | None = ..., at: TimeLike | None = ..., depth: int = ..., *,
            exchange: str | None = ..., conn: psycopg.Connection | None = ...,
            as_: Literal["pandas"]) -> pd.DataFrame: ...


def book_at(
    symbol: str | None = None,
    at: TimeLike | None = None,
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
        snap_id = scalar(
            c,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s "
            "AND last_update_id <= %s",
            (exch, sym, target),
        )
        if snap_id is None:
            cover_first(c, "book_snapshots", exch, sym)
            first = scalar(
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
        snaps = read_snapshots(c, exch, sym, snap_id, snap_id)
        diffs = read_diffs(c, exch, sym, snap_id, target, None, inclusive=True)
        futures = diffs.futures
        if not futures and diffs.frame.height and diffs.frame["last_id"][0] == snap_id:
            diffs = _drop_first(diffs)  # spot: a diff ending at the snapshot's id is in it already
        crossed = crossed_after(c, exch, sym, snap_id, target)
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
    return as_frame(frame, as_)


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


def _drop_first(diffs: StoredDiffs) -> StoredDiffs:
    import polars as pl

    sides = {s: v.filter(pl.col("d") > 0).with_columns(pl.col("d") - 1) for s, v in diffs.sides.items()}
    return StoredDiffs(diffs.frame.slice(1), diffs.raw.slice(1), sides)


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
        got = scalar(
            conn,
            "SELECT last_update_id FROM book_diffs WHERE exchange = %s AND symbol = %s "
            "ORDER BY last_update_id DESC LIMIT 1",
            (exch, sym),
        )
        snap = scalar(
            conn,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s",
            (exch, sym),
        )
        return int(max(x for x in (got, snap) if x is not None))
    cover_last(conn, "book_diffs", exch, sym, at_or_before=t)
    got = scalar(
        conn,
        "SELECT max(last_update_id) FROM book_diffs WHERE exchange = %s AND symbol = %s AND event_time <= %s",
        (exch, sym, t),
    )
    if got is None:
        cover_last(conn, "book_snapshots", exch, sym, at_or_before=t)
        got = scalar(
            conn,
            "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s "
            "AND received_at <= %s",
            (exch, sym, t),
        )
    if got is None:
        cover_edge_time(conn, "book_snapshots", exch, sym, newest=False)
        first = scalar(
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
        "SELECT reason, after_update_id, before_update_id, missing, detected_at, snapshot_update_id "
        "FROM book_gaps WHERE exchange = %s AND symbol = %s AND after_update_id <= %s "
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
            f"{sym}'s book on {exch} cannot be rebuilt at update id {target}: it lies in {what} "
            f"after update id {after}{'' if before is None else f' (next seen {before}'}{lost}"
            f"{'' if before is None else ')'}, detected {detected.isoformat()}"
        )
    else:
        after = reached
        nxt = int(f["first_id"][r.last + 1]) if r is not None and r.last + 1 < f.height else None
        head = (
            f"{sym}'s book on {exch} cannot be rebuilt at update id {target}: the stored diffs break "
            f"after update id {reached}{'' if nxt is None else f' (the next stored diff starts at {nxt})'}"
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
            f"; the snapshot at update id {heal[0]} (received {heal[1].isoformat()}) heals it: ask for an "
            f"update id ≥ {heal[0]} or a later time"
        )
        healer = heal[0]
    else:
        tail = (
            "; no snapshot after it is stored yet: the book is unknown from there until the capture re-syncs"
        )
        healer = None
    return BookBreakError(head + tail, after_id=after, snapshot_id=healer)


@overload
def book_top(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
             exchange: str | None = ..., conn: psycopg.Connection | None = ...,
             as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def book_top(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
             exchange: str | None = ..., conn: psycopg.Connection | None = ...,
             as_: Literal["pandas"]) -> pd.DataFrame: ...


def book_top(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
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
    before it plus the diffs since. Read from the tops the capture stored (`book_tops`) where
    they cover the whole rebuild, else rebuilt from the levels: the same rows either way."""
    import polars as pl

    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange)
        plan = plan_book(c, span)
        if plan is None:
            return empty_top(as_)
        frame = stored_top(c, plan)
        if frame is None:
            frame = rebuild(c, plan).top()
    frame = frame.drop("run")
    t0 = int((span.start - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
    frame = frame.filter(pl.col("ts") >= pl.lit(t0).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return as_frame(frame, as_)


@overload
def quotes(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
           exchange: str | None = ..., conn: psycopg.Connection | None = ...,
           as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def quotes(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
           exchange: str | None = ..., conn: psycopg.Connection | None = ...,
           as_: Literal["pandas"]) -> pd.DataFrame: ...


def quotes(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
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


@overload
def book_gaps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def book_gaps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
              exchange: str | None = ..., conn: psycopg.Connection | None = ...,
              as_: Literal["pandas"]) -> pd.DataFrame: ...


def book_gaps(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
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
