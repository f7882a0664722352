"""Keeping a local book in step with Binance's depth stream — the decisions, without I/O.

The procedure as Binance documents it (spot since Dec 2024; USD-M futures with `pu`):

1. buffer the diffs from the stream; note the first one's `U`;
2. take a REST snapshot; while the first buffered diff does not continue it, take another (a
   stale snapshot). Binance's text says "while `lastUpdateId` < `U`"; a snapshot at exactly
   `U - 1` is kept here (spot; futures when `pu` equals it): the diff continues it id for id, and
   a replayed recording may hold no other snapshot;
3. drop buffered diffs the snapshot already holds (spot: `u <= lastUpdateId`; futures:
   `u < lastUpdateId`); the first one left straddles the snapshot (`U <= lastUpdateId + 1`,
   futures `U <= lastUpdateId <= u`) and is applied like the rest;
4. live: a diff with `u` at or below the book's id is old (ignored); spot `U > id + 1` or
   futures `pu != id` is a loss: the book is re-synced from step 1 and the loss recorded.

A book that comes out crossed after a diff is recorded and re-synced too, and so is every
reconnect (the caller says `restart()`); the gap a restart leaves is recorded only when ids
were really missed. With `keep_tops`, the top of the book after every diff applied to a synced
book is kept too (`tops`, a `BookTop` each, drained by the caller like `gaps`): the capture and
the loader store them so `book_top` reads instead of rebuilding. A diff that leaves the book
crossed gets none (that state is not truth). Across a reconnect the old book is kept aside while
the new snapshot is awaited: the new stream's diffs that continue it id for id get their tops
from it (the reader's rebuild runs through them too), so a reconnect leaves no hole in the
tops. `BookSync` returns what happened; the caller fetches snapshots, stores rows and records
gaps (`capture/book.py`, the local exchange's tests, the readers).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .model import BookGap, BookSnapshot, BookTop, DepthDiff
from .state import OrderBook

R = TypeVar("R")

__all__ = ["BookSync", "DiffResult", "SnapshotResult", "MAX_BUFFERED", "with_tops"]

MAX_BUFFERED = 10_000
"""Diffs buffered while waiting for a snapshot; beyond, the oldest are dropped from the buffer
(they are stored all the same) and the snapshot is bound to be re-taken."""


class DiffResult(enum.Enum):
    """What a diff did to the local book."""

    APPLIED = "applied"
    BUFFERED = "buffered"  # waiting for a snapshot
    OLD = "old"  # at or below the book's id: already in it
    GAP = "gap"  # a loss (or a crossed book): re-sync started, `BookSync.gaps` has the record


class SnapshotResult(enum.Enum):
    """What a snapshot did to the local book."""

    SYNCED = "synced"
    STALE = "stale"  # older than the buffered diffs: take another
    WAIT = "wait"  # no diff buffered yet to check it against: keep it, decide on the next diff
    IGNORED = "ignored"  # not waiting for one


@dataclass
class BookSync:
    """One symbol's local book and where it stands in the procedure."""

    exchange: str
    symbol: str
    futures: bool = False
    book: OrderBook = field(default_factory=OrderBook)
    synced: bool = False
    buffer: list[DepthDiff] = field(default_factory=list)
    gaps: list[BookGap] = field(default_factory=list)
    """Gap records to store (seen, then again when healed); the caller drains it."""
    last_id: int | None = None
    """The last update id the book was right at (survives a re-sync: a restart's gap is measured from it)."""
    resyncs: int = 0
    keep_tops: bool = False
    tops: list[BookTop] = field(default_factory=list)
    """With `keep_tops`: the top after each diff applied (the caller drains it)."""
    _shadow: OrderBook | None = None
    """With `keep_tops`, after a reconnect: the book as it was, followed while the diffs continue it."""
    _topped: int = -1
    """The last update id a top was kept for (a diff gets one top at most)."""
    _pending_gap: BookGap | None = None
    _held: BookSnapshot | None = None
    _at_snapshot: bool = False
    """Futures: the book stands at a snapshot's id, not at a diff's `u` (the next diff spans it:
    `U <= id <= u`)."""

    # ---- the stream

    def on_diff(self, diff: DepthDiff, now_us: int) -> DiffResult:
        """Follow one diff from the stream."""
        if not self.synced:
            self.buffer.append(diff)
            if len(self.buffer) > MAX_BUFFERED:
                del self.buffer[: len(self.buffer) - MAX_BUFFERED]
            if self._shadow is not None:
                self._follow_shadow(diff)
            if self._held is not None:
                held, self._held = self._held, None
                if self.on_snapshot(held, now_us) is SnapshotResult.SYNCED:
                    return DiffResult.APPLIED
            return DiffResult.BUFFERED
        book_id = self.book.update_id
        assert book_id is not None
        if diff.last_id <= book_id:
            return DiffResult.OLD
        if self.futures:
            broken = not (diff.first_id <= book_id) if self._at_snapshot else diff.prev_id != book_id
            self._at_snapshot = False
        else:
            broken = diff.first_id > book_id + 1
        if broken:
            self._lose("gap", book_id, diff.first_id, now_us)
            self.buffer.append(diff)
            return DiffResult.GAP
        self.book.apply(diff.bids, diff.asks, diff.last_id)
        self.last_id = diff.last_id
        if self.book.crossed():
            self._lose("crossed", diff.last_id, None, now_us)
            return DiffResult.GAP
        if self.keep_tops:
            self._top(diff, self.book)
        return DiffResult.APPLIED

    def restart(self, now_us: int) -> None:
        """The stream was reconnected (or rotated): re-sync; a loss shows when the snapshot comes."""
        keep = self.keep_tops and self.synced and not (self.futures and self._at_snapshot)
        self._shadow = self.book if keep else None
        self.synced = False
        self.buffer.clear()
        self._held = None
        self.book = OrderBook()

    def _follow_shadow(self, diff: DepthDiff) -> None:
        """Apply `diff` to the book kept aside over a reconnect if it continues it (tops only)."""
        shadow = self._shadow
        assert shadow is not None and shadow.update_id is not None
        sid = shadow.update_id
        if diff.last_id <= sid:
            return
        if (diff.prev_id != sid) if self.futures else diff.first_id > sid + 1:
            self._shadow = None  # ids missed over the reconnect: the snapshot decides
            return
        shadow.apply(diff.bids, diff.asks, diff.last_id)
        if shadow.crossed():
            self._shadow = None
            return
        self._top(diff, shadow)

    @property
    def wants_snapshot(self) -> bool:
        """True when a snapshot should be fetched now: not synced and a diff is buffered."""
        return not self.synced and bool(self.buffer) and self._held is None

    # ---- the snapshot

    def on_snapshot(self, snap: BookSnapshot, now_us: int) -> SnapshotResult:
        """Try to start the book from `snap` and the buffered diffs."""
        if self.synced:
            return SnapshotResult.IGNORED
        s = snap.last_update_id
        if not self.buffer:
            self._held = snap
            return SnapshotResult.WAIT
        first = self.buffer[0]
        if (s < first.first_id and first.prev_id != s) if self.futures else s < first.first_id - 1:
            # too old: the first buffered diff does not continue it (spot: U <= lastUpdateId + 1;
            # futures: U <= lastUpdateId, or pu == lastUpdateId)
            return SnapshotResult.STALE
        keep = [d for d in self.buffer if (d.last_id >= s if self.futures else d.last_id > s)]
        if keep and not self._continuous(keep, s):
            # a diff is missing among the buffered ones: drop them up to the break, take another snapshot
            return SnapshotResult.STALE
        self.book.load(snap.bids, snap.asks, s)
        self._heal(s, self.buffer[0], now_us)
        self.synced = True
        self._shadow = None
        self.buffer.clear()
        kept = len(self.tops)
        for d in keep:
            self.book.apply(d.bids, d.asks, d.last_id)
            if self.keep_tops:
                self._top(d, self.book)
        self._at_snapshot = not keep
        self.last_id = self.book.update_id
        if self.book.crossed():
            if len(self.tops) > kept and self.tops[-1].update_id == self.book.update_id:
                self.tops.pop()  # the last diff left it crossed: no top for it
            self._lose("crossed", self.book.update_id or s, None, now_us)
        return SnapshotResult.SYNCED

    def _top(self, diff: DepthDiff, book: OrderBook) -> None:
        if diff.last_id <= self._topped:
            return
        self._topped = diff.last_id
        b, a = book.best_bid(), book.best_ask()
        self.tops.append(
            BookTop(
                self.exchange,
                self.symbol,
                diff.last_id,
                diff.event_time_us,
                None if b is None else format(b[0], "f"),
                None if b is None else format(b[1], "f"),
                None if a is None else format(a[0], "f"),
                None if a is None else format(a[1], "f"),
                diff.source,
            )
        )

    def _continuous(self, diffs: list[DepthDiff], s: int) -> bool:
        first = diffs[0]
        if self.futures:
            ok = first.first_id <= s <= first.last_id or first.prev_id == s
            return ok and all(b.prev_id == a.last_id for a, b in zip(diffs, diffs[1:]))
        ok = first.first_id <= s + 1
        return ok and all(b.first_id <= a.last_id + 1 for a, b in zip(diffs, diffs[1:]))

    # ---- losses

    def _lose(self, reason: str, after_id: int, before_id: int | None, now_us: int) -> None:
        gap = BookGap(self.exchange, self.symbol, reason, after_id, before_id, now_us)
        self.gaps.append(gap)
        self._pending_gap = gap
        self.synced = False
        self.resyncs += 1
        self.buffer.clear()
        self._held = None
        self._shadow = None

    def _heal(self, snapshot_id: int, first: DepthDiff, now_us: int) -> None:
        """The book starts again at `snapshot_id`: heal the pending gap, or record a restart's loss."""
        pending, self._pending_gap = self._pending_gap, None
        if pending is not None:
            self.gaps.append(pending._replace(snapshot_id=snapshot_id, healed_at_us=now_us))
            return
        last = self.last_id
        if last is not None and (first.prev_id != last if self.futures else first.first_id > last + 1):
            # restarted (reconnect, or a capture started after stored diffs) and the stream since
            # does not reach back to the last good id: the ids between were never seen
            self.gaps.append(
                BookGap(
                    self.exchange, self.symbol, "restart", last, first.first_id, now_us, snapshot_id, now_us
                )
            )


def with_tops(rows: Iterable[R], *, futures: bool = False) -> Iterator[R | BookTop | BookGap]:
    """`rows` (snapshots, diffs and anything else, in arrival order) followed by a synced book per
    symbol as the capture follows them: each row, then the tops and gaps it produced — what the
    capture stores, for a generator or a file that only has the exchange's rows."""
    syncs: dict[tuple[str, str], BookSync] = {}
    for row in rows:
        yield row
        if not isinstance(row, (DepthDiff, BookSnapshot)):
            continue
        key = (row.exchange, row.symbol)
        sync = syncs.get(key)
        if sync is None:
            sync = syncs[key] = BookSync(row.exchange, row.symbol, futures=futures, keep_tops=True)
        if isinstance(row, DepthDiff):
            sync.on_diff(row, row.received_at_us or row.event_time_us)
        else:
            sync.on_snapshot(row, row.received_at_us)
        yield from sync.tops
        yield from sync.gaps
        sync.tops.clear()
        sync.gaps.clear()
