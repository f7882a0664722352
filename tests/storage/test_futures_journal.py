"""Futures rows survive the journal exactly (A, M, L, O records), and a damaged one is set aside."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from cryptolab.markets import AggTrade, Liquidation, MarkPrice, OpenInterest
from cryptolab.storage.journal import Journal
from cryptolab.storage.journal_format import Segment

T = 1_750_000_000_000_000
ROWS = [
    AggTrade(
        "binance-usdm", "BTCUSDT", 5, Decimal("63943.90"), Decimal("0.003"), 100, 105, T, True, T + 1, T + 2
    ),
    MarkPrice(
        "binance-usdm",
        "BTCUSDT",
        T,
        Decimal("63950.1"),
        Decimal("63960.2"),
        None,
        Decimal("-0.00012500"),
        T + 3_600_000_000,
        T + 5,
    ),
    Liquidation(
        "binance-usdm",
        "BTCUSDT",
        T,
        "SELL",
        "LIMIT",
        "IOC",
        Decimal("9910"),
        Decimal("9910.5"),
        Decimal("0.014"),
        Decimal("0.014"),
        Decimal("0.014"),
        "FILLED",
        T + 1,
        T + 2,
    ),
    OpenInterest("binance-usdm", "BTCUSDT", T, Decimal("12345.678"), None, "live"),
]


def test_futures_rows_come_back_from_the_journal_exactly(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    assert j.append([], [], [], ROWS) == 4
    seen: list[Segment] = []
    j.replay(seen.append)
    assert [r for s in seen for r in s.futures] == ROWS
    assert all(type(a) is type(b) for a, b in zip(seen[0].futures, ROWS))
    j.close()


def test_a_damaged_futures_record_is_set_aside_not_stored(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.append([], [], [], ROWS[:1])
    seg = j.segments()[0]
    seg.write_bytes(seg.read_bytes().replace(b'"63943.90"', b'"63943.91"'))  # the checksum no longer holds
    j.append([], [], [], ROWS[1:2])
    seen: list[Segment] = []
    res = j.replay(seen.append)
    assert res.bad == 1 and [r for s in seen for r in s.futures] == ROWS[1:2]
    j.close()
