"""The exact L2 book: levels, removals, the best levels kept through churn, crossing."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from cryptolab.book import OrderBook


def test_load_apply_and_best_levels_are_exact() -> None:
    b = OrderBook()
    b.load([("100.10", "1.5"), ("100.00", "2"), ("99.00", "0")], [("100.20", "0.30000000")], 7)
    assert b.update_id == 7
    assert b.best_bid() == (Decimal("100.10"), Decimal("1.5"))
    assert b.best_ask() == (Decimal("100.20"), Decimal("0.3"))
    assert Decimal("99.00") not in b.bids  # a zero quantity is no level
    b.apply([("100.10", "0.00000000"), ("100.15", "0.1")], [("100.20", "0"), ("100.25", "4")], 9)
    assert b.update_id == 9
    assert b.best_bid() == (Decimal("100.15"), Decimal("0.1"))
    assert b.best_ask() == (Decimal("100.25"), Decimal("4"))
    assert b.levels("bid") == [(Decimal("100.15"), Decimal("0.1")), (Decimal("100.00"), Decimal("2"))]
    assert not b.crossed()
    b.apply([("100.30", "1")], [], 10)
    assert b.crossed()


def test_best_levels_match_a_full_scan_through_random_churn() -> None:
    rng = random.Random(5)
    b = OrderBook()
    b.load([], [], 0)
    for i in range(1, 3000):
        bids = [(f"{rng.randint(900, 1000) / 10:.2f}", rng.choice(["0", "1.25", "0.5"])) for _ in range(5)]
        asks = [(f"{rng.randint(1001, 1100) / 10:.2f}", rng.choice(["0", "2", "0.01"])) for _ in range(5)]
        b.apply(bids, asks, i)
        want_bid = max(b.bids) if b.bids else None
        want_ask = min(b.asks) if b.asks else None
        got_bid, got_ask = b.best_bid(), b.best_ask()
        assert (got_bid[0] if got_bid else None) == want_bid
        assert (got_ask[0] if got_ask else None) == want_ask
    assert len(b._bid_heap) <= 4 * len(b.bids) + 1024 + 5  # lazily deleted entries do not pile up


def test_levels_refuses_an_unknown_side() -> None:
    with pytest.raises(ValueError, match="'bid' or 'ask'"):
        OrderBook().levels("buy")
