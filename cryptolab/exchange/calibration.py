"""Compare the synthetic market's shape with a real recording (the README's table).

`shape_stats(trades)` measures what the synthetic market is calibrated on: trade and
taker-order inter-arrival quantiles (ms, as Binance stamps `T`), trades per second, fill-size
quantiles (in units of the symbol's notional, so symbols compare), the share of
`m` (buyer is maker = taker sells), taker orders (consecutive fills with the same `T`
and side), the share of them that are sweeps (fills at several prices) and `E − T`.
`simulate()` runs the market offline on a virtual clock, so a long stretch of synthetic
trades costs no waiting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal

from ..model import Trade
from .market import SyntheticMarket, symbol_spec
from .tradelog import SymbolLog

__all__ = ["shape_stats", "simulate", "comparison_table"]


def _q(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * p
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def shape_stats(trades: Iterable[Trade]) -> dict[str, float]:
    """Shape figures of one symbol's trades (any order; duplicates by id ignored)."""
    by_id = {t.trade_id: t for t in trades}
    rows = [by_id[k] for k in sorted(by_id)]
    if len(rows) < 2:
        raise ValueError("need at least two trades")
    t_ms = [r.trade_time_us // 1000 for r in rows]
    ia = [b - a for a, b in zip(t_ms, t_ms[1:])]
    out: dict[str, float] = {"trades": len(rows)}
    span = (t_ms[-1] - t_ms[0]) / 1000 or 1e-3
    out["trades_per_s_mean"] = len(rows) / span
    for p in (0.1, 0.5, 0.9, 0.99):
        out[f"interarrival_ms_p{int(p * 100)}"] = _q(ia, p)
    out["interarrival_zero_share"] = sum(1 for x in ia if x == 0) / len(ia)
    secs: dict[int, int] = {}
    for t in t_ms:
        secs[t // 1000] = secs.get(t // 1000, 0) + 1
    first, last = min(secs), max(secs)
    per_s = [secs.get(s, 0) for s in range(first, last + 1)]
    for p in (0.1, 0.5, 0.9, 0.99):
        out[f"trades_per_s_p{int(p * 100)}"] = _q(per_s, p)
    price0 = rows[0].price
    notional = [float(r.qty * price0) for r in rows]
    for p in (0.1, 0.5, 0.9, 0.99):
        out[f"size_quote_p{int(p * 100)}"] = _q(notional, p)
    out["share_m"] = sum(1 for r in rows if r.is_buyer_maker) / len(rows)
    events: list[list[Trade]] = [[rows[0]]]
    for r in rows[1:]:
        prev = events[-1][-1]
        if r.trade_time_us == prev.trade_time_us and r.is_buyer_maker == prev.is_buyer_maker:
            events[-1].append(r)
        else:
            events.append([r])
    starts = [e[0].trade_time_us // 1000 for e in events]
    oia = [b - a for a, b in zip(starts, starts[1:])]
    for p in (0.1, 0.5, 0.9, 0.99):
        out[f"order_interarrival_ms_p{int(p * 100)}"] = _q(oia, p)
    sweeps = sum(1 for e in events if len({x.price for x in e}) > 1)
    out["taker_orders"] = len(events)
    out["fills_per_order_mean"] = len(rows) / len(events)
    out["multi_fill_share"] = sum(1 for e in events if len(e) > 1) / len(events)
    out["sweep_share"] = sweeps / len(events)
    out["sweeps_per_1000_trades"] = 1000 * sweeps / len(rows)
    sides = [0 if e[0].is_buyer_maker else 1 for e in events]
    out["same_side_share"] = sum(1 for a, b in zip(sides, sides[1:]) if a == b) / max(1, len(sides) - 1)
    lag = [
        (r.event_time_us // 1000 - r.trade_time_us // 1000) for r in rows if r.event_time_us is not None
    ]
    if lag:
        for p in (0.5, 0.9, 0.99):
            out[f"e_minus_t_ms_p{int(p * 100)}"] = _q(lag, p)
    moves = [abs(b.price - a.price) / a.price * Decimal(10000) for a, b in zip(rows, rows[1:])]
    out["abs_move_bp_p90"] = float(_q([float(m) for m in moves], 0.9))
    return out


def simulate(
    symbol: str = "btcusdt", *, rate: float = 30.6, seconds: float = 650.0, seed: int = 1
) -> list[Trade]:
    """Synthetic trades of one symbol over `seconds` of virtual time (nothing waits)."""
    log = SymbolLog(symbol_spec(symbol))
    market = SyntheticMarket([log], rate=rate, seed=seed)
    t0 = 1_723_161_255_000_000
    market.start(t0)
    step = 100_000
    now = t0
    while now < t0 + int(seconds * 1e6):
        now += step
        market.generate(now)
        market.release(now)
    return log.trades()


_ROWS = [
    ("trades", "trades", "{:.0f}"),
    ("trades_per_s_mean", "trades/s mean", "{:.1f}"),
    ("interarrival_ms_p10", "inter-arrival p10 (ms)", "{:.0f}"),
    ("interarrival_ms_p50", "inter-arrival p50 (ms)", "{:.0f}"),
    ("interarrival_ms_p90", "inter-arrival p90 (ms)", "{:.0f}"),
    ("interarrival_ms_p99", "inter-arrival p99 (ms)", "{:.0f}"),
    ("interarrival_zero_share", "share of trades with the previous trade's T", "{:.3f}"),
    ("order_interarrival_ms_p10", "taker-order inter-arrival p10 (ms)", "{:.0f}"),
    ("order_interarrival_ms_p50", "taker-order inter-arrival p50 (ms)", "{:.0f}"),
    ("order_interarrival_ms_p90", "taker-order inter-arrival p90 (ms)", "{:.0f}"),
    ("order_interarrival_ms_p99", "taker-order inter-arrival p99 (ms)", "{:.0f}"),
    ("trades_per_s_p10", "trades in a second p10", "{:.0f}"),
    ("trades_per_s_p50", "trades in a second p50", "{:.0f}"),
    ("trades_per_s_p90", "trades in a second p90", "{:.0f}"),
    ("trades_per_s_p99", "trades in a second p99", "{:.0f}"),
    ("size_quote_p10", "fill size p10 (USDT)", "{:.2f}"),
    ("size_quote_p50", "fill size p50 (USDT)", "{:.2f}"),
    ("size_quote_p90", "fill size p90 (USDT)", "{:.0f}"),
    ("size_quote_p99", "fill size p99 (USDT)", "{:.0f}"),
    ("share_m", "share of m=true (taker sells)", "{:.3f}"),
    ("fills_per_order_mean", "fills per taker order, mean", "{:.2f}"),
    ("multi_fill_share", "taker orders with >1 fill", "{:.3f}"),
    ("sweep_share", "taker orders that sweep >1 price", "{:.3f}"),
    ("sweeps_per_1000_trades", "sweeps per 1000 trades", "{:.1f}"),
    ("same_side_share", "next taker order on the same side", "{:.3f}"),
    ("e_minus_t_ms_p50", "E − T p50 (ms)", "{:.0f}"),
    ("e_minus_t_ms_p90", "E − T p90 (ms)", "{:.0f}"),
    ("e_minus_t_ms_p99", "E − T p99 (ms)", "{:.0f}"),
    ("abs_move_bp_p90", "absolute price change between trades p90 (bp)", "{:.3f}"),
]


def comparison_table(
    real: dict[str, float], synth: dict[str, float], *, labels: tuple[str, str] = ("real", "synthetic")
) -> str:
    """A markdown table of two `shape_stats` results side by side."""
    lines = [f"| figure | {labels[0]} | {labels[1]} |", "|---|---:|---:|"]
    for key, name, fmt in _ROWS:
        if key in real or key in synth:
            a = fmt.format(real[key]) if key in real else "—"
            b = fmt.format(synth[key]) if key in synth else "—"
            lines.append(f"| {name} | {a} | {b} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the book
# The synthetic book's shape (exchange/book.py), measured by hand on the team's real BTCUSDT
# recording (hftbacktest_spot_btcusdt_20240808.gz + _20240809.gz, 2024-08-08 23:54 → 00:05 UTC,
# 650.6 s of exchange time): its inline REST snapshot (1000 levels a side) loaded into
# `cryptolab.book.OrderBook`, then all 6,495 `depth@100ms` diffs applied (no discontinuity, never
# crossed), each level update measured against the book *before* its diff; 73,174 bookTicker and
# 19,904 trades counted over the same span. The script is not in the tree (it reads ../shared);
# what it found:
#
#   rates /s: trades 30.59, bookTicker 112.47, depth diffs 9.98, level updates 458.2, update ids 702.6
#   update ids per diff: mean 70.4, p50 28, p90 171 ; level updates per diff: mean 45.9, p10 7,
#   p50 22, p90 104, p99 386 ; level updates per update id 0.652 (a level changed twice in 100 ms
#   is sent once) ; bids 45.9 % of level updates ; removals (qty 0) 47.8 %
#   spread: 1 tick after 99 % of diffs ; level updates inside the spread 4.1 %, at the best 3.2 %
#   bookTicker per update id 0.160 (trades account for 30.6 of the 112.5 /s)
#
# Distance of an updated level from its side's best price, in BTC ticks (0.01 at 61,800); the
# 7.3 % at the best or inside the spread are drawn apart (BOOK_P_AT_BEST, BOOK_P_INSIDE):
BOOK_DIST_TICKS_Q = [
    (0.0, 1),
    (0.05, 1),
    (0.1, 79),
    (0.15, 270),
    (0.2, 479),
    (0.25, 722),
    (0.3, 1020),
    (0.4, 1758),
    (0.5, 2625),
    (0.6, 4205),
    (0.7, 6277),
    (0.75, 7898),
    (0.8, 9878),
    (0.85, 11600),
    (0.9, 14062),
    (0.95, 38161),
    (0.97, 150702),
    (1.0, 300000),  # real p99 617,700 (10 %): capped at ~5 % of the price
]
# Quantity of a level set by a diff (not removed), BTC:
BOOK_QTY_Q = [
    (0.0, 0.00001),
    (0.02, 0.00009),
    (0.05, 0.0002),
    (0.1, 0.00059),
    (0.2, 0.00647),
    (0.3, 0.03311),
    (0.4, 0.04897),
    (0.5, 0.05396),
    (0.6, 0.0897),
    (0.7, 0.20217),
    (0.8, 0.37007),
    (0.9, 0.76304),
    (0.95, 2.02988),
    (0.98, 4.55329),
    (0.99, 19.17279),
    (0.999, 133.845),
    (1.0, 554.63987),
]
# Quantity at the best level (bookTicker B and A), BTC:
BOOK_TOP_QTY_Q = [
    (0.0, 0.00001),
    (0.05, 0.00013),
    (0.1, 0.00797),
    (0.2, 0.08961),
    (0.3, 0.24424),
    (0.4, 0.51736),
    (0.5, 1.14177),
    (0.6, 1.80716),
    (0.7, 2.52995),
    (0.8, 3.26693),
    (0.9, 4.24795),
    (0.95, 4.99667),
    (0.99, 6.62513),
    (1.0, 11.56208),
]
# Quantity of a level of the snapshot (1000 a side), BTC:
BOOK_SNAPSHOT_QTY_Q = [
    (0.0, 0.00009),
    (0.1, 0.0001),
    (0.2, 0.00014),
    (0.3, 0.00026),
    (0.4, 0.00044),
    (0.5, 0.00156),
    (0.6, 0.00809),
    (0.7, 0.04528),
    (0.8, 0.05398),
    (0.9, 0.36573),
    (0.95, 0.66361),
    (0.98, 1.14566),
    (0.99, 1.60578),
    (1.0, 5.8369),
]
# Distance between two neighbouring levels of the snapshot, BTC ticks:
BOOK_SPACING_TICKS_Q = [
    (0.0, 1),
    (0.1, 1),
    (0.2, 3),
    (0.3, 5),
    (0.4, 8),
    (0.5, 11),
    (0.6, 14),
    (0.7, 20),
    (0.8, 29),
    (0.9, 50),
    (0.95, 77),
    (0.98, 123),
    (0.99, 151),
    (1.0, 308),
]
BOOK_IDS_PER_S = 702.6
"""Update ids (book changes) per second at BTCUSDT's real pace."""
BOOK_TRADES_PER_S = 30.59
BOOK_QUOTES_PER_S = 112.47
BOOK_LEVEL_UPDATES_PER_S = 458.2
BOOK_P_BID = 0.459
BOOK_P_REMOVE = 0.478
BOOK_P_INSIDE = 0.041
BOOK_P_AT_BEST = 0.032
BOOK_SNAPSHOT_LEVELS = 1000
