"""The book's one-call append (`cryptolab_append_book`, sql/schema/append_book.sql) against a real
PostgreSQL: the same rows as the statement-by-statement path, a commit of trades, book rows and
riders' statements in one round trip, and the merge whenever a batch meets stored ids."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg

from cryptolab.book import BookGap, BookSnapshot, BookTop, DepthDiff
from cryptolab.book.model import BookRow
from cryptolab.storage import embedded
from cryptolab.storage.book import APPEND_BOOK_FUNCTION, BookWriter, book_arrays
from cryptolab.storage.db import SQL_DIR
from cryptolab.storage.writer import TradeWriter
from tests.storage.test_book import T0, _diff, _quote
from tests.storage.test_writer import trade

BOOK_SQL = Path(SQL_DIR) / "schema" / "append_book.sql"
DAY = 86_400_000_000
_DROP = f"DROP FUNCTION IF EXISTS {APPEND_BOOK_FUNCTION}"
_DUMP = {
    "book_diffs": "SELECT t::text FROM book_diffs t ORDER BY symbol, last_update_id, event_time",
    "quotes": "SELECT t::text FROM quotes t ORDER BY symbol, update_id, received_at",
    "book_tops": "SELECT t::text FROM book_tops t ORDER BY symbol, update_id, event_time",
    "book_snapshots": "SELECT t::text FROM book_snapshots t ORDER BY symbol, last_update_id",
    "book_gaps": "SELECT (exchange, symbol, reason, after_update_id, before_update_id, detected_at,"
    " snapshot_update_id, healed_at)::text FROM book_gaps ORDER BY after_update_id",
}


def _top(u: int, t: int = T0, bid: str | None = "61837.63", ask: str | None = "61837.64") -> BookTop:
    return BookTop(
        "binance",
        "BTCUSDT",
        u,
        t + u,
        bid,
        None if bid is None else "0.5",
        ask,
        None if ask is None else "1.25",
    )


def _mixed(lo: int, n: int, t: int = T0) -> list[BookRow]:
    """n diffs, quotes and tops from update id lo on (every third diff with an empty side)."""
    rows: list[BookRow] = []
    for u in range(lo, lo + n):
        d = _diff(u, t)
        rows += [d._replace(asks=[]) if u % 3 == 0 else d, _quote(u, t + u), _top(u, t)]
    return rows


def _dump(conn: psycopg.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {name: conn.execute(q).fetchall() for name, q in _DUMP.items()}


def _counts(conn: psycopg.Connection) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT (SELECT count(*) FROM book_diffs), (SELECT count(*) FROM quotes),"
        " (SELECT count(*) FROM book_tops)"
    ).fetchone()


def _round_trips(conn: psycopg.Connection, step: object) -> tuple[object, int]:
    """Run `step()` and count the round trips the client made (libpq's trace: each Sync of the
    extended protocol and each simple Query waits for the server once)."""
    with tempfile.TemporaryFile("w+") as fh:
        conn.pgconn.trace(fh.fileno())
        try:
            out = step()  # type: ignore[operator]
        finally:
            conn.pgconn.untrace()
        fh.seek(0)
        sent = [line.split("\t")[3].strip() for line in fh if "\tF\t" in line]
    return out, sent.count("Sync") + sent.count("Query")


def test_the_book_function_file_runs_in_psql_twice(dsn: str) -> None:
    for _ in range(2):
        r = subprocess.run(
            [str(embedded.bin_dir() / "psql"), dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", BOOK_SQL],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    with psycopg.connect(dsn) as c:
        w = BookWriter(c)
        assert w.store(_mixed(10, 2)).appended == 3
        assert w.server_append


def test_book_arrays_keep_the_exchanges_digits_and_send_absent_values_as_null() -> None:
    d = _diff(9)._replace(asks=[])
    q = _quote(4, T0)._replace(event_time_us=None)
    arrays = book_arrays([d], [q], [_top(4, bid=None), _top(5, ask="")])
    assert len(arrays) == 31
    assert arrays[7] == '{"{61737.63000000,61700.1}"}' and arrays[9] == '{"{}"}'  # levels: exact, empty
    assert arrays[4] == "{NULL}"  # prev id unknown
    assert arrays[16] == "{NULL}" and arrays[17] == "{61837.63000000}"  # no event time; exact price
    assert arrays[26] == "{NULL,61837.63}" and arrays[28] == "{61837.64,NULL}"  # an empty side
    assert book_arrays([], [], [])[:3] == ("{}", "{}", "{}")


def test_the_one_call_stores_the_same_rows_as_the_statement_path(conn: psycopg.Connection) -> None:
    snap = BookSnapshot("binance", "BTCUSDT", 5, [("100.10", "1"), ("100.00", "2")], [("100.20", "3")], T0)
    gap = BookGap("binance", "BTCUSDT", "gap", 6, 9, T0 + 10)
    batches: list[list[BookRow]] = [
        [snap, gap, *_mixed(10, 5), *_mixed(15, 3, T0 + DAY)],  # crosses midnight: two partitions
        [*_mixed(12, 8), gap._replace(snapshot_id=12, healed_at_us=T0 + 20)],  # overlaps: the merge
        [*_mixed(30, 2), _quote(30, T0 + 5), _top(31)],  # repeats inside the batch: the merge
    ]
    results = []
    for with_function in (False, True):
        conn.execute(_DROP if not with_function else BOOK_SQL.read_text())
        conn.commit()
        w = TradeWriter(conn)
        results.append([w.write([], [], b).book for b in batches])
        assert w.book.server_append is with_function
        if not with_function:
            before = _dump(conn)
            for table in _DUMP:
                conn.execute(f"TRUNCATE {table}")
            conn.commit()
    after = _dump(conn)
    assert after == before and sum(len(v) for v in after.values()) == 38
    assert results[0] == results[1]
    assert [(r.diffs, r.appended, r.merged) for r in results[1] if r] == [(8, 3, 0), (2, 0, 3), (2, 1, 2)]


def test_a_book_commit_with_trades_and_statements_is_one_round_trip(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE beat (n int)")
    conn.execute("INSERT INTO beat VALUES (0)")
    conn.commit()
    w = TradeWriter(conn)
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ()), ("SELECT %s::int", (7,))]
    w.write([trade(1, "100", "1", False, T0)], [], _mixed(1, 2), also=also)  # partitions, staging
    for k in range(3):
        batch = [
            trade(i, f"{100 + i}.5", "0.25", i % 2 == 0, T0 + i * 1_000) for i in range(2 + k * 5, 7 + k * 5)
        ]
        book: list[BookRow] = [
            *_mixed(10 + k * 10, 6),
            BookGap("binance", "BTCUSDT", "gap", 100 + k, None, T0),
        ]
        res, trips = _round_trips(conn, lambda b=batch, bk=book: w.write(b, [], bk, also=also))
        assert trips == 1, trips  # BEGIN, both calls, the gap, the statements and COMMIT together
        assert res.inserted == 5 and res.also == [[(k + 2,)], [(7,)]]
        assert res.book is not None and (res.book.diffs, res.book.quotes, res.book.tops) == (6, 6, 6)
        assert (res.book.appended, res.book.gaps) == (3, 1)
    # book rows alone (no trades, no statements): one round trip too
    res, trips = _round_trips(conn, lambda: w.write([], [], _mixed(50, 3)))
    assert trips == 1 and res.book is not None and res.book.diffs == 3
    assert _counts(conn) == (23, 23, 23)
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (16,)


def test_a_rejected_statement_rolls_back_the_whole_pipelined_commit(conn: psycopg.Connection) -> None:
    from cryptolab.errors import DataError

    conn.execute("CREATE TABLE beat (n int CHECK (n < 2))")
    conn.execute("INSERT INTO beat VALUES (0)")
    conn.commit()
    w = TradeWriter(conn)
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ())]
    w.write([trade(1, "10", "1", False, T0)], [], _mixed(1, 2), also=also)
    # the statement comes last: the trades' and the book's calls before it ran, and roll back
    try:
        w.write([trade(2, "10", "1", False, T0 + 1)], [], _mixed(10, 3), also=also)
        raise AssertionError("the statement should have been rejected")
    except DataError:
        pass
    assert _counts(conn) == (2, 2, 2)
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (1,)
    assert conn.execute("SELECT n FROM beat").fetchone() == (1,)
    res = w.write([trade(2, "10", "1", False, T0 + 1)], [], _mixed(10, 3))  # the writer goes on
    assert res.inserted == 1 and res.book is not None and res.book.appended == 3
    assert _counts(conn) == (5, 5, 5)


def test_trades_alone_with_statements_alongside_are_one_round_trip_and_one_transaction(
    conn: psycopg.Connection,
) -> None:
    from cryptolab.errors import DataError

    conn.execute("CREATE TABLE beat (n int CHECK (n < 3))")
    conn.execute("INSERT INTO beat VALUES (0)")
    conn.commit()
    w = TradeWriter(conn)
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ())]
    w.write([trade(1, "10", "1", False, T0)], also=also)
    res, trips = _round_trips(conn, lambda: w.write([trade(2, "11", "1", True, T0 + 7)], also=also))
    assert trips == 1 and res.inserted == 1 and res.also == [[(2,)]]  # type: ignore[attr-defined]
    try:  # the statement, after the trades' call, is rejected: the trades roll back with it
        w.write([trade(3, "12", "1", True, T0 + 9)], also=also)
        raise AssertionError("the statement should have been rejected")
    except DataError:
        pass
    assert conn.execute("SELECT count(*), max(trade_id) FROM trades").fetchone() == (2, 2)
    assert conn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (2,)
    assert w.write([trade(3, "12", "1", True, T0 + 9)]).inserted == 1


def test_a_batch_overlapping_stored_ids_is_merged_and_each_row_stored_once(conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    first = w.write([trade(1, "10", "1", False, T0)], [], _mixed(10, 5))
    assert first.book is not None and first.book.appended == 3
    # a reconnect's overlap: book ids 12..16 (12..14 stored) and trades 1..2 (1 stored)
    again = [*_mixed(12, 5), _quote(13, T0 + 500_000)]  # quote 13 received again, later
    res = w.write([trade(1, "10", "1", False, T0), trade(2, "11", "1", True, T0 + 5)], [], again)
    assert (res.inserted, res.duplicates) == (1, 1)
    assert res.book is not None
    assert (res.book.diffs, res.book.quotes, res.book.tops, res.book.merged) == (2, 2, 2, 3)
    assert (res.book.diffs_offered, res.book.quotes_offered) == (5, 6)
    assert _counts(conn) == (7, 7, 7)
    rows = conn.execute("SELECT update_id, received_at FROM quotes WHERE update_id = 13").fetchall()
    assert rows == [(13, datetime_of(T0 + 13))]  # the first one received kept
    assert conn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (2,)


def test_trades_the_call_cannot_append_are_merged_after_the_book_commits(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE beat (n int)")
    conn.execute("INSERT INTO beat VALUES (0)")
    conn.commit()
    w = TradeWriter(conn)
    w.write([trade(5, "10", "1", False, T0)])
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ())]
    res = w.write(
        [trade(5, "10", "1", False, T0), trade(6, "12", "2", True, T0 + 9)], [], _mixed(1, 3), also=also
    )
    assert (res.inserted, res.duplicates, res.also) == (1, 1, [[(1,)]])
    assert res.book is not None and res.book.diffs == 3
    assert conn.execute("SELECT n FROM beat").fetchone() == (1,)  # the statements ran once
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (2,)
    assert conn.execute("SELECT sum(trade_count), sum(volume) FROM bars_1s").fetchone() == (2, Decimal(3))


def test_concurrent_writers_of_the_same_ids_leave_each_row_once(dsn: str) -> None:
    batches = [_mixed(lo, 8) for lo in range(0, 200, 5)]  # each overlaps the next by 3 ids
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    totals: list[int] = []

    def run(k: int) -> None:
        try:
            with psycopg.connect(dsn) as c:
                w = TradeWriter(c)
                w.write([], [], _mixed(1000 + k, 1))  # (partitions and staging first)
                start.wait()
                got = 0
                for b in batches if k % 2 else reversed(batches):
                    res = w.write([], [], b)
                    assert res.book is not None
                    got += res.book.diffs + res.book.quotes + res.book.tops
                totals.append(got)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with psycopg.connect(dsn) as c:
        assert _counts(c) == (207, 207, 207)
        dup = c.execute(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM book_diffs GROUP BY symbol, last_update_id"
            " HAVING count(*) > 1) d) + (SELECT count(*) FROM (SELECT 1 FROM quotes GROUP BY symbol,"
            " update_id HAVING count(*) > 1) q)"
        ).fetchone()
        assert dup == (0,)
    assert sum(totals) == 3 * 203  # each row of the batches counted by the one writer that stored it


def test_a_duplicate_key_from_a_writer_that_does_not_lock_rolls_back_and_merges(dsn: str) -> None:
    rows = _mixed(20, 4)
    d = rows[3]
    assert isinstance(d, DepthDiff)
    with psycopg.connect(dsn) as other, psycopg.connect(dsn) as c:
        w = TradeWriter(c)
        w.write([], [], _mixed(1, 1))  # (partitions and staging first)
        # another writer, without the lock, inserts one of the batch's diffs and has not committed
        other.execute(
            "INSERT INTO book_diffs (exchange, symbol, first_update_id, last_update_id, event_time,"
            " bid_price, bid_qty, ask_price, ask_qty, source)"
            " VALUES ('binance', 'BTCUSDT', %s, %s, %s, '{}', '{}', '{}', '{}', 'live')",
            (d.first_id, d.last_id, datetime_of(d.event_time_us)),
        )
        out: list[object] = []
        t = threading.Thread(target=lambda: out.append(w.write([trade(1, "10", "1", False, T0)], [], rows)))
        t.start()
        time.sleep(0.5)  # the append waits for the other's key ...
        other.commit()  # ... which commits: a duplicate key, the whole batch rolled back, merged
        t.join(30)
        assert out, "the writer did not finish"
        res = out[0]
        assert res.book.diffs == 3 and res.book.quotes == 4 and res.inserted == 1  # type: ignore[attr-defined]
        assert _counts(c) == (5, 5, 5)
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (1,)


def datetime_of(us: int) -> object:
    from cryptolab.model import us_to_datetime

    return us_to_datetime(us)
