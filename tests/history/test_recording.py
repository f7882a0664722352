"""The pure part of loading recordings: lines → rows, the market, whose snapshot, the book followed."""

from __future__ import annotations

import json

import pytest

from cryptolab.book import BookGap, BookSnapshot, BookTop, DepthDiff, Quote
from cryptolab.errors import DataError
from cryptolab.history.recording import (
    FUTURES,
    SPOT,
    RawSnapshot,
    RecordingBook,
    Skipped,
    decode_line,
    exchange_for,
    market_hint,
    market_of,
)
from cryptolab.model import DeadLetter, Trade
from tests.history.recording_gen import make_recording

NS = 1_723_161_254_206_652_067


def frame(stream: str, data: dict[str, object], ns: int = NS) -> bytes:
    return f"{ns} {json.dumps({'stream': stream, 'data': data}, separators=(',', ':'))}".encode()


def diff(symbol: str, first: int, last: int, pu: int | None = None) -> dict[str, object]:
    d: dict[str, object] = {"e": "depthUpdate", "E": 1723161255208, "s": symbol, "U": first, "u": last,
                            "b": [["61737.63000000", "0.00000000"]], "a": [["61837.64000000", "1.54698000"]]}
    if pu is not None:
        d["pu"] = pu
    return d


SNAP = (
    f'{NS + 5} {{"lastUpdateId":120,"bids":[["61737.00000000","1.00000000"]],'
    '"asks":[["61838.00000000","2.0"]]}'
).encode()


def test_the_market_is_told_by_the_frames() -> None:
    spot_rec = make_recording(5).lines
    fut_rec = make_recording(5, futures=True).lines
    assert market_of(x.encode() for x in spot_rec) == SPOT
    assert market_of(x.encode() for x in fut_rec) == FUTURES
    assert market_hint(frame("btcusdt@depth@0ms", diff("BTCUSDT", 1, 2, pu=0))) == FUTURES
    assert (
        market_hint(
            frame("btcusdt@bookTicker", {"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1"})
        )
        == SPOT
    )
    assert market_hint(b'1 {"lastUpdateId":1,"E":1,"T":1,"bids":[],"asks":[]}') == FUTURES
    assert market_hint(b"not json") is None
    assert market_of([]) == SPOT  # nothing tells: spot
    assert (exchange_for("spot"), exchange_for("USDM")) == (SPOT, FUTURES)
    with pytest.raises(DataError, match="use spot or usdm"):
        exchange_for("coinm")


def test_each_line_becomes_its_row() -> None:
    assert isinstance(
        decode_line(frame("btcusdt@depth@100ms", diff("BTCUSDT", 1, 2)), exchange=SPOT), DepthDiff
    )
    q = decode_line(
        frame("btcusdt@bookTicker", {"u": 3, "s": "BTCUSDT", "b": "1.5", "B": "1", "a": "2", "A": "1"}),
        exchange=SPOT,
    )
    assert isinstance(q, Quote) and q.received_at_us == NS // 1000 and q.source == "replay"
    t = decode_line(
        frame(
            "btcusdt@trade",
            {
                "e": "trade",
                "E": 1723161255208,
                "s": "BTCUSDT",
                "t": 9,
                "p": "1.5",
                "q": "0.1",
                "T": 1723161255207,
                "m": True,
                "M": True,
            },
        ),
        exchange=SPOT,
    )
    assert isinstance(t, Trade) and t.trade_id == 9
    snap = decode_line(SNAP, exchange=SPOT)
    assert isinstance(snap, RawSnapshot) and snap.body["lastUpdateId"] == 120
    assert isinstance(decode_line(b"   \n", exchange=SPOT), Skipped)
    assert isinstance(decode_line(b'1 {"result":null,"id":1}', exchange=SPOT), Skipped)
    assert isinstance(
        decode_line(
            frame("btcusdt@depth20@100ms", {"lastUpdateId": 1, "bids": [], "asks": []}), exchange=SPOT
        ),
        Skipped,
    )
    bare = decode_line(json.dumps(diff("BTCUSDT", 1, 2)).encode(), exchange=SPOT, default_us=NS // 1000 + 7)
    assert (
        isinstance(bare, DepthDiff) and bare.received_at_us == NS // 1000 + 7
    )  # no stamp: the previous line's
    cut = decode_line(frame("btcusdt@depth@100ms", diff("BTCUSDT", 1, 2))[:-30], exchange=SPOT)
    assert isinstance(cut, DeadLetter) and cut.reason.startswith("invalid JSON")
    bad = decode_line(
        frame("btcusdt@depth@100ms", {**diff("BTCUSDT", 1, 2), "b": [["-1", "1"]]}), exchange=SPOT
    )
    assert isinstance(bad, DeadLetter) and "bad bid level" in bad.reason


def _diff(symbol: str, first: int, last: int) -> DepthDiff:
    row = decode_line(frame("x@depth", diff(symbol, first, last)), exchange=SPOT)
    assert isinstance(row, DepthDiff)
    return row


def test_a_snapshot_before_any_diff_waits_for_its_symbol_then_starts_the_book() -> None:
    follow = RecordingBook(SPOT)
    raw = decode_line(SNAP, exchange=SPOT)
    assert isinstance(raw, RawSnapshot)
    assert follow.snapshot(raw) == []  # whose? not known yet
    rows = follow.diff(_diff("BTCUSDT", 100, 125))
    # the snapshot, the diff, and the book's top after it (stored for book_top)
    assert [type(r) for r in rows] == [BookSnapshot, DepthDiff, BookTop]
    top = rows[2]
    assert isinstance(top, BookTop) and top.update_id == 125
    book = follow.books["BTCUSDT"].book
    assert (top.bid_price, top.ask_price) == tuple(
        format(x[0], "f") for x in (book.best_bid(), book.best_ask())
    )
    assert follow.books["BTCUSDT"].synced and follow.gaps == 0
    rows = follow.diff(_diff("BTCUSDT", 130, 131))  # 126..129 never came: a gap
    assert [type(r) for r in rows] == [DepthDiff, BookGap]
    gap = rows[1]
    assert isinstance(gap, BookGap) and (gap.after_id, gap.before_id, gap.reason) == (125, 130, "gap")


def test_with_several_symbols_a_snapshot_goes_to_the_book_whose_ids_it_sits_among() -> None:
    follow = RecordingBook(SPOT)
    follow.diff(_diff("ETHUSDT", 9_000_000, 9_000_010))
    follow.diff(_diff("BTCUSDT", 100, 125))
    raw = decode_line(SNAP, exchange=SPOT)
    assert isinstance(raw, RawSnapshot)
    [snap] = [r for r in follow.snapshot(raw) if isinstance(r, BookSnapshot)]
    assert snap.symbol == "BTCUSDT" and follow.unsynced() == ["ETHUSDT"]


def test_a_snapshot_without_a_depth_stream_is_not_stored_and_a_bad_one_is_a_dead_letter() -> None:
    follow = RecordingBook(SPOT)
    raw = decode_line(SNAP, exchange=SPOT)
    assert isinstance(raw, RawSnapshot)
    follow.snapshot(raw)
    assert follow.finish() == 1
    pinned = RecordingBook(SPOT, symbol="BTCUSDT")  # --symbol: its snapshots are that symbol's
    bad = decode_line(b'1 {"lastUpdateId":"x","bids":[],"asks":[]}', exchange=SPOT)
    assert isinstance(bad, RawSnapshot)
    [dead] = pinned.snapshot(bad)
    assert isinstance(dead, DeadLetter) and "lastUpdateId must be an integer" in dead.reason
