"""The synthetic market: deterministic, Binance-shaped trade flow for any symbol.

Shape (calibrated on a real BTCUSDT recording of 2024-08-08/09; see
`cryptolab.exchange.calibration` and the README's table):

* **Arrivals.** Taker orders ("events") arrive as a three-kernel Hawkes process
  (self-exciting: activity raises the intensity for ~20 ms, ~150 ms and ~12 s at the
  recording's pace), time-scaled so the mean trade rate is what was asked (a few/s …
  more than 100k/s).
* **Fills.** Each event is one aggressor order filled against 1…hundreds of maker
  orders: all its fills share `T` and the side, ids are consecutive; 10 % of second
  fills and 26 % of later ones walk to a further price level, so large events are
  sweeps.
* **Sizes.** Heavy-tailed fill sizes from the recording's quantile function (with its
  lumps at round sizes), scaled to each symbol's notional and lot.
* **Price.** A taker order on the same side as the previous one usually trades at the
  same level; otherwise the price jumps *in its direction* (order-flow imbalance moves
  the price); the other side trades across the spread (one tick).
* **Sides.** The side persists (P(same side as previous order) ≈ 0.70).
* **Event time `E`** lags `T` by the recording's delays and never goes backwards.

Everything is drawn from one `random.Random` per symbol seeded from `seed` and the
symbol name, so a seed always prints the same ids, prices, sizes, sides and relative
times. Prices and quantities are integers of 1e-8 (see `tradelog`).
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections import deque
from collections.abc import Mapping, Sequence

from .tradelog import UNIT, SymbolLog, SymbolSpec

__all__ = ["SyntheticMarket", "symbol_spec", "DEFAULT_SYMBOLS", "KNOWN_SPECS"]

DEFAULT_SYMBOLS = ["btcusdt", "ethusdt"]
MAX_PER_CALL = 20_000  # trades per symbol printed in one generate() call
MAX_LAG_US = 1_000_000  # how far the market may fall behind the clock before it skips ahead


def _u(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * UNIT + int((frac + "00000000")[:8])


# Price level, tick and lot as on Binance spot (2024). Tick × lot keeps ≤ 8 decimals,
# so every quote quantity is exact in Binance's 8-decimal strings.
KNOWN_SPECS: dict[str, SymbolSpec] = {
    s.symbol: s
    for s in (
        SymbolSpec("BTCUSDT", "BTC", "USDT", _u("61800"), _u("0.01"), _u("0.00001")),
        SymbolSpec("ETHUSDT", "ETH", "USDT", _u("2600"), _u("0.01"), _u("0.0001")),
        SymbolSpec("SOLUSDT", "SOL", "USDT", _u("150"), _u("0.01"), _u("0.001")),
        SymbolSpec("BNBUSDT", "BNB", "USDT", _u("550"), _u("0.01"), _u("0.001")),
        SymbolSpec("XRPUSDT", "XRP", "USDT", _u("0.55"), _u("0.0001"), _u("1")),
        SymbolSpec("DOGEUSDT", "DOGE", "USDT", _u("0.1"), _u("0.00001"), _u("1")),
        SymbolSpec("ADAUSDT", "ADA", "USDT", _u("0.35"), _u("0.0001"), _u("0.1")),
        SymbolSpec("ETHBTC", "ETH", "BTC", _u("0.042"), _u("0.00001"), _u("0.0001")),
    )
}
_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def symbol_spec(symbol: str) -> SymbolSpec:
    """The listing of a symbol: a known one, or a plausible made-up one (stable per name)."""
    name = symbol.upper()
    if name in KNOWN_SPECS:
        return KNOWN_SPECS[name]
    if not (2 <= len(name) <= 20 and name.isalnum() and name.isascii()):
        raise ValueError(f"not a symbol name: {symbol!r}")
    quote = next((q for q in _QUOTES if name.endswith(q) and len(name) > len(q)), name[-4:])
    base = name[: len(name) - len(quote)] or name
    h = zlib.crc32(name.encode())
    price = (1 + h % 9000) * _u("0.01") * 10  # 0.1 … 900.0
    return SymbolSpec(name, base, quote, price, _u("0.001"), _u("0.01"))


# ---------------------------------------------------------------------------- shape
# Quantile functions measured on the recording (BTCUSDT, 19,904 trades, 7,135 taker
# orders). Each is a list of (cumulative probability, value); values between points
# are interpolated (geometrically for sizes), so flat stretches keep the real lumps.

# Fill size in BTC lots of 0.00001.
_QTY_Q = [
    (0.0, 1), (0.01, 2), (0.02, 6), (0.05, 9), (0.2, 9), (0.25, 10), (0.3, 14),
    (0.35, 20), (0.4, 30), (0.45, 40), (0.5, 67), (0.55, 106), (0.6, 240), (0.65, 500),
    (0.7, 900), (0.75, 1403), (0.8, 2000), (0.85, 3731), (0.9, 5761), (0.93, 8198),
    (0.95, 10000), (0.97, 16000), (0.98, 24648), (0.99, 32425), (0.995, 38664),
    (0.998, 60000), (0.999, 72486), (1.0, 700000),
]
# Fills per taker order.
_FILLS_Q = [
    (0.6819, 1), (0.7909, 2), (0.8352, 3), (0.8669, 4), (0.8886, 5), (0.9081, 6),
    (0.9252, 7), (0.9544, 10), (0.9808, 16), (0.9912, 22), (0.9951, 28), (0.9985, 50),
    (0.9994, 150), (1.0, 400),
]
# Step between two price levels inside one sweep, in BTC ticks.
_STEP_Q = [(0.0, 1), (0.1, 1), (0.25, 3), (0.5, 14), (0.75, 52), (0.9, 125), (0.99, 326), (1.0, 900)]
# Jump of a same-side order's first price away from the previous print, in BTC ticks.
_JUMP_Q = [(0.0, 1), (0.1, 1), (0.25, 12), (0.5, 79), (0.75, 171), (0.9, 245), (0.99, 630), (1.0, 1500)]
# Extra delay of E after T, ms (before the "E never goes backwards" rule).
_DELAY_Q = [(0.0, 0), (0.15, 0.5), (0.6, 1), (0.7, 1.5), (0.75, 3), (0.8, 6), (0.85, 7),
            (0.9, 10), (0.95, 35), (0.98, 100), (0.99, 150), (1.0, 210)]

P_SAME_SIDE = 0.70  # side persistence between consecutive taker orders
P_STEP_SECOND = 0.10  # the 2nd fill of an order is at a further price level
P_STEP_LATER = 0.26  # any later fill is at a further price level
P_NO_JUMP = 0.60  # same-side order trades where the previous one ended
P_JUMP_AGAINST = 0.05  # of the jumps, share against the order's direction
P_CROSS_FLAT = 0.05  # opposite-side order at the same price (no spread)
P_CROSS_JUMP = 0.06  # opposite-side order jumping further than the spread

# Hawkes process at the recording's pace (11 taker orders/s): three exponential kernels
# (branching ratio, decay /s) and the baseline that gives that pace. Fitted on the
# inter-arrival and trades-per-second quantiles of the recording.
_KERNELS0 = [(0.358, 57.27), (0.316, 6.755), (0.150, 0.0830)]
_EVENTS0 = 11.0
_MU0 = _EVENTS0 * (1 - sum(n for n, _ in _KERNELS0))
_REF_PRICE = _u("61800")
_REF_TICK = _u("0.01")
_REF_LOT = _u("0.00001")


def _quantile(table: Sequence[tuple[float, float]], u: float, geometric: bool) -> float:
    i = bisect.bisect_left(table, (u, -math.inf))
    if i <= 0:
        return table[0][1]
    if i >= len(table):
        return table[-1][1]
    (u0, v0), (u1, v1) = table[i - 1], table[i]
    w = (u - u0) / (u1 - u0) if u1 > u0 else 1.0
    if geometric and v0 > 0 and v1 > 0:
        return v0 * float((v1 / v0) ** w)
    return v0 + (v1 - v0) * w


def _fills(u: float) -> int:
    """Fills of one taker order: the recording's exact frequencies up to 7, then its tail."""
    for cum, k in _FILLS_Q:
        if k > 7:
            break
        if u < cum:
            return k
    return int(_quantile(_FILLS_Q, u, True) + 0.5)


_MEAN_FILLS = sum(_fills((i + 0.5) / 20_000) for i in range(20_000)) / 20_000

# The quantile functions tabulated at 8192 points: a draw is one list index.
_N = 8192
_QTY_TAB = [_quantile(_QTY_Q, (i + 0.5) / _N, True) for i in range(_N)]
_STEP_TAB = [_quantile(_STEP_Q, (i + 0.5) / _N, True) for i in range(_N)]
_JUMP_TAB = [_quantile(_JUMP_Q, (i + 0.5) / _N, True) for i in range(_N)]
_DELAY_US_TAB = [int(_quantile(_DELAY_Q, (i + 0.5) / _N, False) * 1000) for i in range(_N)]


class _SymbolFlow:
    """Generator state of one symbol."""

    def __init__(self, log: SymbolLog, rate: float, seed: int) -> None:
        spec = log.spec
        self.log = log
        self.sym = spec.symbol.encode()
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(spec.symbol.encode()))
        self.tick = spec.tick
        self.lot = spec.lot
        # price moves are relative: a BTC tick at 61,800 is this many of our ticks
        self.tick_scale = (_REF_TICK / _REF_PRICE) / (spec.tick / spec.price)
        # sizes are notional: a BTC lot is this many of our units
        self.qty_scale = (_REF_LOT * _REF_PRICE / spec.price) / UNIT
        self.qty_tab = [max(1, round(v * self.qty_scale * UNIT / self.lot)) * self.lot for v in _QTY_TAB]
        self.price = spec.price // spec.tick * spec.tick
        self.buy = True
        self.first_id = 1
        self.next_id = 1
        self.last_e = 0
        self.t = 0.0  # time of the last event, µs (absolute)
        self.x = [0.0 for _ in _KERNELS0]  # kernel excitations, events/µs
        self.pending: deque[int] = deque()  # log indexes not yet released (E in the future)
        self.set_rate(rate)
        self.next_t: float | None = None

    def set_rate(self, rate: float) -> None:
        c = max(rate, 1e-9) / _MEAN_FILLS / _EVENTS0 / 1e6  # time scale per µs
        old = getattr(self, "scale", None)
        self.scale = c
        self.mu = _MU0 * c
        self.alpha = [n * b * c for n, b in _KERNELS0]
        self.beta = [b * c for _, b in _KERNELS0]
        if old:
            self.x = [x * c / old for x in self.x]
        self.next_t = None

    def start(self, t_us: float) -> None:
        self.t = t_us

    def shift(self, dt_us: float) -> None:
        self.t += dt_us
        if self.next_t is not None:
            self.next_t += dt_us

    def _draw_next(self) -> float:
        """Next event time by thinning (exact for exponential kernels)."""
        rand, log, exp = self.rng.random, math.log, math.exp
        t = self.t
        x0, x1, x2 = self.x
        b0, b1, b2 = self.beta
        mu = self.mu
        while True:
            lam = mu + x0 + x1 + x2
            w = -log(1.0 - rand()) / lam
            t += w
            x0 *= exp(-b0 * w)
            x1 *= exp(-b1 * w)
            x2 *= exp(-b2 * w)
            if rand() * lam <= mu + x0 + x1 + x2:
                a0, a1, a2 = self.alpha
                self.x = [x0 + a0, x1 + a1, x2 + a2]
                self.t = t
                return t

    def _ticks(self, btc_ticks: float) -> int:
        v = btc_ticks * self.tick_scale
        n = int(v)
        if self.rng.random() < v - n:
            n += 1
        return n

    def event(self, t_us: int, sink: deque[int] | list[int], max_id: int | None) -> None:
        """Print one taker order (1+ fills) at time t_us."""
        rng = self.rng
        buy = self.buy if rng.random() < P_SAME_SIDE else not self.buy
        direction = 1 if buy else -1
        price = self.price
        if buy == self.buy:
            if rng.random() >= P_NO_JUMP:
                j = self._ticks(_JUMP_TAB[int(rng.random() * _N)])
                price += (-direction if rng.random() < P_JUMP_AGAINST else direction) * j * self.tick
        else:
            u = rng.random()
            if u < P_CROSS_FLAT:
                pass
            elif u < P_CROSS_FLAT + P_CROSS_JUMP:
                price += direction * max(1, self._ticks(_JUMP_TAB[int(rng.random() * _N)])) * self.tick
            else:
                price += direction * self.tick
        k = _fills(rng.random())
        e_us = max(self.last_e, t_us + _DELAY_US_TAB[int(rng.random() * _N)])
        self.last_e = e_us
        floor = 100 * self.tick
        log = self.log
        maker = not buy
        qty_tab, rand, append = self.qty_tab, rng.random, log.append
        for n in range(k):
            if max_id is not None and self.next_id > max_id:
                break
            if n and rand() < (P_STEP_SECOND if n == 1 else P_STEP_LATER):
                price += direction * self._ticks(_STEP_TAB[int(rand() * _N)]) * self.tick
            if price < floor:
                price = floor + (floor - price)
            sink.append(append(self.next_id, price, qty_tab[int(rand() * _N)], t_us, e_us, maker))
            self.next_id += 1
        self.price = price
        self.buy = buy


class SyntheticMarket:
    """The synthetic trade flow of several symbols; `advance(now)` prints what is due."""

    def __init__(
        self,
        logs: Sequence[SymbolLog],
        *,
        rate: float = 200.0,
        seed: int = 1,
        max_trades: int | None = None,
        first_ids: Mapping[str, int] | None = None,
    ) -> None:
        self.logs = list(logs)
        self.rate = float(rate)
        self.seed = int(seed)
        self.max_trades = max_trades
        per = self.rate / max(1, len(self.logs))
        self.flows = [_SymbolFlow(log, per, self.seed) for log in self.logs]
        # a market that continues an earlier one numbers its trades on from there
        for f in self.flows:
            f.next_id = f.first_id = int((first_ids or {}).get(f.log.spec.symbol, 1))
        self.started = False
        self.finished = False  # every symbol reached max_trades
        self.resyncs = 0  # times the market fell too far behind the clock and skipped ahead

    def set_rate(self, rate: float) -> None:
        """Change the mean total rate (trades/s, split equally between symbols) from now on."""
        self.rate = float(rate)
        per = self.rate / max(1, len(self.flows))
        for f in self.flows:
            f.set_rate(per)

    def start(self, now_us: int) -> None:
        for f in self.flows:
            f.start(float(now_us))
        self.started = True

    def shift(self, dt_us: int) -> None:
        """Move the future by dt (after a pause: no burst of catch-up trades)."""
        for f in self.flows:
            f.shift(float(dt_us))

    def generate(self, now_us: int) -> None:
        """Print (into the logs) every trade whose T <= now.

        At most `MAX_PER_CALL` trades per symbol per call, so the server's loop keeps
        turning; a market more than `MAX_LAG_US` behind the clock (asked for more trades/s
        than this machine can print) skips ahead instead of printing in the past.
        """
        if not self.started:
            self.start(now_us)
        done = 0
        for f in self.flows:
            max_id = None if self.max_trades is None else f.first_id + self.max_trades - 1
            if max_id is not None and f.next_id > max_id:
                done += 1
                continue
            budget = MAX_PER_CALL
            while budget > 0:
                if f.next_t is None:
                    f.next_t = f._draw_next()
                if f.next_t > now_us:
                    break
                before = f.next_id
                f.event(int(f.next_t), f.pending, max_id)
                budget -= f.next_id - before
                f.next_t = None
                if max_id is not None and f.next_id > max_id:
                    break
            if f.next_t is not None and now_us - f.next_t > MAX_LAG_US:
                f.shift(now_us - f.next_t)
                self.resyncs += 1
        self.finished = self.max_trades is not None and done == len(self.flows)

    def release(self, now_us: int) -> list[tuple[SymbolLog, int]]:
        """Trades printed whose E <= now, in E order across symbols (what streams send now)."""
        out: list[tuple[SymbolLog, int]] = []
        for f in self.flows:
            pending = f.pending
            if not pending:
                continue
            events = f.log.events
            log = f.log
            while pending and events[pending[0]] <= now_us:
                out.append((log, pending.popleft()))
        if len(self.flows) > 1 and out:
            out.sort(key=lambda li: li[0].events[li[1]])
        return out

    def pending_count(self) -> int:
        return sum(len(f.pending) for f in self.flows)


def print_history(market: SyntheticMarket, start_us: int, end_us: int, rate: float) -> None:
    """Print a past into the market's logs: trades with T in [start_us, end_us) at `rate`
    trades/s in all (split over the symbols), then carry on live from `end_us`.

    Deterministic for a seed and a start: the same draws as a live market, only placed in
    the past. The ids run on into the live stream (the live market numbers on from here).
    Nothing of the past is streamed: it is already history when the server starts.
    """
    if market.started:
        raise RuntimeError("print_history() must run before the market starts")
    per = rate / max(1, len(market.flows))
    live_rate = market.rate / max(1, len(market.flows))
    sink: list[int] = []
    for f in market.flows:
        f.set_rate(per)
        f.start(float(start_us))
        while True:
            t = f._draw_next()
            if t >= end_us:
                break
            f.event(int(t), sink, None)
            sink.clear()
        f.x = [0.0 for _ in f.x]
        f.set_rate(live_rate)
        f.pending.clear()
        f.next_t = None
        f.last_e = max(f.last_e, 0)
