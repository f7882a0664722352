"""The capture journal: append-only, replayed in order, exactly once, torn lines survive."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from cryptolab.journal import Journal, Segment
from cryptolab.model import DeadLetter, Trade
from cryptolab.writer import TradeWriter

T0 = 1_735_689_600_000_000


def trades(a: int, b: int) -> list[Trade]:
    return [Trade("binance", "BTCUSDT", i, Decimal("95000.12345678"), Decimal("0.00000001") * i, i % 2 == 0,
                  T0 + i * 1000, T0 + i * 1000 + 1, T0 + i * 1000 + 2, "live") for i in range(a, b)]


def test_round_trip_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 5), [DeadLetter("bad json", b"\xff{", "live", "binance", None, T0)])
    j.append(trades(5, 9))
    assert len(j) == 9
    seen: list[Segment] = []
    done, torn = j.replay(seen.append)
    assert (done, torn) == (9, 0)
    assert [t.trade_id for s in seen for t in s.trades] == list(range(1, 9))
    assert seen[0].trades[0] == trades(1, 2)[0]  # exact Decimals and times survive
    assert seen[0].dead_letters[0].payload == b"\xff{"
    assert j.segments() == [] and len(j) == 0


def test_failed_store_keeps_segment(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 3))

    def boom(seg: Segment) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        j.replay(boom)
    assert len(j.segments()) == 1
    # a new Journal on the same directory (the next capture) still sees it
    assert len(Journal(tmp_path)) == 2


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 4))
    j.close()
    seg = j.segments()[0]
    with open(seg, "ab") as fh:
        fh.write(b'["T","binance","BTCUSDT",4,"95000.1')  # kill -9 mid-write
    got: list[Segment] = []
    done, torn = Journal(tmp_path).replay(got.append)
    assert done == 3 and torn == 1


def test_replay_twice_into_database_stores_once(tmp_path: Path, conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    j = Journal(tmp_path)
    j.append(trades(1, 101))
    # crash after commit, before the segment was deleted: the next run replays it again
    seg_path = j.segments()[0]
    saved = seg_path.read_bytes()
    j.replay(lambda s: w.write(s.trades, s.dead_letters))
    seg_path.write_bytes(saved)
    Journal(tmp_path).replay(lambda s: w.write(s.trades, s.dead_letters))
    assert conn.execute("SELECT count(*), sum(qty) FROM trades").fetchone() == (100, Decimal("0.00000001") * 5050)
