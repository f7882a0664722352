"""The book writer on a real PostgreSQL: exact arrays, once per diff and quote, gaps seen then healed."""

from __future__ import annotations

from decimal import Decimal

import psycopg

from cryptolab.book import BookGap, BookSnapshot, DepthDiff, Quote
from cryptolab.storage.book import BookWriter
from cryptolab.storage.writer import TradeWriter

T0 = 1_723_161_255_208_000  # 2024-08-08 23:54 UTC
DAY = 86_400_000_000


def _diff(u: int, t: int = T0, symbol: str = "BTCUSDT", src: str = "live") -> DepthDiff:
    return DepthDiff(
        "binance",
        symbol,
        u - 2,
        u,
        t + u,
        [("61737.63000000", "0.00000000"), ("61700.1", "2.5")],
        [("61837.64000000", "1.54698000")],
        t + u + 5,
        None,
        src,
    )


def _quote(u: int, received: int) -> Quote:
    return Quote(
        "binance", "BTCUSDT", u, "61837.63000000", "3.78826000", "61837.64000000", "1.54698000", received
    )


def test_diffs_are_stored_exactly_once_across_the_append_and_the_merge(conn: psycopg.Connection) -> None:
    w = BookWriter(conn)
    r = w.store([_diff(10), _diff(20), _diff(30, t=T0 + DAY)])  # crosses midnight: two partitions
    assert (r.diffs, r.appended, r.merged, r.level_updates) == (3, 1, 0, 9)
    r = w.store([_diff(20), _diff(40), _diff(40)])  # an overlap and a repeat: the merge
    assert (r.diffs, r.merged) == (1, 1)
    fresh = BookWriter(conn)  # another writer knows nothing: it learns what is stored
    assert fresh.store([_diff(30, t=T0 + DAY, src="replay")]).diffs == 0
    rows = conn.execute(
        "SELECT last_update_id, bid_price, bid_qty, ask_price, ask_qty FROM book_diffs "
        "ORDER BY last_update_id"
    ).fetchall()
    assert [r[0] for r in rows] == [10, 20, 30, 40]
    assert rows[0][1] == [Decimal("61737.63000000"), Decimal("61700.1")]
    zero = rows[0][2][0]
    assert zero == 0 and zero.as_tuple().exponent == -8  # "0.00000000": exact, scale kept
    assert rows[0][3] == [Decimal("61837.64000000")] and rows[0][4] == [Decimal("1.54698000")]
    parts = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'book_diffs'::regclass"
    ).fetchone()
    assert parts is not None and parts[0] == 2


def test_a_quote_offered_twice_is_stored_once_even_when_received_twice(conn: psycopg.Connection) -> None:
    w = BookWriter(conn)
    assert w.store([_quote(1, T0), _quote(2, T0 + 1)]).quotes == 2
    # the same update id seen again on a second connection (another received time), and a new one
    r = w.store([_quote(2, T0 + 900_000), _quote(3, T0 + 900_001)])
    assert (r.quotes, r.quotes_offered) == (1, 2)
    got = conn.execute("SELECT update_id, bid_price, ask_qty FROM quotes ORDER BY update_id").fetchall()
    assert got == [
        (1, Decimal("61837.63000000"), Decimal("1.54698000")),
        (2, Decimal("61837.63000000"), Decimal("1.54698000")),
        (3, Decimal("61837.63000000"), Decimal("1.54698000")),
    ]


def test_snapshots_and_gaps_seen_then_healed(conn: psycopg.Connection) -> None:
    w = BookWriter(conn)
    snap = BookSnapshot("binance", "BTCUSDT", 5, [("100.10", "1"), ("100.00", "2")], [("100.20", "3")], T0)
    gap = BookGap("binance", "BTCUSDT", "gap", 6, 9, T0 + 10)
    w.store([snap, snap, gap])
    w.store([gap._replace(snapshot_id=12, healed_at_us=T0 + 20, detected_at_us=T0 + 15)])
    assert conn.execute("SELECT count(*), min(bid_price[1]) FROM book_snapshots").fetchone() == (
        1,
        Decimal("100.10"),
    )
    row = conn.execute(
        "SELECT reason, after_update_id, before_update_id, missing, snapshot_update_id, "
        "healed_at IS NOT NULL FROM book_gaps"
    ).fetchall()
    assert row == [("gap", 6, 9, 2, 12, True)]


def test_trades_and_book_rows_share_one_transaction(conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    res = w.write([], [], [_diff(7), _quote(7, T0)])
    assert res.book is not None and (res.book.diffs, res.book.quotes) == (1, 1)
    assert conn.execute(
        "SELECT (SELECT count(*) FROM book_diffs), (SELECT count(*) FROM quotes)"
    ).fetchone() == (1, 1)


def test_the_writer_commits_on_a_connection_not_in_autocommit(dsn: str) -> None:
    with psycopg.connect(dsn) as c, psycopg.connect(dsn, autocommit=True) as other:
        BookWriter(c).store([_diff(3), _quote(3, T0)])  # autocommit off, as the capture's connection may be
        seen = other.execute(
            "SELECT (SELECT count(*) FROM book_diffs), (SELECT count(*) FROM quotes)"
        ).fetchone()
        assert seen == (1, 1)  # committed by store() itself, not left in an open transaction
