"""Which dropped book days a reader loads: only from the days' recorded first/last ids (pure)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from cryptolab.analysis.book_archive import DayPick
from cryptolab.storage.parquet.book import BookRecord


def day(d: int, first: int | None, last: int | None, rows: int = 10) -> BookRecord:
    return BookRecord("book_snapshots", "binance", "BTCUSDT", date(2024, 8, d), "/a", "p", rows, first, last,
                      Decimal(0), 1, "x", 1, True)


D8, D9, D10 = day(8, 100, 199), day(9, 200, 299), day(10, 300, 399)
PICK = DayPick([D8, D9, day(11, None, None, rows=0), D10])


def at(d: int, h: int) -> datetime:
    return datetime(2024, 8, d, h, tzinfo=timezone.utc)


def test_the_latest_id_below_a_bound_is_looked_for_only_in_the_days_that_can_hold_it() -> None:
    assert PICK.last_below(250, None) == [D9]  # day 9 holds 200 < 250: no earlier day can beat it
    assert PICK.last_below(300, None) == [D9]
    assert PICK.last_below(150, None) == [D8]
    assert PICK.last_below(None, None) == [D10]
    assert PICK.last_below(1000, 450) == []  # the database holds a later one
    assert PICK.last_below(100, None) == []


def test_the_first_id_above_a_bound_is_looked_for_only_in_the_days_that_can_hold_it() -> None:
    assert PICK.first_above(250, None) == [D9]
    assert PICK.first_above(None, 150) == [D8]
    assert PICK.first_above(None, 50) == []  # the database holds an earlier one
    assert PICK.first_above(399, None) == []


def test_days_are_chosen_by_ids_by_time_and_at_the_edges() -> None:
    assert PICK.ids(250, 320) == [D9, D10] and PICK.ids(None, 150) == [D8] and PICK.ids(400, None) == []
    assert PICK.time(at(9, 12), at(10, 0)) == [D9] and PICK.time(None, None) == [D8, D9, D10]
    # a time inside day 9: day 9 may hold no row before it, so day 8's last id stays a candidate
    assert PICK.last_at_or_before(at(9, 12), None) == [D8, D9]
    assert PICK.last_at_or_before(at(9, 12), 250) == [D9]
    assert PICK.last_at_or_before(at(7, 12), None) == []
    assert PICK.edge_time(True, None) == [D10] and PICK.edge_time(True, at(10, 18)) == [D10]
    assert PICK.edge_time(True, at(11, 1)) == [] and PICK.edge_time(False, at(8, 5)) == [D8]
    assert PICK.edge_time(False, at(7, 5)) == []
