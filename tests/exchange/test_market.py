"""The synthetic market's properties, on a virtual clock (no server, no waiting)."""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal

import pytest

from cryptolab.exchange.calibration import comparison_table, shape_stats, simulate
from cryptolab.exchange.market import KNOWN_SPECS, symbol_spec
from cryptolab.exchange.tradelog import UNIT


def test_listing_filters_hold_for_every_trade() -> None:
    for sym in ("btcusdt", "ethusdt", "dogeusdt", "pepeusdt"):
        spec = symbol_spec(sym)
        tick, lot = Decimal(spec.tick) / UNIT, Decimal(spec.lot) / UNIT
        trades = simulate(sym, rate=400, seconds=20, seed=5)
        assert trades and all(t.symbol == sym.upper() for t in trades)
        assert all(t.price % tick == 0 and t.qty % lot == 0 and t.price > 0 and t.qty > 0 for t in trades)
        assert [t.trade_id for t in trades] == list(range(1, len(trades) + 1))
        assert all(
            a.trade_time_us <= b.trade_time_us and a.event_time_us <= b.event_time_us
            for a, b in zip(trades, trades[1:])
        )
        assert all(t.event_time_us >= t.trade_time_us for t in trades)
    assert symbol_spec("pepeusdt") == symbol_spec("PEPEUSDT") and "BTCUSDT" in KNOWN_SPECS
    with pytest.raises(ValueError):
        symbol_spec("btc-usdt!")


@pytest.mark.parametrize("rate", [5, 500, 50_000])
def test_mean_rate_follows_the_request(rate: float) -> None:
    seconds = {5: 600, 500: 60, 50_000: 2}[rate]
    trades = simulate("btcusdt", rate=rate, seconds=seconds, seed=2)
    assert 0.7 * rate <= len(trades) / seconds <= 1.3 * rate


def test_bursts_sweeps_heavy_tails_and_impact() -> None:
    trades = simulate("btcusdt", rate=300, seconds=120, seed=7)
    st = shape_stats(trades)
    # sweeps: one taker order (same T and side, consecutive ids) filled at several prices, walking away
    sweeps = 0
    i = 0
    while i < len(trades):
        j = i
        while (
            j + 1 < len(trades)
            and trades[j + 1].trade_time_us == trades[i].trade_time_us
            and trades[j + 1].is_buyer_maker == trades[i].is_buyer_maker
        ):
            j += 1
        prices = [t.price for t in trades[i : j + 1]]
        if len(set(prices)) > 1:
            sweeps += 1
            buy = not trades[i].is_buyer_maker
            assert prices == sorted(prices, reverse=not buy), "a sweep walks the book away from the taker"
        i = j + 1
    assert sweeps > 100 and st["sweep_share"] > 0.05
    # heavy-tailed sizes
    assert st["size_quote_p99"] / st["size_quote_p50"] > 50
    # clustered arrivals: counts per 100 ms far more dispersed than a Poisson process's
    per = Counter(t.trade_time_us // 100_000 for t in trades)
    counts = [per.get(k, 0) for k in range(min(per), max(per) + 1)]
    mean = sum(counts) / len(counts)
    var = sum((c - mean) ** 2 for c in counts) / len(counts)
    assert var / mean > 5
    # buyers push the price up, sellers down: signed volume per second vs the price change
    flow: dict[int, Decimal] = {}
    last: dict[int, Decimal] = {}
    for t in trades:
        s = t.trade_time_us // 1_000_000
        flow[s] = flow.get(s, Decimal(0)) + (-t.qty if t.is_buyer_maker else t.qty)
        last[s] = t.price
    secs = sorted(last)
    xs = [float(flow[s]) for s in secs[1:]]
    ys = [float(last[s] - last[p]) for p, s in zip(secs, secs[1:])]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    corr = cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    assert corr > 0.2
    assert 0.3 < st["share_m"] < 0.7 and 0.5 < st["same_side_share"] < 0.9
    table = comparison_table(st, shape_stats(simulate("btcusdt", rate=300, seconds=60, seed=8)))
    assert table.startswith("| figure | real | synthetic |") and "sweeps per 1000 trades" in table
