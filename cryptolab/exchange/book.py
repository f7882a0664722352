"""The local exchange's synthetic book: one symbol's L2 book, consistent with its trades.

What changes it, one update id per change (Binance's `U..u` of a diff spans every id of its
window; a level changed twice in a window is sent once, with its last quantity):

* **Trades.** A trade takes liquidity at the best level: a buyer-maker trade (taker sells)
  hits the best bid, any other lifts the best ask. Levels better than the trade's price are
  taken away first (a sweep, or the market jumping), the level at the price holds at least
  the trade's quantity, shrinks by it (or goes), and the book refills the other side one tick
  away when the trade left the spread wider than a tick. So the book drifts with the price.
* **A background flow** of quotes and cancels, calibrated on the real BTCUSDT recording
  (`calibration.BOOK_*`): the side, the distance of the changed level from its side's best,
  new quantities, removals, improvements inside the spread, and changes at the best; some
  changes touch a level already changed in the same 100 ms (real books flicker), so fewer
  levels than ids reach the diff stream, as on Binance.

Prices and quantities are integers of 1e-8 (`tradelog.UNIT`), sorted price lists give the
best levels and the top N at once. The book keeps a bounded history (every change, with a
full copy of the book every `checkpoint_every` changes), so it can say what it was at any
recent update id (`book_at`). Pure: no I/O, no clock; the feed (`bookfeed`) drives it.
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from array import array
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from . import calibration as C
from .market import _quantile
from .tradelog import UNIT, SymbolSpec

__all__ = ["SyntheticBook", "BookDiff", "Top", "MIN_LEVELS", "MAX_LEVELS", "DEFAULT_HISTORY"]

MIN_LEVELS = 200
"""Levels a side never goes below (the far end refills)."""
MAX_LEVELS = 5000
"""Levels a side never goes above (Binance serves at most 5000 in a snapshot)."""
DEFAULT_HISTORY = 1_000_000
"""Changes kept for `book_at` (~24 min at BTCUSDT's real pace; 32 bytes each)."""
P_FLICKER = 0.30
"""Share of background changes that touch a level changed a moment ago (tuned so the diff
stream carries the recording's 0.65 level updates per update id)."""
P_AT_BEST = 0.06
"""Share of background changes that re-size the best level. Measured on diffs it is 3.2 % of level
updates (calibration.BOOK_P_AT_BEST), but the best level changes several times in 100 ms and a
diff carries it once: 6 % of changes gives the recording's bookTicker rate (112/s, 0.16 per id)."""
P_CLOSE = 0.25
"""While the spread is wider than a tick, share of background changes that quote inside it
(the recording's spread is one tick after 99 % of diffs and ≤ 2 ticks at 90 % of bookTickers)."""
_RECENT = 24
_N = 4096
_REF_PRICE = 61_800 * UNIT
_REF_TICK = UNIT // 100

Levels = list[tuple[int, int]]


class BookDiff(NamedTuple):
    """The levels changed by update ids first_id..last_id (bids best first, asks best first)."""

    first_id: int
    last_id: int
    event_us: int
    bids: Levels
    asks: Levels


class Top(NamedTuple):
    """The best levels after update id `update_id` (one bookTicker)."""

    update_id: int
    bid: int
    bid_qty: int
    ask: int
    ask_qty: int


def _table(q: Sequence[tuple[float, float]], scale: float) -> list[float]:
    return [_quantile(q, (i + 0.5) / _N, True) * scale for i in range(_N)]


class SyntheticBook:
    """One symbol's book (see the module doc); `update_id` is the id of the last change."""

    def __init__(self, spec: SymbolSpec, *, seed: int, first_id: int, price: int,
                 history: int = DEFAULT_HISTORY, checkpoint_every: int = 20_000) -> None:
        self.spec = spec
        self.tick, self.lot = spec.tick, spec.lot
        self.rng = random.Random(seed * 1_000_033 + zlib.crc32(b"book:" + spec.symbol.encode()))
        tick_scale = (_REF_TICK / _REF_PRICE) / (spec.tick / spec.price)
        notional = _REF_PRICE / spec.price  # one BTC is worth this many of our base units
        self._dist = [int(v * tick_scale) for v in _table(C.BOOK_DIST_TICKS_Q, 1.0)]
        self._space = [max(1, round(v * tick_scale)) for v in _table(C.BOOK_SPACING_TICKS_Q, 1.0)]
        self._qty = self._lots(_table(C.BOOK_QTY_Q, notional))
        self._top_qty = self._lots(_table(C.BOOK_TOP_QTY_Q, notional))
        self._snap_qty = self._lots(_table(C.BOOK_SNAPSHOT_QTY_Q, notional))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_px: list[int] = []  # ascending: the best bid is the last
        self.ask_px: list[int] = []  # ascending: the best ask is the first
        self.update_id = first_id
        self.history = max(10_000, history)
        self.checkpoint_every = checkpoint_every
        self._cp_ids: list[int] = []
        self._cps: list[tuple[dict[int, int], dict[int, int]]] = []
        self._log_first = first_id + 1  # id of the change at index 0 of the arrays
        self._sides = bytearray()
        self._prices = array("q")
        self._qtys = array("q")
        self._win_first: int | None = None
        self._wb: dict[int, int] = {}
        self._wa: dict[int, int] = {}
        self._sec_first: int | None = None
        self._sb: dict[int, int] = {}
        self._sa: dict[int, int] = {}
        self._recent: tuple[list[int], list[int]] = ([], [])  # (asks, bids) touched a moment ago
        self.quotes: list[Top] = []
        """bookTickers produced since the feed last took them."""
        self._seed(price)
        self._top = self._top_now()
        self._checkpoint()

    def _lots(self, values: list[float]) -> list[int]:
        lot = self.lot
        return [max(1, round(v * UNIT / lot)) * lot for v in values]

    def _draw(self, tab: list[int]) -> int:
        return tab[int(self.rng.random() * _N)]

    def _seed(self, price: int) -> None:
        """The book at its first id: snapshot-like levels around `price` (not changes)."""
        tick = self.tick
        p = max(price // tick * tick, (C.BOOK_SNAPSHOT_LEVELS + 10) * tick)
        b = p
        for i in range(C.BOOK_SNAPSHOT_LEVELS):
            if b < tick:
                break
            self.bids[b] = self._draw(self._top_qty if i == 0 else self._snap_qty)
            b -= self._draw(self._space) * tick
        a = p + tick
        for i in range(C.BOOK_SNAPSHOT_LEVELS):
            self.asks[a] = self._draw(self._top_qty if i == 0 else self._snap_qty)
            a += self._draw(self._space) * tick
        self.bid_px = sorted(self.bids)
        self.ask_px = sorted(self.asks)

    # ------------------------------------------------------------------ the one change
    def _top_now(self) -> tuple[int, int, int, int]:
        bp = self.bid_px[-1] if self.bid_px else 0
        ap = self.ask_px[0] if self.ask_px else 0
        return bp, self.bids.get(bp, 0), ap, self.asks.get(ap, 0)

    def _set(self, bid: bool, p: int, q: int) -> None:
        """Set one level (q 0 removes it): one update id."""
        side, px = (self.bids, self.bid_px) if bid else (self.asks, self.ask_px)
        if q:
            if p not in side:
                bisect.insort(px, p)
            side[p] = q
        else:
            if side.pop(p, None) is None:
                return
            del px[bisect.bisect_left(px, p)]
        self.update_id = uid = self.update_id + 1
        if self._win_first is None:
            self._win_first = uid
        (self._wb if bid else self._wa)[p] = q
        self._sides.append(bid)
        self._prices.append(p)
        self._qtys.append(q)
        recent = self._recent[bid]
        if len(recent) >= _RECENT:
            recent[uid % _RECENT] = p
        else:
            recent.append(p)
        if uid - self._cp_ids[-1] >= self.checkpoint_every:
            self._checkpoint()

    def _quote(self) -> None:
        """After one operation (a trade and what it took, one background change): a bookTicker
        if the top moved (a sweep's intermediate tops are not sent)."""
        top = self._top_now()
        if top != self._top:
            self._top = top
            self.quotes.append(Top(self.update_id, *top))

    def _checkpoint(self) -> None:
        self._cp_ids.append(self.update_id)
        self._cps.append((dict(self.bids), dict(self.asks)))
        if len(self._prices) > self.history and len(self._cp_ids) > 2:
            k = bisect.bisect_left(self._cp_ids, self._log_first + len(self._prices) // 2)
            k = min(max(1, k), len(self._cp_ids) - 1)
            n = self._cp_ids[k] + 1 - self._log_first
            del self._sides[:n], self._prices[:n], self._qtys[:n]
            self._log_first += n
            del self._cp_ids[:k], self._cps[:k]

    # ------------------------------------------------------------------ what changes it
    def trade(self, price: int, qty: int, buyer_maker: bool) -> None:
        """One trade: the taker takes `qty` at `price` from the best bid (buyer maker) or ask."""
        tick = self.tick
        bid = buyer_maker  # the maker's side
        own, other = (self.bid_px, self.ask_px) if bid else (self.ask_px, self.bid_px)
        while own and (own[-1] > price if bid else own[0] < price):  # better levels are gone
            self._set(bid, own[-1] if bid else own[0], 0)
        while other and (other[0] <= price if bid else other[-1] >= price):  # the spread stays open
            self._set(not bid, other[0] if bid else other[-1], 0)
        side = self.bids if bid else self.asks
        if side.get(price, 0) < qty:
            self._set(bid, price, qty + self._draw(self._top_qty))
        self._set(bid, price, side[price] - qty)
        refill = price + tick if bid else price - tick
        if refill > 0 and (not other or (other[0] > refill if bid else other[-1] < refill)):
            self._set(not bid, refill, self._draw(self._top_qty))
        self._fill_far()
        self._quote()

    def _fill_far(self) -> None:
        tick = self.tick
        while len(self.bid_px) < MIN_LEVELS and self.bid_px and self.bid_px[0] > tick:
            self._set(
                True, max(tick, self.bid_px[0] - self._draw(self._space) * tick), self._draw(self._snap_qty)
            )
        while len(self.ask_px) < MIN_LEVELS and self.ask_px:
            self._set(False, self.ask_px[-1] + self._draw(self._space) * tick, self._draw(self._snap_qty))

    def background(self, n: int) -> None:
        """n changes of the background flow (quotes and cancels)."""
        for _ in range(n):
            self._one()
            self._quote()

    def _one(self) -> None:
        r = self.rng.random
        bid = r() < C.BOOK_P_BID
        px = self.bid_px if bid else self.ask_px
        if not px or not self.bid_px or not self.ask_px:
            self._fill_far()
            return
        recent = self._recent[bid]
        if recent and r() < P_FLICKER:
            p = recent[int(r() * len(recent))]
            best = px[-1] if bid else px[0]
            if (
                p != best
                and p in (self.bids if bid else self.asks)
                and r() < C.BOOK_P_REMOVE
                and len(px) > MIN_LEVELS
            ):
                self._set(bid, p, 0)
            elif (p < self.ask_px[0]) if bid else (p > self.bid_px[-1]):
                self._set(bid, p, self._draw(self._qty))
            return
        tick = self.tick
        u = r()
        best = px[-1] if bid else px[0]
        room = (self.ask_px[0] - self.bid_px[-1]) // tick - 1
        if room > 0 and u < P_CLOSE:  # a spread wider than a tick is quoted into at once
            u = 0.0
        if u < C.BOOK_P_INSIDE + P_AT_BEST:
            if u < C.BOOK_P_INSIDE and room > 0:
                k = 1 + int(r() * room)
                self._set(bid, best + k * tick if bid else best - k * tick, self._draw(self._top_qty))
            else:
                self._set(bid, best, self._draw(self._top_qty))
            return
        d = self._draw(self._dist)
        p = best - d * tick if bid else best + d * tick
        if p <= 0:
            return
        if r() < C.BOOK_P_REMOVE and len(px) > MIN_LEVELS:
            i = bisect.bisect_left(px, p)
            if i >= len(px) or (i > 0 and p - px[i - 1] < px[i] - p):
                i -= 1
            if px[i] == best:  # the best level is taken by trades; a cancel there leaves some
                self._set(bid, best, self._draw(self._top_qty))
            else:
                self._set(bid, px[i], 0)
        elif len(px) >= MAX_LEVELS and p not in (self.bids if bid else self.asks):
            self._set(bid, px[0] if bid else px[-1], 0)  # full: the farthest level goes
        else:
            self._set(bid, p, self._draw(self._qty))

    # ------------------------------------------------------------------ what it publishes
    def close_window(self, event_us: int) -> BookDiff | None:
        """The 100 ms diff of every change since the last one (None when nothing changed)."""
        first = self._win_first
        if first is None:
            return None
        d = BookDiff(
            first, self.update_id, event_us, sorted(self._wb.items(), reverse=True), sorted(self._wa.items())
        )
        if self._sec_first is None:
            self._sec_first = first
        self._sb.update(self._wb)
        self._sa.update(self._wa)
        self._win_first, self._wb, self._wa = None, {}, {}
        return d

    def close_second(self, event_us: int) -> BookDiff | None:
        """The 1000 ms diff: every 100 ms diff since the last one, merged (call after close_window)."""
        first = self._sec_first
        if first is None:
            return None
        d = BookDiff(
            first, self.update_id, event_us, sorted(self._sb.items(), reverse=True), sorted(self._sa.items())
        )
        self._sec_first, self._sb, self._sa = None, {}, {}
        return d

    def take_quotes(self) -> list[Top]:
        q, self.quotes = self.quotes, []
        return q

    def top(self, n: int) -> tuple[Levels, Levels]:
        """The best n levels a side (bids highest first, asks lowest first)."""
        bids, asks = self.bids, self.asks
        return ([(p, bids[p]) for p in self.bid_px[: -n - 1 : -1]], [(p, asks[p]) for p in self.ask_px[:n]])

    @property
    def oldest_id(self) -> int:
        """The oldest update id `book_at` can answer."""
        return self._cp_ids[0]

    def book_at(self, update_id: int) -> tuple[dict[int, int], dict[int, int]]:
        """(bids, asks) as they were right after update id `update_id` (LookupError when not kept)."""
        if not self._cp_ids[0] <= update_id <= self.update_id:
            raise LookupError(
                f"update id {update_id} is not kept: {self.spec.symbol}'s book can say its levels "
                f"at ids {self._cp_ids[0]}…{self.update_id}"
            )
        k = bisect.bisect_right(self._cp_ids, update_id) - 1
        b, a = dict(self._cps[k][0]), dict(self._cps[k][1])
        sides, prices, qtys = self._sides, self._prices, self._qtys
        for i in range(self._cp_ids[k] + 1 - self._log_first, update_id + 1 - self._log_first):
            side = b if sides[i] else a
            if qtys[i]:
                side[prices[i]] = qtys[i]
            else:
                side.pop(prices[i], None)
        return b, a

    def books_at(self, update_ids: Sequence[int]) -> Iterator[tuple[int, dict[int, int], dict[int, int]]]:
        """(id, bids, asks) at each of `update_ids` (ascending), in one pass forward from the
        checkpoint before the first; the dicts are the walk's own (copy them to keep them)."""
        ids = sorted(update_ids)
        if not ids:
            return
        bids, asks = self.book_at(ids[0])
        at = ids[0]
        sides, prices, qtys, first = self._sides, self._prices, self._qtys, self._log_first
        for uid in ids:
            if uid > self.update_id:
                raise LookupError(f"update id {uid} is past {self.spec.symbol}'s book ({self.update_id})")
            for i in range(at + 1 - first, uid + 1 - first):
                side = bids if sides[i] else asks
                if qtys[i]:
                    side[prices[i]] = qtys[i]
                else:
                    side.pop(prices[i], None)
            at = uid
            yield uid, bids, asks

    def crossed(self) -> bool:
        return bool(self.bid_px and self.ask_px and self.bid_px[-1] >= self.ask_px[0])


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
