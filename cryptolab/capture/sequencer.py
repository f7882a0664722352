"""Per-symbol trade-id sequencing and the gap policy: pure, no I/O.

Binance trade ids are consecutive per symbol. `Sequencer.see()` takes each id as it
arrives; a jump opens a `MissingRange`, a late id is carved out of one, an id seen
before is a duplicate. `GapPolicy.plan()` decides, for a range, whether to wait (the
ids may still arrive out of order), give part of it up (too large to backfill) or
ask REST for it. The outcomes are `GapEvent`s, which the run log stores.
Tested by feeding ids (tests/capture/test_units.py), the way websockets tests its
protocol by feeding bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["GapEvent", "GapPlan", "GapPolicy", "MissingRange", "Sequencer"]

GapStatus = Literal["filled", "unrecoverable", "open"]


@dataclass
class MissingRange:
    """Ids `lo..hi` (inclusive) not seen yet; `seen_at` is when the hole was noticed (monotonic s).

    `catch_up`: the ids between where the capture starts (stored data, a start id) and its first
    streamed trade — printed before it connected, fetched from REST as a matter of course, not a
    gap in the stream (not counted as one unless some of them cannot be had)."""

    lo: int
    hi: int
    seen_at: float
    attempts: int = 0
    catch_up: bool = field(default=False, compare=False)

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True)
class GapEvent:
    """What became of a missing range (a row of `capture_gaps`)."""

    symbol: str
    lo: int
    hi: int
    status: GapStatus
    reason: str


class Sequencer:
    """Last id seen and the ranges still missing, for one symbol (one thread only)."""

    __slots__ = ("symbol", "last_id", "_missing", "last_trade_us", "_streamed", "on_open")

    def __init__(self, symbol: str, last_id: int | None, missing: Iterable[tuple[int, int]] = ()) -> None:
        self.symbol = symbol
        self.last_id = last_id
        self._missing: list[MissingRange] = [MissingRange(lo, hi, 0.0) for lo, hi in missing if lo <= hi]
        self.last_trade_us: int | None = None
        self._streamed = False  # a trade was seen on the stream (a later hole is a gap, not the catch-up)
        self.on_open: Callable[[], None] | None = None
        """Called when a new missing range opens (the backfiller sleeps until then or until one is due)."""

    @property
    def missing(self) -> tuple[MissingRange, ...]:
        """The ranges still missing, oldest first (copies: outside code cannot edit them)."""
        return tuple(replace(r) for r in self._missing)

    def missing_ids(self) -> int:
        return sum(r.size for r in self._missing)

    def see(self, tid: int, now: float) -> bool:
        """Account for id `tid`; False when it is a duplicate to drop."""
        last = self.last_id
        if last is None or tid == last + 1:
            self.last_id = tid
            self._streamed = True
            return True
        if tid > last:
            self._missing.append(MissingRange(last + 1, tid - 1, now, catch_up=not self._streamed))
            self.last_id = tid
            self._streamed = True
            if self.on_open is not None:
                self.on_open()
            return True
        return self.carve(tid)

    def advance_to(self, latest: int, now: float) -> bool:
        """The exchange says its latest id is `latest`: open the range up to it (True if one opened)."""
        if self.last_id is None or latest <= self.last_id:
            return False
        self._missing.append(MissingRange(self.last_id + 1, latest, now, catch_up=not self._streamed))
        self.last_id = latest
        if self.on_open is not None:
            self.on_open()
        return True

    def carve(self, tid: int) -> bool:
        """Remove `tid` from the missing ranges; False if it was not missing."""
        for i, r in enumerate(self._missing):
            if r.lo <= tid <= r.hi:
                if r.lo == r.hi:
                    del self._missing[i]
                elif tid == r.lo:
                    r.lo += 1
                elif tid == r.hi:
                    r.hi -= 1
                else:
                    self._missing.insert(
                        i + 1, MissingRange(tid + 1, r.hi, r.seen_at, r.attempts, r.catch_up)
                    )
                    r.hi = tid - 1
                return True
        return False

    def carve_range(self, lo: int, hi: int) -> None:
        """Remove every id in [lo, hi] from the missing ranges."""
        kept: list[MissingRange] = []
        for r in self._missing:
            if r.hi < lo or r.lo > hi:
                kept.append(r)
                continue
            if r.lo < lo:
                kept.append(MissingRange(r.lo, lo - 1, r.seen_at, r.attempts, r.catch_up))
            if r.hi > hi:
                kept.append(MissingRange(hi + 1, r.hi, r.seen_at, r.attempts, r.catch_up))
        self._missing = kept

    def first_missing(self) -> MissingRange | None:
        return self._missing[0] if self._missing else None

    def take_open(self, reason: str) -> list[GapEvent]:
        """Every range still missing, as 'open' events; the sequencer forgets them."""
        out = [GapEvent(self.symbol, r.lo, r.hi, "open", reason) for r in self._missing]
        self._missing.clear()
        return out


@dataclass(frozen=True)
class GapPlan:
    """What to do now with the first missing range of a symbol."""

    action: Literal["wait", "backfill"]
    lo: int = 0
    hi: int = 0
    first_attempt: bool = False
    give_up: GapEvent | None = None
    """The oldest part, recorded as lost, when the range is larger than the backfill cap."""
    catch_up: bool = False
    """The range is the start's catch-up (see MissingRange), not a gap in the stream."""


@dataclass(frozen=True)
class GapPolicy:
    """When a missing range is asked from REST, and how much of it."""

    grace: float = 1.0
    """Seconds a missing id may take to arrive out of order before REST is asked."""
    max_backfill: int = 2_000_000
    """Largest range backfilled; beyond it the oldest ids are recorded as lost."""

    def due_in(self, seqs: Iterable[Sequencer], now: float) -> float | None:
        """Seconds until the first missing range of any of `seqs` is due (0: now); None when
        none is missing."""
        waits = [
            max(0.0, r.seen_at + self.grace - now) for r in (s.first_missing() for s in seqs) if r is not None
        ]
        return min(waits, default=None)

    def plan(self, seq: Sequencer, now: float, *, final: bool = False) -> GapPlan:
        """Decide for `seq`'s first missing range; a 'backfill' plan updates the range (attempts, cut)."""
        r = seq.first_missing()
        if r is None or (not final and now - r.seen_at < self.grace):
            return GapPlan("wait")
        first = r.attempts == 0
        r.attempts += 1
        lost = None
        if first and r.size > self.max_backfill:
            cut = r.hi - self.max_backfill
            lost = GapEvent(
                seq.symbol, r.lo, cut, "unrecoverable", f"larger than max_backfill_trades={self.max_backfill}"
            )
            r.lo = cut + 1
        return GapPlan("backfill", r.lo, r.hi, first, lost, r.catch_up)
