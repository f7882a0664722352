"""Every trade the local exchange printed, per symbol, and everything derived from it.

A `SymbolLog` keeps the trades of one symbol in compact integer arrays (prices and
quantities in units of 1e-8, Binance's 8 decimals; times in µs), so the exchange can
hold millions of trades and still answer any id range exactly. From the same arrays
it derives the wire payloads (`encode_trade`), the REST rows (trades, aggTrades) and
klines, all with integer arithmetic: nothing here ever goes through a float.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass
from decimal import Decimal

from ..binance.rest import AggTrade, Kline, RestTrade
from ..model import Trade

__all__ = [
    "UNIT",
    "SymbolSpec",
    "SymbolLog",
    "fmt8",
    "to_units",
    "KLINE_INTERVALS_MS",
    "encode_trade",
]

UNIT = 100_000_000
"""Prices and quantities are integers of 1e-8 (Binance prints 8 decimals)."""

KLINE_INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}


def fmt8(units: int) -> str:
    """Integer units of 1e-8 → Binance's decimal string with 8 decimals ("61837.63000000")."""
    if units < 0:
        return "-" + fmt8(-units)
    return f"{units // UNIT}.{units % UNIT:08d}"


def fmt_scaled(value: int, scale_digits: int) -> str:
    """An integer holding `scale_digits` decimals → string with 8 decimals, rounded half-even."""
    if scale_digits > 8:
        div = 10 ** (scale_digits - 8)
        q, r = divmod(value, div)
        if r * 2 > div or (r * 2 == div and q % 2 == 1):
            q += 1
        value = q
    elif scale_digits < 8:
        value *= 10 ** (8 - scale_digits)
    return fmt8(value)


def to_units(text: str | Decimal) -> int:
    """A decimal string/Decimal with at most 8 decimals → integer units of 1e-8 (exact)."""
    d = Decimal(text)
    u = d.scaleb(8)
    if u != u.to_integral_value():
        raise ValueError(f"{text!r} has more than 8 decimals")
    return int(u)


@dataclass(frozen=True)
class SymbolSpec:
    """A symbol the exchange lists: name, assets and exchange filters (units of 1e-8)."""

    symbol: str  # upper case, e.g. BTCUSDT
    base: str
    quote: str
    price: int  # start price (synthetic market), units
    tick: int  # tick size, units
    lot: int  # lot (step) size, units

    @property
    def stream(self) -> str:
        return self.symbol.lower()

    def exchange_info(self) -> dict[str, object]:
        """This symbol's entry of /api/v3/exchangeInfo (the fields clients read)."""
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt8(self.tick),
                    "maxPrice": fmt8(1_000_000 * UNIT),
                    "tickSize": fmt8(self.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt8(self.lot),
                    "maxQty": fmt8(9_000 * UNIT),
                    "stepSize": fmt8(self.lot),
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


_FMT_CACHE: dict[int, bytes] = {}


def fmt8b(units: int) -> bytes:
    """`fmt8` as bytes, cached (prices and sizes repeat a lot)."""
    b = _FMT_CACHE.get(units)
    if b is None:
        if len(_FMT_CACHE) > 200_000:
            _FMT_CACHE.clear()
        b = _FMT_CACHE[units] = fmt8(units).encode()
    return b


def encode_trade(symbol: bytes, tid: int, p: int, q: int, t: int, e: int, m: bool) -> bytes:
    """The raw `@trade` payload exactly as Binance prints it (times in the caller's unit)."""
    return b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
        e,
        symbol,
        tid,
        fmt8b(p),
        fmt8b(q),
        t,
        b"true" if m else b"false",
    )


class SymbolLog:
    """The trades one symbol printed, in id order (ids increasing, times non-decreasing)."""

    def __init__(self, spec: SymbolSpec, *, source: str = "simulator") -> None:
        self.spec = spec
        self.source = source
        self.ids = array("q")
        self.prices = array("q")
        self.qtys = array("q")
        self.times = array("q")  # T, µs
        self.events = array("q")  # E, µs
        self.makers = bytearray()  # m
        # aggTrades: index of the first trade of each aggregate (consecutive trades with
        # the same T, price and side form one aggregate, as one taker order at one level).
        self.agg_starts = array("q")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def last_id(self) -> int | None:
        return self.ids[-1] if self.ids else None

    def append(self, tid: int, p: int, q: int, t_us: int, e_us: int, m: bool) -> int:
        """Record one printed trade; return its index."""
        i = len(self.ids)
        if not (i and self.times[i - 1] == t_us and self.prices[i - 1] == p and self.makers[i - 1] == m):
            self.agg_starts.append(i)
        self.ids.append(tid)
        self.prices.append(p)
        self.qtys.append(q)
        self.times.append(t_us)
        self.events.append(e_us)
        self.makers.append(1 if m else 0)
        return i

    # ------------------------------------------------------------------ lookups
    def index_of_id(self, tid: int) -> int:
        """Index of the first trade with id >= tid."""
        return bisect.bisect_left(self.ids, tid)

    def index_of_time(self, t_us: int) -> int:
        """Index of the first trade with T >= t_us."""
        return bisect.bisect_left(self.times, t_us)

    def trade(self, i: int, *, ms: bool = False) -> Trade:
        """The i-th trade as the normalized `Trade` row (exact Decimals)."""
        t = self.times[i]
        e = self.events[i]
        if ms:
            t, e = t // 1000 * 1000, e // 1000 * 1000
        return Trade(
            exchange="binance",
            symbol=self.spec.symbol,
            trade_id=self.ids[i],
            price=Decimal(fmt8(self.prices[i])),
            qty=Decimal(fmt8(self.qtys[i])),
            is_buyer_maker=bool(self.makers[i]),
            trade_time_us=t,
            event_time_us=e,
            received_at_us=None,
            source=self.source,
        )

    def trades(self, start: int = 0, stop: int | None = None, *, ms: bool = False) -> list[Trade]:
        """Trades with index in [start, stop) as `Trade` rows."""
        stop = len(self.ids) if stop is None else min(stop, len(self.ids))
        return [self.trade(i, ms=ms) for i in range(max(0, start), stop)]

    # ------------------------------------------------------------------ REST rows
    def rest_trade(self, i: int, micro: bool) -> RestTrade:
        """One row of /api/v3/trades or /historicalTrades."""
        p, q = self.prices[i], self.qtys[i]
        return {
            "id": self.ids[i],
            "price": fmt8(p),
            "qty": fmt8(q),
            "quoteQty": fmt_scaled(p * q, 16),
            "time": self.times[i] if micro else self.times[i] // 1000,
            "isBuyerMaker": bool(self.makers[i]),
            "isBestMatch": True,
        }

    def agg_bounds(self, a: int) -> tuple[int, int]:
        """Trade index range [first, last] of aggregate number a."""
        first = self.agg_starts[a]
        last = self.agg_starts[a + 1] - 1 if a + 1 < len(self.agg_starts) else len(self.ids) - 1
        return first, last

    def rest_agg(self, a: int, micro: bool) -> AggTrade:
        """One row of /api/v3/aggTrades (aggregate ids count from 0)."""
        first, last = self.agg_bounds(a)
        qty = sum(self.qtys[first : last + 1])
        return {
            "a": a,
            "p": fmt8(self.prices[first]),
            "q": fmt8(qty),
            "f": self.ids[first],
            "l": self.ids[last],
            "T": self.times[first] if micro else self.times[first] // 1000,
            "m": bool(self.makers[first]),
            "M": True,
        }

    def agg_index_of_time(self, t_us: int) -> int:
        """Index of the first aggregate whose T >= t_us."""
        i = self.index_of_time(t_us)
        return bisect.bisect_left(self.agg_starts, i)

    # ------------------------------------------------------------------ klines
    def klines(self, interval_ms: int, start_ms: int, end_ms: int, limit: int, micro: bool) -> list[Kline]:
        """Klines whose open time is in [start_ms, end_ms], at most `limit`, Binance's layout.

        Every interval from the first one holding a trade is returned, empty ones with
        the previous close as OHLC and zero volume (as Binance does while a symbol trades).
        """
        out: list[Kline] = []
        if not self.ids:
            return out
        first_open = self.times[0] // 1000 // interval_ms * interval_ms
        last_open = self.times[-1] // 1000 // interval_ms * interval_ms
        open_ms = max(start_ms // interval_ms * interval_ms, first_open)
        if open_ms < start_ms:
            open_ms += interval_ms
        stop_open = min(end_ms, last_open)
        i = self.index_of_time(open_ms * 1000)
        prev_close: int | None = self.prices[i - 1] if i > 0 else None
        n = len(self.ids)
        times, prices, qtys, makers = self.times, self.prices, self.qtys, self.makers
        k = 1000 if micro else 1
        while open_ms <= stop_open and len(out) < limit:
            end_us = (open_ms + interval_ms) * 1000
            j = i
            if j < n and times[j] < end_us:
                o = prices[j]
                h = lo = o
                vol = quote = tb_vol = tb_quote = 0
                while j < n and times[j] < end_us:
                    p, q = prices[j], qtys[j]
                    if p > h:
                        h = p
                    elif p < lo:
                        lo = p
                    vol += q
                    quote += p * q
                    if not makers[j]:
                        tb_vol += q
                        tb_quote += p * q
                    j += 1
                c = prices[j - 1]
                count = j - i
            else:
                assert prev_close is not None
                o = h = lo = c = prev_close
                vol = quote = tb_vol = tb_quote = count = 0
            out.append(
                [
                    open_ms * k,
                    fmt8(o),
                    fmt8(h),
                    fmt8(lo),
                    fmt8(c),
                    fmt8(vol),
                    (open_ms + interval_ms) * k - 1,
                    fmt_scaled(quote, 16),
                    count,
                    fmt8(tb_vol),
                    fmt_scaled(tb_quote, 16),
                    "0",
                ]
            )
            prev_close = c
            i = j
            open_ms += interval_ms
        return out
