"""Futures books (`pu`): a snapshot newer than every buffered diff starts the book, and the next
diff — the one whose U..u spans the snapshot's id — continues it (not a false gap)."""

from __future__ import annotations

from cryptolab.book.model import BookSnapshot, DepthDiff
from cryptolab.book.sync import BookSync, DiffResult, SnapshotResult


def diff(U: int, u: int, pu: int) -> DepthDiff:
    return DepthDiff("binance-usdm", "BTCUSDT", U, u, 1_700_000_000_000_000 + u, [("100", "2")], [], None, pu)


def snap(last: int) -> BookSnapshot:
    return BookSnapshot("binance-usdm", "BTCUSDT", last, [("100", "1")], [("101", "1")], 0)


def test_a_snapshot_inside_the_next_diff_is_continued_by_it_not_a_gap() -> None:
    s = BookSync("binance-usdm", "BTCUSDT", futures=True)
    s.on_diff(diff(11, 20, 10), 0)
    assert s.on_snapshot(snap(25), 0) is SnapshotResult.SYNCED  # newer than every buffered diff
    assert s.on_diff(diff(21, 30, 20), 0) is DiffResult.APPLIED  # U <= 25 <= u: it continues the book
    assert s.book.update_id == 30 and not s.gaps
    assert s.on_diff(diff(31, 40, 30), 0) is DiffResult.APPLIED  # then pu as usual
    assert s.on_diff(diff(45, 50, 44), 0) is DiffResult.GAP  # and a broken pu is a loss


def test_a_diff_after_the_snapshot_id_that_does_not_span_it_is_a_gap() -> None:
    s = BookSync("binance-usdm", "BTCUSDT", futures=True)
    s.on_diff(diff(11, 20, 10), 0)
    s.on_snapshot(snap(25), 0)
    assert s.on_diff(diff(31, 40, 30), 0) is DiffResult.GAP
