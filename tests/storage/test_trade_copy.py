"""A large batch of live trades by binary COPY (`storage.trade_copy`, `TradeWriter._append_copy`):
the encoding refuses what it cannot say exactly, and against a real PostgreSQL the rows and
bars stored are exactly those the one-call append and the merge store, digit for digit."""

from __future__ import annotations

import random
import subprocess
import sys
from decimal import Decimal

import psycopg

from cryptolab.model import TradeFields
from cryptolab.storage.columns import TradeColumns
from cryptolab.storage.trade_copy import copy_buffer, fold_ranges, numeric_groups
from cryptolab.storage.writer import COPY_MIN_ROWS, TradeWriter
from tests.storage.test_append_function import fconn, install_append_function
from tests.storage.test_writer import T0

__all__ = ["fconn"]


def _decimal(rng: random.Random) -> str:
    """A plain decimal string as an exchange may send it: 0-8 digits after the point, leading
    and trailing zeros, never zero."""
    whole = str(rng.choice([0, rng.randint(0, 9), rng.randint(0, 10**6)]))
    if rng.random() < 0.05:
        whole = "00" + whole
    scale = rng.choice([0, 1, 2, 3, 4, 5, 8, 8, 8])
    frac = "".join(rng.choice("0123456789") for _ in range(scale))
    if scale and rng.random() < 0.3:
        frac = frac[:-1] + "0"
    if not (whole + frac).strip("0"):
        frac = frac[:-1] + "7" if frac else ""
        whole = whole if frac else "3"
    return whole + ("." + frac if frac else "")


def _cols(n: int, *, seed: int = 1, symbols: tuple[str, ...] = ("BTCUSDT",), first: int = 1) -> TradeColumns:
    rng = random.Random(seed)
    c = TradeColumns("binance", "live")
    for k in range(n):
        sym = symbols[k % len(symbols)]
        t = T0 + 1_700 * k
        f: TradeFields = (sym, first + k, _decimal(rng), _decimal(rng), rng.random() < 0.5, t, t + 3)
        c.add(f, t + 900)
    return c


def _stored(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT exchange, symbol, trade_id, price::text, qty::text, quote_qty::text, is_buyer_maker,"
        " trade_time, event_time, received_at, source FROM trades ORDER BY symbol, trade_id"
    ).fetchall()


def _bars(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT * FROM bars_1s ORDER BY symbol, ts").fetchall()


def test_numeric_groups_refuse_what_is_not_a_plain_decimal() -> None:
    for bad in (["1E-7"], [".5"], ["5."], ["1.2.3"], ["-1"], ["1,5"], [""], ["1" * 19], ["0.1" + "0" * 17]):
        assert numeric_groups(bad) is None, bad
    got = numeric_groups(["61807.94000000", "5", "0.00000001"])
    assert got is not None
    digits, weight, dscale = got
    # 6|1807.9400|0000 with weight 1; 5 with weight 4 groups up (5 leading zero groups stripped by
    # the server); 0.0000|0001 two groups after the point
    assert digits.tolist() == [[0, 6, 1807, 9400, 0], [0, 0, 0, 0, 5], [0, 0, 0, 0, 1]]
    assert weight.tolist() == [2, 4, 2] and dscale.tolist() == [8, 0, 8]


def test_the_buffer_is_header_rows_trailer_and_refuses_a_missing_event_time() -> None:
    c = _cols(3)
    buf = copy_buffer(c)
    assert buf is not None and buf.startswith(b"PGCOPY\n\xff\r\n\x00") and buf.endswith(b"\xff\xff")
    row = 2 + (4 + 7) + (4 + 7) + 12 + 2 * (4 + 18) + 5 + 3 * 12 + (4 + 4)
    assert len(buf) == 19 + 3 * row + 2
    c.add(("BTCUSDT", 9, "1", "1", True, T0, None), T0)
    assert copy_buffer(c) is None
    assert copy_buffer(TradeColumns("binance", "live")) is None


def test_fold_ranges_are_per_symbol_ids_and_times() -> None:
    c = _cols(6, symbols=("BTCUSDT", "ETHUSDT"), first=10)
    assert fold_ranges(c) == (
        ["binance", "binance"],
        ["BTCUSDT", "ETHUSDT"],
        [10, 11],
        [14, 15],
        [T0, T0 + 1_700],
        [T0 + 4 * 1_700, T0 + 5 * 1_700],
    )


def _same_as_write(conn: psycopg.Connection, cols: TradeColumns) -> None:
    w = TradeWriter(conn)
    res = w.write_columns(cols)
    assert (res.inserted, w.copied, w.appended) == (len(cols), 1, 1)
    got, bars = _stored(conn), _bars(conn)
    assert len(got) == len(cols) and res.bars_touched == len(bars)
    conn.execute("TRUNCATE trades, bars_1s")
    conn.commit()
    w2 = TradeWriter(conn)
    assert w2.write(cols.rows()).inserted == len(cols) and w2.copied == 0
    assert _stored(conn) == got
    assert _bars(conn) == bars


def test_a_large_batch_goes_by_copy_and_stores_what_write_stores(fconn: psycopg.Connection) -> None:
    cols = _cols(COPY_MIN_ROWS + 500, seed=7)
    _same_as_write(fconn, cols)
    stored = {i: (p, q) for i, p, q in fconn.execute("SELECT trade_id, price, qty FROM trades").fetchall()}
    for i, p, q in zip(cols.ids, cols.prices, cols.qtys):  # value and scale: the digits as sent
        assert stored[i] == (Decimal(p), Decimal(q))
        assert stored[i][0].as_tuple().exponent == Decimal(p).as_tuple().exponent


def test_a_large_batch_of_two_symbols_goes_by_copy(fconn: psycopg.Connection) -> None:
    _same_as_write(fconn, _cols(COPY_MIN_ROWS + 1, seed=3, symbols=("BTCUSDT", "ETHUSDT")))


def test_a_small_batch_takes_the_one_call_append(fconn: psycopg.Connection) -> None:
    w = TradeWriter(fconn)
    assert w.write_columns(_cols(COPY_MIN_ROWS - 1)).inserted == COPY_MIN_ROWS - 1
    assert (w.copied, w.appended) == (0, 1)


def test_a_capture_does_not_load_numpy_before_its_first_large_batch() -> None:
    """The COPY path's numpy is imported with the first batch of COPY_MIN_ROWS: a capture at a
    real pace (a few trades a commit) never pays its memory and BLAS thread."""
    code = (
        "import sys, cryptolab, cryptolab.capture, cryptolab.cli.capture, cryptolab.storage.writer; "
        "print(sorted(m for m in ('numpy', 'cryptolab.storage.trade_copy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_large_batch_overlapping_stored_ids_is_merged_once(fconn: psycopg.Connection) -> None:
    cols = _cols(COPY_MIN_ROWS + 20)
    w = TradeWriter(fconn)
    w.write(cols.rows()[COPY_MIN_ROWS - 1 : COPY_MIN_ROWS + 9])  # ids COPY_MIN_ROWS … +9 stored
    also = [("SELECT 42", ())]
    res = w.write_columns(cols, also=also)
    assert (res.inserted, res.duplicates, w.copied, w.appended, w.merged) == (COPY_MIN_ROWS + 10, 10, 0, 1, 1)
    assert res.also == [[(42,)]]
    assert [r[2] for r in _stored(fconn)] == list(range(1, COPY_MIN_ROWS + 21))


def test_a_duplicate_key_met_by_the_copy_rolls_back_and_merges(fconn: psycopg.Connection) -> None:
    """A writer that does not take the lock stored one id of the range meanwhile (the check is made
    to look away, as it would if that writer committed between the check and the COPY)."""
    cols = _cols(COPY_MIN_ROWS)
    TradeWriter(fconn).write(cols.rows()[500:501])
    fconn.execute(
        "CREATE OR REPLACE FUNCTION cryptolab_trades_appendable(p_exchange text[], p_symbol text[],"
        " p_lo bigint[], p_hi bigint[], p_t0_us bigint[]) RETURNS boolean LANGUAGE sql AS 'SELECT true'"
    )
    fconn.commit()
    try:
        w = TradeWriter(fconn)
        also = [("SELECT 7", ())]
        res = w.write_columns(cols, also=also)
        assert (res.inserted, res.duplicates, w.copied, w.merged) == (COPY_MIN_ROWS - 1, 1, 0, 1)
        assert res.also == [[(7,)]]
        assert fconn.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades").fetchone() == (
            COPY_MIN_ROWS,
            COPY_MIN_ROWS,
        )
        assert fconn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (COPY_MIN_ROWS,)
    finally:
        install_append_function(fconn)


def test_the_copy_commits_statements_alongside(fconn: psycopg.Connection) -> None:
    fconn.execute("CREATE TABLE beat (n int)")
    fconn.execute("INSERT INTO beat VALUES (0)")
    fconn.commit()
    w = TradeWriter(fconn)
    res = w.write_columns(_cols(COPY_MIN_ROWS), also=[("UPDATE beat SET n = n + 1 RETURNING n", ())])
    assert res.also == [[(1,)]] and w.copied == 1


def test_without_the_copy_functions_a_large_batch_takes_the_call(fconn: psycopg.Connection) -> None:
    fconn.execute("DROP FUNCTION cryptolab_fold_trades")
    fconn.commit()
    try:
        w = TradeWriter(fconn)
        assert w.write_columns(_cols(COPY_MIN_ROWS)).inserted == COPY_MIN_ROWS
        assert (w.server_copy, w.copied, w.appended) == (False, 0, 1)
    finally:
        install_append_function(fconn)
