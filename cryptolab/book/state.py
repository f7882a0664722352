"""An exact L2 order book: price → quantity per side, with the best levels at hand.

Prices and quantities are `Decimal` (made from the exchange's strings, exact). The best bid and
ask are kept with heaps and lazy deletion, so an update costs O(log n) and reading the top O(1)
amortised — a book of thousands of levels stays cheap to follow at hundreds of thousands of level
updates per second. One class for every book cryptolab keeps: the capture's, the local
exchange's, and the one rebuilt from storage.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from decimal import Decimal

__all__ = ["OrderBook", "Side"]

Side = dict[Decimal, Decimal]

_ZERO = Decimal(0)


class OrderBook:
    """One symbol's book as of `update_id` (None until a snapshot is loaded)."""

    __slots__ = ("bids", "asks", "update_id", "_bid_heap", "_ask_heap")

    def __init__(self) -> None:
        self.bids: Side = {}
        self.asks: Side = {}
        self.update_id: int | None = None
        self._bid_heap: list[Decimal] = []  # negated prices: heapq is a min-heap
        self._ask_heap: list[Decimal] = []

    # ---- changing it

    def load(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]], update_id: int) -> None:
        """Replace the whole book by a snapshot's levels (zero quantities are left out)."""
        self.bids = {p: q for p, q in ((Decimal(p), Decimal(q)) for p, q in bids) if q}
        self.asks = {p: q for p, q in ((Decimal(p), Decimal(q)) for p, q in asks) if q}
        self._bid_heap = [-p for p in self.bids]
        self._ask_heap = list(self.asks)
        heapq.heapify(self._bid_heap)
        heapq.heapify(self._ask_heap)
        self.update_id = update_id

    def apply(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]], update_id: int) -> None:
        """Apply one diff's levels (quantity 0 removes a level) and move to `update_id`."""
        _apply(self.bids, self._bid_heap, bids, True)
        _apply(self.asks, self._ask_heap, asks, False)
        self.update_id = update_id

    def clear(self) -> None:
        """Forget everything (a re-sync starts from the next snapshot)."""
        self.__init__()  # type: ignore[misc]

    # ---- reading it

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        """(price, qty) of the highest bid, or None for an empty side."""
        heap, side = self._bid_heap, self.bids
        while heap:
            p = -heap[0]
            q = side.get(p)
            if q is not None:
                return p, q
            heapq.heappop(heap)
        return None

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        """(price, qty) of the lowest ask, or None for an empty side."""
        heap, side = self._ask_heap, self.asks
        while heap:
            p = heap[0]
            q = side.get(p)
            if q is not None:
                return p, q
            heapq.heappop(heap)
        return None

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask: a book that cannot be right."""
        b, a = self.best_bid(), self.best_ask()
        return b is not None and a is not None and b[0] >= a[0]

    def levels(self, side: str, depth: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """The best `depth` levels of 'bid' (highest first) or 'ask' (lowest first)."""
        if side not in ("bid", "ask"):
            raise ValueError(f"side must be 'bid' or 'ask', not {side!r}")
        book = self.bids if side == "bid" else self.asks
        keys = sorted(book, reverse=side == "bid")
        if depth is not None:
            keys = keys[:depth]
        return [(p, book[p]) for p in keys]

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


def _apply(side: Side, heap: list[Decimal], levels: Iterable[tuple[str, str]], negate: bool) -> None:
    push = heapq.heappush
    for ps, qs in levels:
        p, q = Decimal(ps), Decimal(qs)
        if q:
            if p not in side:
                push(heap, -p if negate else p)
            side[p] = q
        else:
            side.pop(p, None)
    if len(heap) > 4 * len(side) + 1024:  # lazily deleted entries: rebuild now and then
        heap[:] = [-p for p in side] if negate else list(side)
        heapq.heapify(heap)
