"""The one-call append (`cryptolab_append_trades`, sql/schema/append_trades.sql) against a real
PostgreSQL: the same rows and bars as the statement-by-statement path, in one round trip, and
the merge whenever a batch overlaps what is stored or archived."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from cryptolab.storage import embedded
from cryptolab.storage.db import SQL_DIR
from cryptolab.storage.writer import BARS_ON_CONFLICT, TradeWriter, _bar_agg
from tests.storage import test_append as ta
from tests.storage import test_writer as tw
from tests.storage.test_writer import T0, trade

APPEND_SQL = Path(SQL_DIR) / "schema" / "append_trades.sql"


def install_append_function(conn: psycopg.Connection) -> None:
    """Apply sql/schema/append_trades.sql again (apply_schema does; a test that dropped it needs it back)."""
    conn.execute(APPEND_SQL.read_text())
    conn.commit()


@pytest.fixture
def fconn(conn: psycopg.Connection) -> psycopg.Connection:
    install_append_function(conn)
    return conn


def _words(sql: str) -> str:
    return " ".join(sql.split())


def test_the_function_file_runs_in_psql_twice(dsn: str) -> None:
    for _ in range(2):
        r = subprocess.run(
            [str(embedded.bin_dir() / "psql"), dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", APPEND_SQL],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    with psycopg.connect(dsn) as c:
        w = TradeWriter(c)
        assert w.write([trade(1, "1.5", "2", False, T0)]).inserted == 1
        assert w.server_append and w.appended == 1


def test_the_function_folds_bars_by_the_writers_one_rule() -> None:
    text = _words(APPEND_SQL.read_text())
    assert _words(BARS_ON_CONFLICT) in text
    agg = _bar_agg("src", "timestamptz 'epoch' + trade_time_us * interval '1 microsecond'")
    assert _words(agg) in text


def test_a_batch_of_trades_alone_is_one_statement_and_one_commit(fconn: psycopg.Connection) -> None:
    w = TradeWriter(fconn)
    w.write([trade(1, "100", "1", False, T0)])
    batch = [trade(i, f"{100 + i}.5", "0.25", i % 2 == 0, T0 + i * 1_000) for i in range(2, 14)]
    with tempfile.TemporaryFile("w+") as fh:
        fconn.pgconn.trace(fh.fileno())
        try:
            res = w.write(batch)
        finally:
            fconn.pgconn.untrace()
        fh.seek(0)
        sent = [line.split("\t")[3].strip() for line in fh if "\tF\t" in line]
    assert (res.inserted, res.bars_touched) == (12, 1)
    assert sent.count("Sync") + sent.count("Query") == 1, sent  # one round trip
    assert w.appended == 2 and w.merged == 0
    assert fconn.execute("SELECT count(*) FROM trades").fetchone() == (13,)
    assert fconn.execute("SELECT count(*), sum(trade_count) FROM bars_1s").fetchone() == (1, 13)


def test_statements_alongside_commit_with_the_batch_and_return_their_rows(fconn: psycopg.Connection) -> None:
    fconn.execute("CREATE TABLE beat (n int)")
    fconn.execute("INSERT INTO beat VALUES (0)")
    fconn.commit()
    w = TradeWriter(fconn)
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ()), ("SELECT %s::int", (7,))]
    res = w.write([trade(1, "10", "1", False, T0), trade(2, "11", "1", True, T0 + 5)], also=also)
    assert res.inserted == 2 and res.also == [[(1,)], [(7,)]]
    # a batch that overlaps what is stored is merged; the statements still run once
    res = w.write([trade(2, "11", "1", True, T0 + 5), trade(3, "12", "1", True, T0 + 9)], also=also)
    assert (res.inserted, res.duplicates) == (1, 1) and res.also == [[(2,)], [(7,)]]
    assert w.merged == 1
    # with book-free dead letters too: one transaction, the classic way
    from cryptolab.model import DeadLetter

    res = w.write([trade(4, "13", "1", True, T0 + 12)], [DeadLetter("bad", b"{")], also=also)
    assert res.inserted == 1 and res.also == [[(3,)], [(7,)]]
    assert fconn.execute("SELECT count(*) FROM trades").fetchone() == (4,)
    assert fconn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (4,)


def test_a_rejected_batch_rolls_back_the_statements_alongside(fconn: psycopg.Connection) -> None:
    fconn.execute("CREATE TABLE beat (n int)")
    fconn.execute("INSERT INTO beat VALUES (0)")
    fconn.commit()
    w = TradeWriter(fconn)
    from cryptolab.errors import DataError

    with pytest.raises(DataError):  # qty 0 breaks the table's check
        w.write([trade(1, "10", "0", False, T0)], also=[("UPDATE beat SET n = n + 1", ())])
    assert fconn.execute("SELECT n FROM beat").fetchone() == (0,)
    assert fconn.execute("SELECT count(*) FROM trades").fetchone() == (0,)


def test_ids_of_a_day_archived_and_dropped_are_left_out(fconn: psycopg.Connection) -> None:
    fconn.execute(
        "INSERT INTO archive_days (exchange, symbol, day, location, path, rows, first_trade_id,"
        " last_trade_id, sum_qty, sum_quote, bytes, verified_at, dropped_at)"
        " VALUES ('binance', 'BTCUSDT', '2024-12-31', 'x', 'x', 10, 1, 10, 1, 1, 1, now(), now())"
    )
    fconn.commit()
    w = TradeWriter(fconn)
    res = w.write([trade(i, "5", "1", False, T0 + i) for i in range(8, 13)])
    assert (res.inserted, res.archived) == (2, 3) and w.merged == 1 and w.appended == 0
    assert fconn.execute("SELECT array_agg(trade_id ORDER BY trade_id) FROM trades").fetchone() == ([11, 12],)


def test_inside_the_callers_transaction_an_overlap_is_merged_and_a_rollback_keeps_nothing(
    dsn: str, fconn: psycopg.Connection
) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        w = TradeWriter(c)
        with c.transaction():
            w.write([trade(i, "5", "1", False, T0 + i) for i in range(1, 6)])
            res = w.write([trade(i, "5", "1", False, T0 + i) for i in range(3, 9)])
            assert (res.inserted, res.duplicates) == (3, 3) and w.appended == 1 and w.merged == 1
            assert c.execute("SELECT count(*) FROM trades").fetchone() == (8,)
            raise psycopg.Rollback()
    assert fconn.execute("SELECT count(*), (SELECT count(*) FROM bars_1s) FROM trades").fetchone() == (0, 0)


def test_without_the_function_the_writer_stages_and_asks_statement_by_statement(
    fconn: psycopg.Connection,
) -> None:
    fconn.execute("DROP FUNCTION cryptolab_append_trades")
    fconn.commit()
    w = TradeWriter(fconn)
    assert w.write([trade(1, "1", "1", False, T0)]).inserted == 1
    assert not w.server_append and w.appended == 1


# the append's scenarios of test_append.py and test_writer.py, through the one call


def test_one_call_appends_store_the_same_rows_and_bars_as_merged_ones(fconn: psycopg.Connection) -> None:
    ta.test_appended_batches_store_the_same_rows_and_bars_as_merged_ones(fconn)


def test_one_call_overlap_is_merged_and_stored_once(fconn: psycopg.Connection) -> None:
    ta.test_a_batch_overlapping_what_is_stored_is_merged_and_stored_once(fconn)


def test_one_call_concurrent_writers_of_the_same_ids_leave_each_trade_once(
    dsn: str, fconn: psycopg.Connection
) -> None:
    ta.test_a_concurrent_writer_of_the_same_ids_leaves_each_trade_once(dsn, fconn)


def test_one_call_waits_for_the_symbol_lock(dsn: str, fconn: psycopg.Connection) -> None:
    ta.test_the_symbol_lock_holds_an_append_until_the_other_writer_commits(dsn, fconn)


def test_one_call_late_backfill_corrects_bar_open(fconn: psycopg.Connection) -> None:
    tw.test_late_backfill_corrects_bar_open(fconn)


def test_one_call_microsecond_times_are_exact(fconn: psycopg.Connection) -> None:
    tw.test_microsecond_times_are_exact(fconn)


def test_one_call_many_symbols_bars_match_independent_aggregation(fconn: psycopg.Connection) -> None:
    tw.test_many_symbols_bars_match_independent_aggregation(fconn)


@pytest.mark.parametrize(
    "price,qty",
    [("0.00000001", "123456789.12345678"), ("1E-8", "2.50"), ("98765.43210000", "0.00100000")],
)
def test_one_call_keeps_exact_decimals_and_their_scale(
    fconn: psycopg.Connection, price: str, qty: str
) -> None:
    w = TradeWriter(fconn)
    w.write([trade(1, price, qty, False, T0)])
    row = fconn.execute("SELECT price::text, qty::text, quote_qty FROM trades").fetchone()
    assert row is not None
    assert (Decimal(row[0]), Decimal(row[1])) == (Decimal(price), Decimal(qty))
    assert re.fullmatch(r"[0-9.]+", row[0]) and row[2] == Decimal(price) * Decimal(qty)
    assert w.appended == 1


def test_one_call_symbols_with_quotes_and_backslashes_round_trip(fconn: psycopg.Connection) -> None:
    odd = 'A"B\\C,D {E}'
    TradeWriter(fconn).write([trade(1, "1", "1", False, T0, symbol=odd), trade(2, "1", "1", False, T0, "X")])
    assert fconn.execute("SELECT symbol FROM trades ORDER BY trade_id").fetchall() == [(odd,), ("X",)]
    assert fconn.execute("SELECT count(*) FROM bars_1s").fetchone() == (2,)


def test_concurrent_one_call_and_staged_writers_agree(dsn: str, fconn: psycopg.Connection) -> None:
    """A writer with the function and one without (an old process) offer the same ids at once."""
    trades = ta._market(1500, seed=9)
    errors: list[BaseException] = []

    def run(server: bool) -> None:
        try:
            with psycopg.connect(dsn) as c:
                w = TradeWriter(c)
                w.write(trades[:1])
                w.server_append = server
                for k in range(1, len(trades), 75):
                    w.write(trades[k : k + 75])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (True, False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert fconn.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM trades").fetchone() == (
        1500,
        1500,
    )
    assert fconn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (1500,)


def test_the_schema_brings_the_function(conn: psycopg.Connection) -> None:
    # apply_schema runs sql/schema/*.sql after schema.sql: a new database has the one-call append
    row = conn.execute(
        "SELECT to_regprocedure('cryptolab_append_trades(text[], text[], bigint[], numeric[], numeric[],"
        " boolean[], bigint[], bigint[], bigint[], text[])') IS NOT NULL"
    ).fetchone()
    assert row == (True,)
