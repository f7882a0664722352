"""The append fast path: which batches take it (pure), and that it stores exactly what the
merge would (real PostgreSQL), falling back to the merge whenever a batch overlaps."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import psycopg

from cryptolab.model import Trade
from cryptolab.storage import db
from cryptolab.storage.append import AppendRange, append_ranges
from cryptolab.storage.writer import TradeWriter, lock_symbols
from tests.storage.test_writer import T0, trade


def test_increasing_ids_per_symbol_take_the_append() -> None:
    batch = [
        trade(1, "1", "1", False, T0),
        trade(7, "2", "1", True, T0 + 1, "ETHUSDT"),
        trade(2, "1", "1", False, T0 + 2),
        trade(8, "2", "1", True, T0 + 3, "ETHUSDT"),
    ]
    assert append_ranges(batch) == [
        AppendRange("binance", "BTCUSDT", 1, 2, T0),
        AppendRange("binance", "ETHUSDT", 7, 8, T0 + 1),
    ]


def test_a_repeated_or_earlier_id_sends_the_batch_to_the_merge() -> None:
    assert append_ranges([trade(1, "1", "1", False, T0), trade(1, "1", "1", False, T0)]) is None
    assert append_ranges([trade(5, "1", "1", False, T0), trade(3, "1", "1", False, T0)]) is None
    assert append_ranges([]) == []


def _stored(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT symbol, trade_id, price, qty, is_buyer_maker, trade_time, source FROM trades "
        "ORDER BY symbol, trade_id"
    ).fetchall()


def _bars(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT * FROM bars_1s ORDER BY exchange, symbol, ts").fetchall()


def _market(n: int, seed: int) -> list[Trade]:
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(1, n + 1):
        t += rng.randint(1, 400_000)
        sym = rng.choice(["BTCUSDT", "ETHUSDT"])
        out.append(
            trade(
                i,
                f"{rng.randint(90_000, 110_000)}.{rng.randint(0, 99):02d}",
                f"0.{rng.randint(1, 99999):05d}",
                rng.random() < 0.5,
                t,
                sym,
            )
        )
    return out


def test_appended_batches_store_the_same_rows_and_bars_as_merged_ones(conn: psycopg.Connection) -> None:
    trades = _market(3000, seed=4)
    fast = TradeWriter(conn)
    for k in range(0, len(trades), 250):
        fast.write(trades[k : k + 250])
    assert fast.appended == 12 and fast.merged == 0
    appended_rows, appended_bars = _stored(conn), _bars(conn)
    conn.execute("TRUNCATE trades, bars_1s")
    conn.commit()
    # the same market through the merge only: a repeat inside every batch sends it there
    slow = TradeWriter(conn)
    for k in range(0, len(trades), 250):
        batch = trades[k : k + 250]
        slow.write(batch + batch[:1])
    assert slow.appended == 0 and slow.merged == 12
    assert len(appended_rows) == 3000
    assert _stored(conn) == appended_rows and _bars(conn) == appended_bars


def test_a_batch_overlapping_what_is_stored_is_merged_and_stored_once(conn: psycopg.Connection) -> None:
    trades = _market(400, seed=5)
    w = TradeWriter(conn)
    w.write(trades[:300])
    res = w.write(trades[200:])  # a reconnect's overlap: ids 201..300 are stored already
    assert (res.inserted, res.duplicates) == (100, 100)
    assert w.merged == 1
    assert conn.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM trades").fetchone() == (
        400,
        400,
    )
    vol = conn.execute("SELECT sum(volume), sum(trade_count) FROM bars_1s").fetchone()
    assert vol == (sum((t.qty for t in trades), Decimal(0)), 400)


def test_a_concurrent_writer_of_the_same_ids_leaves_each_trade_once(
    dsn: str, conn: psycopg.Connection
) -> None:
    """Two writers (a capture and a load, say) offer the same ids at the same time."""
    trades = _market(2000, seed=6)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with db.connect(dsn) as c:
                w = TradeWriter(c)
                for k in range(0, len(trades), 100):
                    w.write(trades[k : k + 100])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert conn.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM trades").fetchone() == (
        2000,
        2000,
    )
    assert conn.execute("SELECT sum(trade_count) FROM bars_1s").fetchone() == (2000,)


def test_the_symbol_lock_holds_an_append_until_the_other_writer_commits(
    dsn: str, conn: psycopg.Connection
) -> None:
    trades = _market(50, seed=7)
    with db.connect(dsn) as holder:
        with holder.transaction():
            lock_symbols(holder, [("binance", "BTCUSDT")])
            done = threading.Event()

            def write() -> None:
                with db.connect(dsn) as c:
                    TradeWriter(c).write(trades)
                done.set()

            t = threading.Thread(target=write)
            t.start()
            assert not done.wait(1.0)  # blocked behind the lock
        t.join(30)
    assert done.is_set()
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (50,)
