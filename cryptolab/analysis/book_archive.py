"""Which archived book days a reader needs, so that it answers the same before and after
`cryptolab archive --drop` (docs/archive.md, "Book days").

The book readers ask PostgreSQL step by step (the diffs of a time range, then the latest snapshot
below their first id, then the snapshots and diffs between): before each step they name what it
reads — a time range, an id range, "the latest id below / at or before", "the first id above" —
and the dropped days that may hold such rows are loaded behind the session's views
(`storage.parquet.book_session`). The choice uses only `archive_book_days` (each day's first and
last update id) and the database's own table, so it is exact without reading a file it does not
need: for "the latest id below X" every dropped day whose ids reach at least the best id already
known (from the database, or from a day lying wholly below X) is loaded, and no other day can
hold a larger one. `archived_book(conn)` detaches at the end when it attached (nested readers
share one attachment); `DayPick` holds the pure choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from ..errors import DatabaseError, first_line
from ..storage.parquet.book import KINDS, BookRecord
from ..storage.parquet.book_read import dropped_book_days
from ..storage.parquet.book_session import (
    attach_book_days,
    book_attached,
    book_base_table,
    detach_book,
    newest_archived_time,
)

__all__ = [
    "archived_book",
    "DayPick",
    "cover_time",
    "cover_ids",
    "cover_last",
    "cover_first",
    "cover_edge_time",
    "first_archived_before",
    "archived_markets",
]


def _day_start(rec: BookRecord) -> datetime:
    return datetime(rec.day.year, rec.day.month, rec.day.day, tzinfo=timezone.utc)


def _max(*xs: Any) -> Any:
    got = [x for x in xs if x is not None]
    return max(got) if got else None


def _min(*xs: Any) -> Any:
    got = [x for x in xs if x is not None]
    return min(got) if got else None


@dataclass(frozen=True)
class DayPick:
    """The pure choices: which of the dropped days `days` (of one kind and market) may hold the rows
    asked for."""

    days: Sequence[BookRecord]

    def _full(self) -> list[BookRecord]:
        return [d for d in self.days if d.rows and d.first_id is not None and d.last_id is not None]

    def time(self, t0: datetime | None, t1: datetime | None) -> list[BookRecord]:
        """Days overlapping [t0, t1) on the table's day column (None: unbounded)."""
        return [
            d
            for d in self._full()
            if (t1 is None or _day_start(d) < t1) and (t0 is None or _day_start(d) + timedelta(days=1) > t0)
        ]

    def ids(self, lo: int | None, hi: int | None) -> list[BookRecord]:
        """Days whose ids meet [lo, hi] (None: unbounded)."""
        return [
            d
            for d in self._full()
            if (hi is None or d.first_id <= hi) and (lo is None or d.last_id >= lo)  # type: ignore[operator]
        ]

    def last_below(self, below: int | None, known: int | None) -> list[BookRecord]:
        """Days that may hold max(id) over ids < below, `known` being the database's answer."""
        cand = [d for d in self._full() if below is None or d.first_id < below]  # type: ignore[operator]
        floor = _max(
            known,
            *(
                d.last_id if below is None or d.last_id < below else d.first_id  # type: ignore[operator]
                for d in cand
            ),
        )
        return [d for d in cand if floor is None or d.last_id >= floor]

    def last_at_or_before(self, t: datetime, known: int | None) -> list[BookRecord]:
        """Days that may hold max(id) over rows with day-column time ≤ t."""
        cand = [d for d in self._full() if _day_start(d) <= t]
        floor = _max(known, *(d.last_id for d in cand if _day_start(d) + timedelta(days=1) <= t))
        return [d for d in cand if floor is None or d.last_id >= floor]

    def first_above(self, above: int | None, known: int | None) -> list[BookRecord]:
        """Days that may hold min(id) over ids > above."""
        cand = [d for d in self._full() if above is None or d.last_id > above]  # type: ignore[operator]
        ceil = _min(
            known,
            *(
                d.first_id if above is None or d.first_id > above else d.last_id  # type: ignore[operator]
                for d in cand
            ),
        )
        return [d for d in cand if ceil is None or d.first_id <= ceil]

    def edge_time(self, newest: bool, known: datetime | None) -> list[BookRecord]:
        """The one day that may hold the newest (oldest) day-column time beyond the database's `known`."""
        full = sorted(self._full(), key=lambda d: d.day)
        if not full:
            return []
        d = full[-1] if newest else full[0]
        if known is None:
            return [d]
        inside = _day_start(d) + timedelta(days=1) > known if newest else _day_start(d) <= known
        return [d] if inside else []


@contextmanager
def archived_book(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Around a reader: the archived days it loads are dropped again at the end (when it loaded the first)."""
    was = book_attached(conn)
    try:
        yield conn
    finally:
        if not was:
            detach_book(conn)


def _days(c: psycopg.Connection, kind: str, exch: str, sym: str) -> DayPick:
    return DayPick(dropped_book_days(c, kind, exch, sym))


def _db(c: psycopg.Connection, kind: str, q: str, args: tuple[Any, ...]) -> Any:
    """One value from the database's own table `kind` (`{t}` in q)."""
    try:
        row = c.execute(q.format(t=book_base_table(c, kind)), args).fetchone()
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read {kind}: {first_line(exc)}") from None
    return None if row is None else row[0]


def cover_time(
    c: psycopg.Connection, kind: str, exch: str, sym: str, t0: datetime | None, t1: datetime | None
) -> None:
    """Rows of [t0, t1) on the day column."""
    attach_book_days(c, _days(c, kind, exch, sym).time(t0, t1))


def cover_ids(c: psycopg.Connection, kind: str, exch: str, sym: str, lo: int | None, hi: int | None) -> None:
    """Rows with ids in [lo, hi]."""
    attach_book_days(c, _days(c, kind, exch, sym).ids(lo, hi))


def cover_last(
    c: psycopg.Connection,
    kind: str,
    exch: str,
    sym: str,
    *,
    below: int | None = None,
    at_or_before: datetime | None = None,
) -> None:
    """max(id) over ids < below (or rows with day-column time ≤ at_or_before; neither: all rows)."""
    pick = _days(c, kind, exch, sym)
    if not pick.days:
        return
    k = KINDS[kind]
    if at_or_before is not None:
        known = _db(
            c,
            kind,
            f"SELECT max({k.id_column}) FROM {{t}} WHERE exchange = %s AND symbol = %s "
            f"AND {k.day_column} <= %s",
            (exch, sym, at_or_before),
        )
        attach_book_days(c, pick.last_at_or_before(at_or_before, known))
        return
    known = _db(
        c,
        kind,
        f"SELECT max({k.id_column}) FROM {{t}} WHERE exchange = %s AND symbol = %s AND {k.id_column} < %s",
        (exch, sym, 2**63 - 1 if below is None else below),
    )
    attach_book_days(c, pick.last_below(below, known))


def cover_first(c: psycopg.Connection, kind: str, exch: str, sym: str, *, above: int | None = None) -> None:
    """min(id) over ids > above (None: all rows)."""
    pick = _days(c, kind, exch, sym)
    if not pick.days:
        return
    k = KINDS[kind]
    known = _db(
        c,
        kind,
        f"SELECT min({k.id_column}) FROM {{t}} WHERE exchange = %s AND symbol = %s AND {k.id_column} > %s",
        (exch, sym, -(2**63) if above is None else above),
    )
    attach_book_days(c, pick.first_above(above, known))


def first_archived_before(c: psycopg.Connection, kind: str, exch: str, sym: str, t: datetime) -> bool:
    """True when the row with the smallest id lies in a dropped day that ends by `t` (so its time
    is before t); else the days that may hold it are loaded (as `cover_first`) and False."""
    pick = _days(c, kind, exch, sym)
    if not pick.days:
        return False
    k = KINDS[kind]
    known = _db(
        c, kind, f"SELECT min({k.id_column}) FROM {{t}} WHERE exchange = %s AND symbol = %s", (exch, sym)
    )
    days = pick.first_above(None, known)
    if days and all(_day_start(d) + timedelta(days=1) <= t for d in days):
        return True
    attach_book_days(c, days)
    return False


def cover_edge_time(c: psycopg.Connection, kind: str, exch: str, sym: str, *, newest: bool) -> None:
    """The newest (oldest) day-column time of all rows."""
    pick = _days(c, kind, exch, sym)
    if not pick.days:
        return
    col = KINDS[kind].day_column
    known = _db(
        c,
        kind,
        f"SELECT {'max' if newest else 'min'}({col}) FROM {{t}} WHERE exchange = %s AND symbol = %s",
        (exch, sym),
    )
    attach_book_days(c, pick.edge_time(newest, known))


def archived_markets(
    c: psycopg.Connection, kind: str, stored: list[tuple[str, str, Any]]
) -> list[tuple[str, str, Any]]:
    """`stored` (exchange, symbol, newest day-column time in the database) with the markets that have
    dropped days of `kind`, the newest time taken from the newest dropped day's file when it is later."""
    try:
        row = c.execute("SELECT to_regclass('archive_book_days') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return stored
        markets = c.execute(
            "SELECT DISTINCT exchange, symbol FROM archive_book_days WHERE kind = %s "
            "AND dropped_at IS NOT NULL AND rows > 0",
            (kind,),
        ).fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read archive_book_days: {first_line(exc)}") from None
    out = {(e, s): t for e, s, t in stored}
    for exch, sym in markets:
        known = out.get((exch, sym))
        for rec in _days(c, kind, exch, sym).edge_time(True, known):
            got = newest_archived_time(rec)
            out[(exch, sym)] = _max(known, got)
    return [(e, s, t) for (e, s), t in out.items()]
