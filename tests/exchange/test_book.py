"""The local exchange's synthetic book, run offline on a virtual clock (no sockets)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptolab.book import OrderBook
from cryptolab.exchange.book import SyntheticBook
from cryptolab.exchange.bookfeed import BookFeed, book_stream_kind
from cryptolab.exchange.market import SyntheticMarket, symbol_spec
from cryptolab.exchange.tradelog import SymbolLog, fmt8

T0 = 1_723_161_255_000_000


def run_feed(rate: float, seconds: float, *, symbol: str = "btcusdt", seed: int = 3, step_us: int = 5_000,
             history: int = 1_000_000, wanted: dict[str, int] | None = None, check: bool = False
             ) -> tuple[SymbolLog, BookFeed, list]:
    log = SymbolLog(symbol_spec(symbol))
    market = SyntheticMarket([log], rate=rate, seed=seed)
    feed = BookFeed({log.spec.symbol: log}, seed=seed, id_base=1, rate_of=lambda s: rate, history=history)
    market.start(T0)
    feed.activate(symbol)
    book = feed.books[log.spec.symbol]
    now, msgs = T0, []
    while now < T0 + seconds * 1e6:
        now += step_us
        market.generate(now)
        batch = market.release(now)
        msgs += feed.advance(now, batch, wanted or {})
        if check:
            assert not book.crossed(), f"crossed at update id {book.update_id}"
    return log, feed, msgs


def levels(d: dict[int, int], reverse: bool) -> list[tuple[str, str]]:
    return [(fmt8(p), fmt8(d[p])) for p in sorted(d, reverse=reverse)]


def test_a_trade_takes_liquidity_at_the_best_level_and_the_book_refills() -> None:
    spec = symbol_spec("btcusdt")
    b = SyntheticBook(spec, seed=1, first_id=100, price=spec.price)
    tick = spec.tick
    bid, bid_qty = b.bid_px[-1], b.bids[b.bid_px[-1]]
    ask = b.ask_px[0]
    assert ask == bid + tick
    # a taker sell smaller than the best bid: the level shrinks by exactly the trade's qty
    q = max(spec.lot, bid_qty // 2 // spec.lot * spec.lot)
    before = b.update_id
    b.trade(bid, q, True)
    assert b.bids[bid] == bid_qty - q
    assert b.update_id == before + 1  # one change, one update id
    assert b.quotes[-1].bid_qty == bid_qty - q and b.quotes[-1].update_id == b.update_id
    # a taker buy above the best ask (the market jumped): cheaper asks go, the ask level holds
    # the trade, the bid side refills one tick under it, and the book is never crossed
    up = ask + 50 * tick
    b.trade(up, 3 * spec.lot, False)
    assert b.ask_px[0] == up or b.ask_px[0] > up  # the level at `up` shrank or went
    assert all(p >= up for p in b.asks)
    assert b.bid_px[-1] == up - tick
    assert not b.crossed()
    # a sell that takes a whole level: the level goes, the next one is the best
    lvl = b.bid_px[-1]
    b.trade(lvl, b.bids[lvl], True)
    assert lvl not in b.bids and b.bid_px[-1] < lvl and not b.crossed()


def test_the_book_follows_the_trades_and_never_crosses() -> None:
    log, feed, _ = run_feed(rate=200, seconds=20, check=True)
    book = feed.books["BTCUSDT"]
    assert len(log) > 2000
    # the book drifted with the price: the last trade sits at the top of the book
    last_p, maker = log.prices[-1], log.makers[-1]
    bid, ask = book.bid_px[-1], book.ask_px[0]
    assert bid <= last_p <= ask and ask - bid >= book.tick
    if maker:
        assert ask > last_p
    else:
        assert bid < last_p


def test_every_diff_rebuilds_the_exchange_book_and_every_quote_is_its_top() -> None:
    _, feed, _ = run_feed(rate=100, seconds=15)
    b = feed.books["BTCUSDT"]
    diffs = feed.diffs["BTCUSDT"].items
    assert len(diffs) >= 140
    start = diffs[0].first_id - 1
    bids, asks = b.book_at(start)
    ob = OrderBook()
    ob.load(levels(bids, True), levels(asks, False), start)
    prev = start
    for d in diffs:
        assert d.first_id == prev + 1 and d.last_id >= d.first_id  # U..u spans every id once
        prev = d.last_id
        ob.apply([(fmt8(p), fmt8(q)) for p, q in d.bids], [(fmt8(p), fmt8(q)) for p, q in d.asks], d.last_id)
        eb, ea = b.book_at(d.last_id)
        assert ob.bids == {Decimal(p): Decimal(q) for p, q in levels(eb, True)}
        assert ob.asks == {Decimal(p): Decimal(q) for p, q in levels(ea, False)}
        assert not ob.crossed()
    quotes = feed.quotes["BTCUSDT"].items
    assert len(quotes) > 300
    for t in quotes[::7]:
        eb, ea = b.book_at(t.update_id)
        assert (t.bid, t.bid_qty) == (max(eb), eb[max(eb)])
        assert (t.ask, t.ask_qty) == (min(ea), ea[min(ea)])


def test_the_1000ms_diff_is_the_100ms_diffs_merged() -> None:
    _, feed, msgs = run_feed(rate=100, seconds=5, wanted={"btcusdt@depth": 1, "btcusdt@depth@100ms": 1})
    b = feed.books["BTCUSDT"]
    import json

    slow = [json.loads(m.ms) for m in msgs if m.kind == "diff1000"]
    fast = [json.loads(m.ms) for m in msgs if m.kind == "diff"]
    assert 4 <= len(slow) <= 6 and len(fast) >= 40
    assert [d["U"] for d in slow][1:] == [a["u"] + 1 for a in slow[:-1]]
    for d in slow[1:]:
        parts = [f for f in fast if d["U"] <= f["U"] and f["u"] <= d["u"]]
        assert parts[0]["U"] == d["U"] and parts[-1]["u"] == d["u"]
        merged_b: dict[str, str] = {}
        for f in parts:
            merged_b.update(dict(f["b"]))
        assert dict(d["b"]) == merged_b
        assert b.oldest_id <= d["u"]


def test_history_is_bounded_and_says_what_it_no_longer_keeps() -> None:
    _, feed, _ = run_feed(rate=300, seconds=20, history=10_000)
    b = feed.books["BTCUSDT"]
    assert b.update_id > 40_000
    assert b.oldest_id > 1
    with pytest.raises(LookupError, match="not kept"):
        b.book_at(1)
    with pytest.raises(LookupError):
        b.book_at(b.update_id + 1)
    # what is kept is exact: a recent diff applied to the book before it gives the book after it
    d = feed.diffs["BTCUSDT"].items[-1]
    bids, asks = b.book_at(d.first_id - 1)
    for p, q in d.bids:
        bids.pop(p, None) if q == 0 else bids.__setitem__(p, q)
    for p, q in d.asks:
        asks.pop(p, None) if q == 0 else asks.__setitem__(p, q)
    assert (bids, asks) == b.book_at(d.last_id)


def test_real_pace_matches_the_recording() -> None:
    """BTCUSDT's recorded mix (calibration.BOOK_*): ~10 diffs/s, ~460 level updates/s,
    ~700 update ids/s, ~112 bookTicker/s, spread one tick."""
    secs = 120
    log, feed, _ = run_feed(rate=30.59, seconds=secs)
    b = feed.books["BTCUSDT"]
    diffs = feed.diffs["BTCUSDT"].items
    quotes = feed.quotes["BTCUSDT"].items
    level_updates = sum(len(d.bids) + len(d.asks) for d in diffs)
    assert 9.5 <= len(diffs) / secs <= 10.01
    assert 400 <= level_updates / secs <= 520, level_updates / secs
    assert 620 <= (b.update_id - 1) / secs <= 780
    assert 95 <= len(quotes) / secs <= 135, len(quotes) / secs
    assert 22 <= len(log) / secs <= 40
    spreads = sorted(t.ask - t.bid for t in quotes)
    assert spreads[len(spreads) // 2] == b.tick
    per_diff = sorted(len(d.bids) + len(d.asks) for d in diffs)
    # bursts, as real
    assert per_diff[len(per_diff) // 10] <= 20 and per_diff[len(per_diff) * 99 // 100] >= 200
    removals = sum(1 for d in diffs for _, q in d.bids + d.asks if q == 0) / level_updates
    assert 0.38 <= removals <= 0.58
    assert 500 <= len(b.bid_px) <= 5000 and 500 <= len(b.ask_px) <= 5000


def test_partial_depth_and_stream_names() -> None:
    _, feed, msgs = run_feed(rate=100, seconds=3, wanted={"btcusdt@depth5@100ms": 1, "btcusdt@depth20": 1})
    import json

    b = feed.books["BTCUSDT"]
    parts = [(m.stream, json.loads(m.ms)) for m in msgs if m.kind == "partial"]
    fast = [d for s, d in parts if s == "btcusdt@depth5@100ms"]
    slow = [d for s, d in parts if s == "btcusdt@depth20"]
    assert len(fast) >= 25 and 2 <= len(slow) <= 4
    for d in fast[::5] + slow:
        n = len(d["bids"])
        eb, ea = b.book_at(d["lastUpdateId"])
        assert d["bids"] == [list(x) for x in levels(eb, True)[:n]]
        assert d["asks"] == [list(x) for x in levels(ea, False)[:n]]
    assert {len(d["bids"]) for d in fast} == {5} and {len(d["asks"]) for d in slow} == {20}
    assert [
        book_stream_kind(k)
        for k in (
            "depth",
            "depth@100ms",
            "bookTicker",
            "aggTrade",
            "depth10",
            "depth10@100ms",
            "depth7",
            "depth@1000ms",
            "trade",
        )
    ] == ["diff1000", "diff", "quote", "agg", "partial", "partial", None, None, None]


def test_other_symbols_scale_to_their_price_and_lot() -> None:
    log, feed, _ = run_feed(rate=50, seconds=5, symbol="dogeusdt", check=True)
    b = feed.books["DOGEUSDT"]
    spec = log.spec
    assert all(p % spec.tick == 0 for p in b.bids) and all(q % spec.lot == 0 for q in b.asks.values())
    mid = (b.bid_px[-1] + b.ask_px[0]) / 2
    assert 0.5 * spec.price < mid < 2 * spec.price
