"""book_top read from the tops stored at ingest (book_tops) on a real PostgreSQL: the same rows as
the rebuild from the levels, used only where they cover a whole run, stored once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.analysis.book import _span
from cryptolab.analysis.book_rebuild import plan_book
from cryptolab.analysis.book_synth import synthetic_book
from cryptolab.analysis.book_tops import stored_top
from cryptolab.book import BookGap, BookSnapshot, BookTop, DepthDiff, OrderBook
from cryptolab.book.sync import with_tops
from cryptolab.storage.book import BookWriter

T0 = 1_723_161_255_000_000  # 2024-08-08 23:54:15 UTC: the book crosses midnight
EX, SYM = "binance", "BTCUSDT"


def _ts(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def _levels(book: OrderBook, side: str) -> list[tuple[str, str]]:
    return [(format(p, "f"), format(q, "f")) for p, q in book.levels(side)]


def _rows_with_a_loss() -> tuple[list[Any], dict[int, tuple[str, str, str, str]]]:
    """300 diffs as a capture meets them: diffs 80–84 never arrive, a snapshot taken at diff 100
    re-syncs the book. Returns the rows in arrival order and the true top after every diff."""
    rows = list(synthetic_book(EX, SYM, T0, T0 + 301 * 100_000, snapshot_levels=60, seed=3, quotes=False))
    snap = rows[0]
    assert isinstance(snap, BookSnapshot)
    diffs = [r for r in rows if isinstance(r, DepthDiff)]
    book = OrderBook()
    book.load(snap.bids, snap.asks, snap.last_update_id)
    truth: dict[int, tuple[str, str, str, str]] = {}
    healer = None
    for i, d in enumerate(diffs):
        book.apply(d.bids, d.asks, d.last_id)
        b, a = book.best_bid(), book.best_ask()
        assert b is not None and a is not None
        truth[d.last_id] = (format(b[0], "f"), format(b[1], "f"), format(a[0], "f"), format(a[1], "f"))
        if i == 100:
            healer = BookSnapshot(EX, SYM, d.last_id, _levels(book, "bid"), _levels(book, "ask"),
                                  d.event_time_us + 50_000)
    assert healer is not None
    arrived: list[Any] = [snap]
    for i, d in enumerate(diffs):
        if 80 <= i < 85:
            continue
        arrived.append(d)
        if i == 100:
            arrived.append(healer)
    return arrived, truth


def _store(conn: psycopg.Connection, rows: list[Any]) -> list[Any]:
    stored = list(with_tops(rows))
    BookWriter(conn).store(stored)
    conn.commit()
    return stored


def _top(conn: psycopg.Connection) -> Any:
    return an.book_top(SYM, _ts(T0), _ts(T0 + 400 * 100_000), conn=conn)


def _fast(conn: psycopg.Connection) -> Any:
    span = _span(conn, SYM, _ts(T0), _ts(T0 + 400 * 100_000), None)
    plan = plan_book(conn, span)
    assert plan is not None
    return stored_top(conn, plan)


def test_book_top_reads_the_stored_tops_and_gives_the_rebuilt_rows(conn: psycopg.Connection) -> None:
    rows, truth = _rows_with_a_loss()
    stored = _store(conn, rows)
    tops = [r for r in stored if isinstance(r, BookTop)]
    gaps = [r for r in stored if isinstance(r, BookGap)]
    # a top after every diff the synced book applied: none for the lost stretch or while waiting
    assert len(tops) == 295 - 16 and [g.reason for g in gaps] == ["gap", "gap"]  # seen, then healed
    assert _fast(conn) is not None  # the tops cover every run: book_top reads them
    from_tops = _top(conn)
    assert from_tops.height == len(tops)
    got = {r["update_id"]: (str(r["bid_price"]), str(r["bid_qty"]), str(r["ask_price"]), str(r["ask_qty"]))
           for r in from_tops.iter_rows(named=True)}
    assert got == {t.update_id: truth[t.update_id] for t in tops}
    conn.execute("TRUNCATE book_tops")
    conn.commit()
    assert _fast(conn) is None
    rebuilt = _top(conn)  # from the levels
    assert rebuilt.equals(from_tops) and rebuilt.schema == from_tops.schema


def test_a_run_missing_one_stored_top_is_rebuilt_from_its_levels_the_others_read(
    conn: psycopg.Connection,
) -> None:
    rows, _ = _rows_with_a_loss()
    _store(conn, rows)
    whole = _top(conn)
    one = int(whole["update_id"][200])
    conn.execute("DELETE FROM book_tops WHERE update_id = %s", (one,))
    conn.commit()
    fast = _fast(conn)  # the first run still reads its tops; the second is rebuilt from its levels
    assert fast is not None and fast.drop("run").equals(whole)
    assert _top(conn).equals(whole)
    conn.execute("TRUNCATE book_tops")
    conn.commit()
    assert _fast(conn) is None and _top(conn).equals(whole)


def test_tops_offered_twice_are_stored_once(conn: psycopg.Connection) -> None:
    rows, _ = _rows_with_a_loss()
    stored = _store(conn, rows)
    tops = [r for r in stored if isinstance(r, BookTop)]
    again = BookWriter(conn).store(tops[:50] + tops[100:120])  # below what is stored: the merge
    conn.commit()
    assert again.tops == 0
    assert conn.execute("SELECT count(*) FROM book_tops").fetchone() == (len(tops),)


@pytest.mark.parametrize("empty", ["bid", "ask"])
def test_an_empty_side_is_stored_as_null_and_read_as_null(conn: psycopg.Connection, empty: str) -> None:
    t = T0 + 1_000_000
    snap = BookSnapshot(EX, SYM, 10, [("100.00", "1.0")], [("101.00", "2.0")], t)
    clear = [("100.00", "0")] if empty == "bid" else [("101.00", "0")]
    diff = DepthDiff(EX, SYM, 11, 12, t + 100_000, clear if empty == "bid" else [],
                     [] if empty == "bid" else clear)
    _store(conn, [snap, diff])
    assert _fast(conn) is not None
    row = an.book_top(SYM, _ts(t), _ts(t + 1_000_000), conn=conn).row(0, named=True)
    assert (row[f"{empty}_price"], row[f"{empty}_qty"], row["spread"], row["mid"]) == (None, None, None, None)
