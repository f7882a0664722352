"""Reading the stored book on a real PostgreSQL: rebuilt at every update id, its top after every
update, quotes exactly, breaks named with the snapshot that heals them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.analysis.book import BookBreakError
from cryptolab.analysis.book_synth import synthetic_book
from cryptolab.book import BookGap, BookSnapshot, DepthDiff, OrderBook, Quote
from cryptolab.errors import DataError
from cryptolab.storage.book import BookWriter

T0 = 1_723_161_255_000_000  # 2024-08-08 23:54:15 UTC
EX, SYM = "binance", "BTCUSDT"


def _ts(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def _levels(book: OrderBook, side: str) -> list[tuple[str, str]]:
    return [(format(p, "f"), format(q, "f")) for p, q in book.levels(side)]


@dataclass
class Stored:
    diffs: list[DepthDiff]  # every diff the exchange published (some not stored)
    truth: dict[int, OrderBook]  # the book after each diff's last id (independent replay)
    quotes: list[Quote]
    lost: range  # indices of diffs never stored
    healer: BookSnapshot
    crossed_at: int  # index of the diff whose book came out crossed (recorded)
    crossed_healer: BookSnapshot


def _replay(rows: list[Any]) -> tuple[list[DepthDiff], dict[int, OrderBook], list[Quote], BookSnapshot]:
    snap = rows[0]
    assert isinstance(snap, BookSnapshot)
    diffs = [r for r in rows if isinstance(r, DepthDiff)]
    quotes = [r for r in rows if isinstance(r, Quote)]
    book = OrderBook()
    book.load(snap.bids, snap.asks, snap.last_update_id)
    truth: dict[int, OrderBook] = {}
    for d in diffs:
        book.apply(d.bids, d.asks, d.last_id)
        copy = OrderBook()
        copy.load(_levels(book, "bid"), _levels(book, "ask"), d.last_id)
        truth[d.last_id] = copy
    return diffs, truth, quotes, snap


def _snapshot_of(book: OrderBook, at_us: int) -> BookSnapshot:
    assert book.update_id is not None
    return BookSnapshot(EX, SYM, book.update_id, _levels(book, "bid"), _levels(book, "ask"), at_us)


@pytest.fixture
def stored(conn: psycopg.Connection) -> Stored:
    """200 diffs (+ quotes) of a synthetic BTCUSDT book in PostgreSQL; diffs 80–84 lost (a gap
    recorded, healed by a snapshot at diff 100); diff 150 recorded as crossing the book (healed
    by a snapshot at diff 160)."""
    rows = list(synthetic_book(EX, SYM, T0, T0 + 201 * 100_000, snapshot_levels=60, seed=7, source="live"))
    diffs, truth, quotes, snap = _replay(rows)
    assert len(diffs) == 200
    lost = range(80, 85)
    healer = _snapshot_of(truth[diffs[100].last_id], diffs[100].event_time_us + 50_000)
    crossed_healer = _snapshot_of(truth[diffs[160].last_id], diffs[160].event_time_us + 50_000)
    w = BookWriter(conn)
    keep = [d for i, d in enumerate(diffs) if i not in lost]
    w.store([snap, *keep, *quotes, healer, crossed_healer])
    w.store([BookGap(EX, SYM, "gap", diffs[79].last_id, diffs[85].first_id, diffs[85].event_time_us,
                     healer.last_update_id, healer.received_at_us),
             BookGap(EX, SYM, "crossed", diffs[150].last_id, None, diffs[150].event_time_us,
                     crossed_healer.last_update_id, crossed_healer.received_at_us)])
    conn.commit()
    return Stored(diffs, truth, quotes, lost, healer, 150, crossed_healer)


def _rebuildable(s: Stored, i: int) -> bool:
    return i < s.lost.start or 100 <= i < s.crossed_at or i >= 160


def test_the_book_rebuilt_at_every_update_id_equals_an_independent_replay(stored: Stored,
                                                                          conn: psycopg.Connection) -> None:
    checked = 0
    for i, d in enumerate(stored.diffs):
        if not _rebuildable(stored, i):
            continue
        got = an.book_at(SYM, d.last_id, depth=1000, conn=conn)
        want = stored.truth[d.last_id]
        for side in ("bid", "ask"):
            rows = got.filter(got["side"] == side)
            assert [(r["price"], r["qty"]) for r in rows.iter_rows(named=True)] == want.levels(side), (
                i,
                side,
            )
            assert rows["level"].to_list() == list(range(1, len(want.levels(side)) + 1))
        assert set(got["update_id"].to_list()) == {d.last_id}
        checked += 1
    assert checked == 200 - 5 - 15 - 10
    # an id inside a diff's range: the book as of the diff before; depth cuts each side
    mid_id = stored.diffs[10].first_id
    got = an.book_at(SYM, mid_id, depth=3, conn=conn)
    assert got.height == 6 and got["update_id"][0] == stored.diffs[9].last_id
    assert [r["price"] for r in got.filter(got["side"] == "bid").iter_rows(named=True)] == [
        p for p, _ in stored.truth[stored.diffs[9].last_id].levels("bid", 3)
    ]


def test_book_at_a_time_is_the_book_after_the_last_diff_at_or_before_it(
    stored: Stored, conn: psycopg.Connection
) -> None:
    d = stored.diffs[40]
    got = an.book_at(SYM, _ts(d.event_time_us + 99_000).isoformat(), depth=5, conn=conn)
    assert got["update_id"][0] == d.last_id
    assert [r["qty"] for r in got.filter(got["side"] == "ask").iter_rows(named=True)] == [
        q for _, q in stored.truth[d.last_id].levels("ask", 5)
    ]


def test_book_at_inside_a_gap_names_the_gap_and_the_healing_snapshot(
    stored: Stored, conn: psycopg.Connection
) -> None:
    inside = stored.diffs[90].last_id
    with pytest.raises(BookBreakError) as err:
        an.book_at(SYM, inside, conn=conn)
    text = str(err.value)
    assert f"update id {inside}" in text and f"after update id {stored.diffs[79].last_id}" in text
    assert "gap" in text and f"snapshot at update id {stored.healer.last_update_id}" in text
    assert err.value.snapshot_id == stored.healer.last_update_id
    assert isinstance(err.value, DataError)
    # at the healing snapshot and after it, the book is back
    for i in (100, 101, 120):
        got = an.book_at(SYM, stored.diffs[i].last_id, depth=1000, conn=conn)
        assert [
            (r["price"], r["qty"]) for r in got.filter(got["side"] == "bid").iter_rows(named=True)
        ] == stored.truth[stored.diffs[i].last_id].levels("bid")


def test_a_crossed_book_is_not_truth_until_the_next_snapshot(
    stored: Stored, conn: psycopg.Connection
) -> None:
    for i in (150, 155, 159):
        with pytest.raises(BookBreakError, match="crossed book") as err:
            an.book_at(SYM, stored.diffs[i].last_id, conn=conn)
        assert err.value.snapshot_id == stored.crossed_healer.last_update_id
    assert an.book_at(SYM, stored.diffs[149].last_id, conn=conn)["update_id"][0] == stored.diffs[149].last_id
    assert an.book_at(SYM, stored.diffs[160].last_id, conn=conn)["update_id"][0] == stored.diffs[160].last_id


def test_book_top_matches_the_replay_at_every_update(stored: Stored, conn: psycopg.Connection) -> None:
    top = an.book_top(SYM, _ts(T0), _ts(T0 + 10**9), conn=conn)
    assert list(top.columns) == [
        "update_id",
        "ts",
        "bid_price",
        "bid_qty",
        "ask_price",
        "ask_qty",
        "spread",
        "mid",
    ]
    want_ids = [
        d.last_id for i, d in enumerate(stored.diffs) if _rebuildable(stored, i) and i not in (100, 160)
    ]
    assert top["update_id"].to_list() == want_ids  # no row inside a break
    by_id = {d.last_id: d for d in stored.diffs}
    for r in top.iter_rows(named=True):
        book = stored.truth[r["update_id"]]
        bb, ba = book.best_bid(), book.best_ask()
        assert bb is not None and ba is not None
        assert (r["bid_price"], r["bid_qty"], r["ask_price"], r["ask_qty"]) == (*bb, *ba)
        assert r["spread"] == ba[0] - bb[0] and r["mid"] == (ba[0] + bb[0]) / 2
        assert r["ts"] == _ts(by_id[r["update_id"]].event_time_us)
    # a range starting mid-way: the book at its start is rebuilt from the snapshot before it
    part = an.book_top(
        SYM, _ts(stored.diffs[30].event_time_us), _ts(stored.diffs[40].event_time_us), conn=conn
    )
    assert part["update_id"].to_list() == [d.last_id for d in stored.diffs[30:40]]
    assert part.equals(top.filter(top["update_id"].is_in(part["update_id"].to_list())))


def test_book_top_agrees_with_the_quotes_at_every_shared_update_id(
    stored: Stored, conn: psycopg.Connection
) -> None:
    top = an.book_top(SYM, _ts(T0), _ts(T0 + 10**9), conn=conn)
    q = an.quotes(SYM, _ts(T0), _ts(T0 + 10**9), conn=conn)
    joined = top.join(q, on="update_id", suffix="_q")
    assert joined.height == top.height > 150
    for c in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
        assert (joined[c] == joined[f"{c}_q"]).all(), c


def test_quotes_round_trip_exactly(stored: Stored, conn: psycopg.Connection) -> None:
    got = an.quotes(SYM, _ts(T0), _ts(T0 + 10**9), conn=conn)
    assert list(got.columns) == ["update_id", "received_at", "bid_price", "bid_qty", "ask_price", "ask_qty"]
    assert got.height == len(stored.quotes)
    for r, q in zip(got.iter_rows(named=True), stored.quotes):
        assert r["update_id"] == q.update_id and r["received_at"] == _ts(q.received_at_us)
        assert [format(r[c], "f") for c in ("bid_price", "bid_qty", "ask_price", "ask_qty")] == [
            q.bid_price,
            q.bid_qty,
            q.ask_price,
            q.ask_qty,
        ]
    # defaults follow the data: the last hour of stored quotes, here all of them
    assert an.quotes(conn=conn).height == len(stored.quotes)


def test_book_gaps_lists_the_recorded_breaks(stored: Stored, conn: psycopg.Connection) -> None:
    g = an.book_gaps(SYM, conn=conn)
    assert g["reason"].to_list() == ["gap", "crossed"]
    assert g["after_update_id"].to_list() == [stored.diffs[79].last_id, stored.diffs[150].last_id]
    assert g["missing"][0] == stored.diffs[85].first_id - stored.diffs[79].last_id - 1
    assert g["snapshot_update_id"].to_list() == [
        stored.healer.last_update_id,
        stored.crossed_healer.last_update_id,
    ]


def test_a_symbol_without_depth_data_is_a_clear_error(stored: Stored, conn: psycopg.Connection) -> None:
    for call in (
        lambda: an.book_at("ETHUSDT", conn=conn),
        lambda: an.book_top("ETHUSDT", conn=conn),
        lambda: an.quotes("ETHUSDT", conn=conn),
        lambda: an.book_gaps("ETHUSDT", conn=conn),
    ):
        with pytest.raises(
            DataError, match="no (depth data|quotes).*stored for ETHUSDT.*BTCUSDT on binance.*capture"
        ):
            call()


def test_an_empty_database_says_nothing_is_stored(conn: psycopg.Connection) -> None:
    with pytest.raises(DataError, match=r"stored: none.*--streams trade,depth,bookTicker"):
        an.book_top(conn=conn)


def test_a_futures_book_follows_the_previous_update_id_chain(conn: psycopg.Connection) -> None:
    def diff(
        first: int, last: int, prev: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]], t: int
    ) -> DepthDiff:
        return DepthDiff("binance", "BTCUSDT", first, last, T0 + t, bids, asks, T0 + t, prev)

    snap = BookSnapshot("binance", "BTCUSDT", 100, [("10.0", "1"), ("9.9", "2")], [("10.2", "3")], T0)
    rows: list[Any] = [
        snap,
        diff(95, 102, 94, [("10.1", "5")], [], 10),  # straddles: U ≤ 100 ≤ u
        diff(103, 107, 102, [("10.1", "0")], [("10.15", "1.5")], 20),
        diff(110, 112, 108, [("10.05", "1")], [], 30),  # pu 108 ≠ 107: a break
        diff(113, 115, 112, [], [("10.15", "0")], 40),
    ]
    BookWriter(conn).store(rows)
    conn.commit()
    top = an.book_top("BTCUSDT", _ts(T0), _ts(T0 + 1000), conn=conn)
    assert top["update_id"].to_list() == [102, 107]
    assert top["bid_price"].to_list() == [Decimal("10.1"), Decimal("10.0")]
    assert top["ask_price"].to_list() == [Decimal("10.2"), Decimal("10.15")]
    assert an.book_at("BTCUSDT", 107, conn=conn)["price"].to_list() == [
        Decimal("10.0"),
        Decimal("9.9"),
        Decimal("10.15"),
        Decimal("10.2"),
    ]
    with pytest.raises(BookBreakError, match="break after update id 107.*starts at 110.*no snapshot"):
        an.book_at("BTCUSDT", 112, conn=conn)


def test_values_beyond_eighteen_digits_take_the_exact_decimal_path(conn: psycopg.Connection) -> None:
    big = "123456789012.123456789"  # 21 digits: no int64 tick holds it
    snap = BookSnapshot(EX, SYM, 10, [("100.5", big), ("100.4", "1")], [("100.7", "2")], T0)
    rows: list[Any] = [
        snap,
        DepthDiff(EX, SYM, 11, 11, T0 + 10, [("100.6", "0.000000000000000001")], [], T0 + 10),
        DepthDiff(EX, SYM, 12, 13, T0 + 20, [("100.6", "0")], [("100.7", big)], T0 + 20),
    ]
    BookWriter(conn).store(rows)
    conn.commit()
    top = an.book_top(SYM, _ts(T0), _ts(T0 + 100), conn=conn)
    assert top["bid_price"].to_list() == [Decimal("100.6"), Decimal("100.5")]
    assert top["bid_qty"].to_list() == [Decimal("0.000000000000000001"), Decimal(big)]
    assert top["ask_qty"][1] == Decimal(big) and top["mid"].to_list() == [Decimal("100.65"), Decimal("100.6")]
    got = an.book_at(SYM, 13, conn=conn)
    assert [(r["side"], r["price"], r["qty"]) for r in got.iter_rows(named=True)] == [
        ("bid", Decimal("100.5"), Decimal(big)),
        ("bid", Decimal("100.4"), 1),
        ("ask", Decimal("100.7"), Decimal(big)),
    ]


def test_bad_book_arguments_are_refused(stored: Stored, conn: psycopg.Connection) -> None:
    for at, why in ((True, "update id"), (-5, "negative"), ("yesterday", "not a time")):
        with pytest.raises(DataError, match=why):
            an.book_at(SYM, at, conn=conn)
    with pytest.raises(DataError, match="depth"):
        an.book_at(SYM, None, 0, conn=conn)
    with pytest.raises(DataError, match="after end"):
        an.book_top(SYM, _ts(T0 + 10**9), _ts(T0), conn=conn)
    with pytest.raises(BookBreakError, match="first stored snapshot is at update id"):
        an.book_at(SYM, 5, conn=conn)


def test_book_markets_lists_what_is_stored(stored: Stored, conn: psycopg.Connection) -> None:
    assert an.book_markets(conn=conn).select("exchange", "symbol").rows() == [(EX, SYM)]
    assert an.book_markets(what="quotes", conn=conn)["last"][0] == _ts(stored.quotes[-1].received_at_us)
