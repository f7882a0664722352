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


def test_with_keep_tops_the_top_after_each_applied_diff_is_kept_and_none_for_a_crossed_one() -> None:
    s = BookSync("binance", "BTCUSDT", keep_tops=True)
    s.on_diff(diff(1, 5, [("99", "3")]), 0)
    s.on_diff(diff(6, 9, [("100", "2")]), 0)
    s.on_diff(diff(10, 12, [], [("101", "0"), ("102", "4.50")]), 0)
    assert s.tops == []  # buffered: no book yet
    s.on_snapshot(snap(8), 0)
    # the straddling diff and the next one, each with the book's top right after it
    assert [(t.update_id, t.bid_price, t.bid_qty, t.ask_price, t.ask_qty) for t in s.tops] == [
        (9, "100", "2", "101", "1"),
        (12, "100", "2", "102", "4.50"),
    ]
    s.tops.clear()
    assert s.on_diff(diff(13, 13, [("103", "1")]), 0) is DiffResult.GAP  # crossed: not truth
    assert s.tops == [] and s.gaps[0].reason == "crossed"


def test_without_keep_tops_no_top_is_kept() -> None:
    s = BookSync("binance", "BTCUSDT")
    s.on_snapshot(snap(10), 0)
    s.on_diff(diff(9, 11, [("100.5", "1")]), 0)
    assert s.synced and s.tops == []


def test_with_tops_follows_rows_as_the_capture_does() -> None:
    from cryptolab.book import BookTop
    from cryptolab.book.sync import with_tops

    rows = [snap(10), diff(9, 11, [("100.5", "1")]), diff(12, 12, [], [("101", "0")]), diff(20, 21)]
    out = list(with_tops(rows))
    tops = [r for r in out if isinstance(r, BookTop)]
    assert [(t.update_id, t.bid_price, t.ask_price) for t in tops] == [
        (11, "100.5", "101"),
        (12, "100.5", None),
    ]
    assert out[:3] == [rows[0], rows[1], tops[0]]  # each row, then what it produced
    assert [type(r).__name__ for r in out[-2:]] == ["DepthDiff", "BookGap"]  # 13..19 never came


def test_across_a_reconnect_the_diffs_that_continue_the_old_book_keep_their_tops() -> None:
    s = BookSync("binance", "BTCUSDT", keep_tops=True)
    s.on_snapshot(snap(10), 0)
    s.on_diff(diff(11, 12, [("100.5", "1")]), 0)
    s.restart(0)  # reconnect: a new snapshot is awaited, as Binance asks
    assert not s.synced and s.wants_snapshot is False
    s.on_diff(diff(13, 14, [("100.6", "2")]), 0)  # the new stream continues the old book id for id
    s.on_diff(diff(15, 16, [], [("101", "0"), ("101.5", "3")]), 0)
    assert s.wants_snapshot
    assert s.on_snapshot(snap(14, [("100.6", "2"), ("100.5", "1"), ("100", "1")]), 0) is SnapshotResult.SYNCED
    s.on_diff(diff(17, 17, [("100.7", "1")]), 0)
    # one top per diff, none twice (diff 15..16 was topped from the old book, then re-applied)
    assert [(t.update_id, t.bid_price, t.ask_price) for t in s.tops] == [
        (12, "100.5", "101"),
        (14, "100.6", "101"),
        (16, "100.6", "101.5"),
        (17, "100.7", "101.5"),
    ]


def test_across_a_reconnect_that_missed_ids_the_old_book_gives_no_top() -> None:
    s = BookSync("binance", "BTCUSDT", keep_tops=True)
    s.on_snapshot(snap(10), 0)
    s.on_diff(diff(11, 12), 0)
    s.restart(0)
    s.on_diff(diff(20, 21, [("100.5", "1")]), 0)  # 13..19 were published while disconnected
    s.on_diff(diff(22, 22), 0)
    assert [t.update_id for t in s.tops] == [12]
    s.on_snapshot(snap(21), 0)
    assert [t.update_id for t in s.tops] == [12, 22]
