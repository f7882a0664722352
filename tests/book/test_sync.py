"""Binance's local-book procedure, decided without I/O: buffer, snapshot, straddle, gaps, restarts."""

from __future__ import annotations

from decimal import Decimal

from cryptolab.book import BookSnapshot, BookSync, DepthDiff, DiffResult, SnapshotResult


def diff(U: int, u: int, bids: list[tuple[str, str]] | None = None, asks: list[tuple[str, str]] | None = None,
         pu: int | None = None) -> DepthDiff:
    return DepthDiff("binance", "BTCUSDT", U, u, 1_700_000_000_000_000 + u, bids or [], asks or [], None, pu)


def snap(
    last: int, bids: list[tuple[str, str]] | None = None, asks: list[tuple[str, str]] | None = None
) -> BookSnapshot:
    return BookSnapshot("binance", "BTCUSDT", last, bids or [("100", "1")], asks or [("101", "1")], 0)


def test_the_straddling_diff_is_applied_and_older_ones_dropped() -> None:
    s = BookSync("binance", "BTCUSDT")
    assert s.on_diff(diff(1, 5, [("99", "3")]), 0) is DiffResult.BUFFERED
    assert s.wants_snapshot
    assert s.on_diff(diff(6, 9, [("100", "2")]), 0) is DiffResult.BUFFERED
    assert s.on_diff(diff(10, 12, [], [("101", "0"), ("102", "4")]), 0) is DiffResult.BUFFERED
    # the snapshot is at 8: diff 1..5 is in it (dropped), 6..9 straddles it (applied), then 10..12
    assert s.on_snapshot(snap(8), 0) is SnapshotResult.SYNCED
    assert s.book.update_id == 12
    assert s.book.best_bid() == (Decimal("100"), Decimal("2"))
    assert s.book.best_ask() == (Decimal("102"), Decimal("4"))
    assert Decimal("99") not in s.book.bids  # the dropped diff's level never reached the book
    assert s.gaps == []


def test_a_stale_snapshot_is_refused_until_a_fresh_one_comes() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_diff(diff(20, 25), 0)
    assert s.on_snapshot(snap(18), 0) is SnapshotResult.STALE
    assert not s.synced
    assert s.on_snapshot(snap(22), 0) is SnapshotResult.SYNCED
    assert s.book.update_id == 25


def test_a_snapshot_before_any_diff_waits_for_one() -> None:
    s = BookSync("binance", "BTCUSDT")
    assert s.on_snapshot(snap(10), 0) is SnapshotResult.WAIT
    assert s.on_diff(diff(9, 11), 0) is DiffResult.APPLIED
    assert s.synced and s.book.update_id == 11


def test_a_missed_diff_is_a_gap_recorded_then_healed_by_the_next_snapshot() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_diff(diff(1, 3), 0)
    s.on_snapshot(snap(2), 0)
    assert s.on_diff(diff(4, 6), 0) is DiffResult.APPLIED
    assert s.on_diff(diff(4, 6), 0) is DiffResult.OLD  # offered twice: already in the book
    assert s.on_diff(diff(9, 12), 5) is DiffResult.GAP  # 7..8 never came
    assert not s.synced and s.resyncs == 1
    [seen] = s.gaps
    assert (seen.reason, seen.after_id, seen.before_id, seen.missing, seen.snapshot_id) == (
        "gap",
        6,
        9,
        2,
        None,
    )
    s.on_diff(diff(13, 14), 6)
    assert s.on_snapshot(snap(12), 7) is SnapshotResult.SYNCED
    healed = s.gaps[-1]
    assert (healed.after_id, healed.snapshot_id, healed.healed_at_us) == (6, 12, 7)
    assert s.book.update_id == 14


def test_a_crossed_book_is_a_loud_resync() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_diff(diff(1, 1), 0)
    s.on_snapshot(snap(1), 0)
    assert s.on_diff(diff(2, 2, [("101.5", "1")]), 3) is DiffResult.GAP
    assert s.gaps[0].reason == "crossed" and s.gaps[0].after_id == 2 and s.gaps[0].missing is None
    assert not s.synced


def test_a_restart_records_a_loss_only_when_ids_were_missed() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_diff(diff(1, 2), 0)
    s.on_snapshot(snap(1), 0)
    s.restart(1)
    s.on_diff(diff(3, 4), 1)  # the new connection reaches back to id 3: nothing missed
    s.on_snapshot(snap(4), 1)
    assert s.gaps == [] and s.book.update_id == 4
    s.restart(2)
    s.on_diff(diff(10, 11), 2)  # 5..9 published while reconnecting
    s.on_snapshot(snap(10), 3)
    [gap] = s.gaps
    assert (gap.reason, gap.after_id, gap.before_id, gap.missing, gap.snapshot_id) == (
        "restart",
        4,
        10,
        5,
        10,
    )


def test_futures_continuity_follows_pu() -> None:
    s = BookSync("binance-usdm", "BTCUSDT", futures=True)
    s.on_diff(diff(5, 9, pu=4), 0)
    s.on_diff(diff(12, 15, pu=9), 0)
    # futures ids jump between events; continuity is pu == previous u. Snapshot 9: the diff
    # ending at 9 is kept (u >= lastUpdateId) and straddles it.
    assert s.on_snapshot(snap(9), 0) is SnapshotResult.SYNCED
    assert s.book.update_id == 15
    assert s.on_diff(diff(20, 22, pu=15), 0) is DiffResult.APPLIED
    assert s.on_diff(diff(30, 31, pu=25), 0) is DiffResult.GAP


def test_a_snapshot_right_before_the_first_diff_starts_the_book() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_diff(diff(20, 25, [("99", "1")]), 0)
    assert s.on_snapshot(snap(19), 0) is SnapshotResult.SYNCED  # diff 20..25 continues 19 id for id
    assert s.book.update_id == 25 and s.book.best_bid() == (Decimal("100"), Decimal("1"))
    f = BookSync("binance-usdm", "BTCUSDT", futures=True)
    f.on_diff(diff(20, 25, pu=18), 0)
    assert f.on_snapshot(snap(19), 0) is SnapshotResult.STALE  # futures: pu says 19 is not its predecessor
    assert f.on_snapshot(snap(18), 0) is SnapshotResult.SYNCED
