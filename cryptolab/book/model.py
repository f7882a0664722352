"""The order book's rows, as they flow from the wire to the database.

Prices and quantities are the exchange's own decimal strings (checked against the plain
decimal grammar where they are decoded): exact, and written to NUMERIC as they came, with no
conversion on the hot path. `Decimal` appears only where arithmetic happens (`state.OrderBook`).
Times are integer microseconds since the epoch, as in `cryptolab.model`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BookGap", "BookRow", "BookSnapshot", "BookTop", "DepthDiff", "Level", "Quote", "GAP_REASONS"]

Level = tuple[str, str]
"""One price level: (price, quantity) as decimal strings; quantity "0…" removes the level."""


class DepthDiff(NamedTuple):
    """One `depthUpdate` event: the levels changed between update ids `first_id` (U) and `last_id` (u)."""

    exchange: str
    symbol: str
    first_id: int
    last_id: int
    event_time_us: int
    bids: list[Level]
    asks: list[Level]
    received_at_us: int | None = None
    prev_id: int | None = None
    """Futures only (`pu`): the previous event's `u`; continuity is `prev_id == previous last_id`."""
    source: str = "live"


class BookSnapshot(NamedTuple):
    """A REST depth snapshot: the book as of update id `last_update_id` (`lastUpdateId`)."""

    exchange: str
    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    received_at_us: int
    event_time_us: int | None = None
    source: str = "live"


class Quote(NamedTuple):
    """One `bookTicker` event: the best bid and ask as of book update id `update_id`."""

    exchange: str
    symbol: str
    update_id: int
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    received_at_us: int
    event_time_us: int | None = None
    source: str = "live"


class BookTop(NamedTuple):
    """The best bid and ask of a synced book right after diff `update_id` was applied (None: that
    side is empty). Derived, not published: kept so `book_top` reads the tops instead of
    rebuilding the book; any valid rebuild of the same ids gives the same top."""

    exchange: str
    symbol: str
    update_id: int
    event_time_us: int
    bid_price: str | None
    bid_qty: str | None
    ask_price: str | None
    ask_qty: str | None
    source: str = "live"


GAP_REASONS = ("gap", "crossed", "restart")
"""Why a book lost continuity: diffs missed on the stream (`gap`), a book that came out crossed
after an update (`crossed`), or diffs published while no capture ran (`restart`)."""


class BookGap(NamedTuple):
    """A stretch of update ids the stored book cannot be rebuilt through, and how it was healed.

    `after_id` is the last update id the book was right at; `before_id` the first id seen after
    the break (None when unknown). Healed when a snapshot re-synced the book: `snapshot_id` is
    its `lastUpdateId` and `healed_at_us` when it was applied. Recorded when seen (unhealed) and
    again when healed: storage keeps one row per (exchange, symbol, reason, after_id).
    """

    exchange: str
    symbol: str
    reason: str
    after_id: int
    before_id: int | None
    detected_at_us: int
    snapshot_id: int | None = None
    healed_at_us: int | None = None

    @property
    def missing(self) -> int | None:
        """Update ids never seen (None when unknown or not a loss of ids, e.g. a crossed book)."""
        if self.before_id is None or self.reason == "crossed":
            return None
        return max(0, self.before_id - self.after_id - 1)


BookRow = DepthDiff | BookSnapshot | Quote | BookGap | BookTop
"""Any row of the book's storage (what the sink queues beside trades)."""
