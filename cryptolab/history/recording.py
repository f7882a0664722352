"""Raw stream recordings → rows, with the order book followed while reading. Pure: lines in, rows out.

A recording (the format of hftbacktest's Binance collector, and of the local exchange's) holds
one message per line, `<local receive time, ns> <raw JSON>`: combined-stream frames of
`@trade`, `@depth` / `@depth@100ms` / futures `@depth@0ms` (with `pu`) and `@bookTicker`, and
the REST depth snapshots the recorder took, inline as bare `{"lastUpdateId":…}` lines.

* `split_line` / `decode_line`: one line → a `Trade`, `DepthDiff`, `Quote`, a `RawSnapshot`
  (its symbol is not in the line), a `DeadLetter` (malformed) or a `Skipped` (a reply, a
  stream cryptolab does not keep, a blank line).
* `market_of`: which market the messages come from — USD-M futures when a diff carries `pu`
  (or a bookTicker / snapshot carries the event times only futures send, or a trade `X`),
  else spot. The exchange column carries the market: `binance` or `binance-usdm`.
* `RecordingBook`: follows every symbol's book with `BookSync` as the lines come (Binance's
  procedure: a recording starts with diffs buffered before its snapshot — that is no gap), gives
  each snapshot its symbol (the recording's depth symbol; with several, the one whose update
  ids it sits among) and returns the rows to store: the diffs and snapshots themselves and a
  `BookGap` for every loss the recording holds (seen, and healed when a later snapshot
  re-synced the book).

Times: the line's receive stamp (ns, µs or ms, detected by size) becomes `received_at`; a
gap's `detected_at` is the receive time of the line that showed it, so loading the same
recording twice records the same gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ..binance.depth import decode_diff, decode_quote, snapshot_from_rest
from ..binance.dumps import time_to_us
from ..binance.frames import decode_frame
from ..binance.wire import Control
from ..book.model import BookRow, DepthDiff, Quote
from ..book.sync import BookSync
from ..errors import DataError
from ..model import DeadLetter, Trade

__all__ = ["SPOT", "FUTURES", "RawSnapshot", "Skipped", "Row", "split_line", "decode_line", "market_hint",
           "market_of", "RecordingBook", "exchange_for"]

SPOT = "binance"
FUTURES = "binance-usdm"
MARKETS = {"spot": SPOT, "usdm": FUTURES}
"""`--market` names → the exchange column's value."""


class RawSnapshot(NamedTuple):
    """A REST depth snapshot line: its symbol comes from the recording (`RecordingBook`)."""

    received_at_us: int
    body: dict[str, Any]
    payload: bytes


class Skipped(NamedTuple):
    """A line that holds nothing to store (a reply, a stream not kept, a blank line)."""

    reason: str


Row = Trade | DepthDiff | Quote | RawSnapshot | DeadLetter | Skipped


def exchange_for(market: str) -> str:
    """`spot` / `usdm` (or the exchange names themselves) → the exchange column's value."""
    m = market.strip().lower()
    if m in MARKETS:
        return MARKETS[m]
    if m in (SPOT, FUTURES):
        return m
    raise DataError(f"--market {market!r}: use spot or usdm")


def split_line(line: bytes) -> tuple[int | None, bytes]:
    """`<receive time> <JSON>` → (receive time in µs or None, the JSON's bytes)."""
    text = line.strip()
    head, sep, rest = text.partition(b" ")
    if sep and head.isdigit():
        return time_to_us(int(head)), rest.lstrip()
    return None, text


def decode_line(line: bytes, *, exchange: str, source: str = "replay", default_us: int = 0) -> Row:
    """One line of a recording → the row it carries (never raises)."""
    received, raw = split_line(line)
    if not raw:
        return Skipped("blank line")
    us = received if received is not None else default_us
    if raw.startswith(b'{"stream"'):
        got = decode_frame(raw, exchange=exchange, source=source, received_at_us=us)
        if isinstance(got, Control):
            return Skipped(f"{got.kind} message")
        if (
            isinstance(got, DeadLetter)
            and got.reason.startswith("stream ")
            and "is not captured" in got.reason
        ):
            return Skipped("a stream cryptolab does not keep")
        return got
    return _bare(raw, exchange, source, us)


def _bare(raw: bytes, exchange: str, source: str, us: int) -> Row:
    """A line without the combined-stream wrapper: a snapshot, or a bare event."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(f"invalid JSON: {str(exc)[:120]}", raw, source, exchange, None, us)
    if isinstance(msg, dict) and "lastUpdateId" in msg:
        return RawSnapshot(us, msg, raw)
    kind = msg.get("e") if isinstance(msg, dict) else None
    if kind == "depthUpdate":
        return decode_diff(raw, exchange=exchange, source=source, received_at_us=us)
    if kind == "bookTicker" or (isinstance(msg, dict) and kind is None and {"u", "b", "a"} <= msg.keys()):
        return decode_quote(raw, exchange=exchange, source=source, received_at_us=us)
    got = decode_frame(raw, exchange=exchange, source=source, received_at_us=us)
    return Skipped(f"{got.kind} message") if isinstance(got, Control) else got


def market_hint(line: bytes) -> str | None:
    """`binance-usdm` / `binance` when this line says which market it comes from, else None."""
    _, raw = split_line(line)
    if not raw.startswith(b"{"):
        return None
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    data = msg.get("data", msg)
    if not isinstance(data, dict):
        return None
    if "lastUpdateId" in data:
        return FUTURES if "E" in data or "T" in data else SPOT
    kind = data.get("e")
    if kind == "depthUpdate":
        return FUTURES if "pu" in data else SPOT
    if kind == "trade":
        return FUTURES if "X" in data else SPOT
    if kind == "bookTicker":
        return FUTURES  # spot's bookTicker has no event type
    if kind is None and {"u", "b", "a"} <= data.keys():
        return SPOT
    return None


def market_of(lines: Iterable[bytes]) -> str:
    """The market of a recording from its first telling line (spot when none tells)."""
    for line in lines:
        hint = market_hint(line)
        if hint is not None:
            return hint
    return SPOT


@dataclass
class RecordingBook:
    """Every symbol's book of one recording, followed as its lines come (see the module doc).

    `symbol`: the only symbol kept (snapshots are then that symbol's). Feed rows in file order
    with `diff()` / `snapshot()`; each returns the rows to store. `finish()` says what could not
    be placed (snapshots of a recording without a depth stream)."""

    exchange: str
    symbol: str | None = None
    source: str = "replay"
    books: dict[str, BookSync] = field(default_factory=dict)
    held: list[RawSnapshot] = field(default_factory=list)
    """Snapshots seen before any diff told whose they are."""
    gaps: int = 0
    """Losses in the recording (each stored as one `book_gaps` row)."""
    healed: int = 0
    """Of them, healed by a later snapshot in the recording."""
    snapshots: int = 0
    unplaced: int = 0
    _seen: set[tuple[str, str, int]] = field(default_factory=set)

    @property
    def futures(self) -> bool:
        return self.exchange == FUTURES

    def _sync(self, symbol: str) -> BookSync:
        sync = self.books.get(symbol)
        if sync is None:
            sync = self.books[symbol] = BookSync(self.exchange, symbol, futures=self.futures, keep_tops=True)
        return sync

    def _drain(self, sync: BookSync, out: list[BookRow | DeadLetter]) -> None:
        if sync.tops:  # the top after each diff applied: book_top reads them
            out.extend(sync.tops)
            sync.tops.clear()
        if sync.gaps:
            out.extend(sync.gaps)  # a gap is recorded when seen, and again when healed (one row in storage)
            for g in sync.gaps:
                key = (g.symbol, g.reason, g.after_id)
                if key not in self._seen:
                    self._seen.add(key)
                    self.gaps += 1
                if g.healed_at_us is not None:
                    self.healed += 1
            sync.gaps.clear()

    def diff(self, d: DepthDiff) -> list[BookRow | DeadLetter]:
        """A diff from the stream: stored, and followed (a loss becomes a gap row)."""
        out: list[BookRow | DeadLetter] = []
        sync = self._sync(d.symbol)
        if self.held:
            held, self.held = self.held, []
            for snap in held:
                out.extend(self._place(snap, d.symbol))
        out.append(d)
        sync.on_diff(d, d.received_at_us or d.event_time_us)
        self._drain(sync, out)
        return out

    def snapshot(self, raw: RawSnapshot) -> list[BookRow | DeadLetter]:
        """A snapshot line: placed with its symbol's book (held until a diff says whose it is)."""
        symbol = self.symbol or self._owner(raw)
        if symbol is None:
            self.held.append(raw)
            return []
        return self._place(raw, symbol)

    def _owner(self, raw: RawSnapshot) -> str | None:
        """Whose snapshot this is: the only symbol with diffs, else the one whose ids are nearest."""
        if not self.books:
            return None
        if len(self.books) == 1:
            return next(iter(self.books))
        last = raw.body.get("lastUpdateId")
        if not isinstance(last, int):
            return next(iter(self.books))

        def distance(s: str) -> int:
            sync = self.books[s]
            ref = sync.buffer[0].first_id if sync.buffer else (sync.last_id or 0)
            return abs(ref - last)

        return min(self.books, key=distance)

    def _place(self, raw: RawSnapshot, symbol: str) -> list[BookRow | DeadLetter]:
        try:
            snap = snapshot_from_rest(
                raw.body,
                symbol,
                exchange=self.exchange,
                received_at_us=raw.received_at_us,
                source=self.source,
            )
        except DataError as exc:
            return [DeadLetter(str(exc), raw.payload, self.source, self.exchange, symbol, raw.received_at_us)]
        sync = self._sync(symbol)
        out: list[BookRow | DeadLetter] = [snap]
        self.snapshots += 1
        sync.on_snapshot(snap, raw.received_at_us)
        self._drain(sync, out)
        return out

    def finish(self) -> int:
        """At the end of the recording: the snapshots no depth stream claimed (not stored); their count."""
        self.unplaced += len(self.held)
        self.held = []
        return self.unplaced

    def unsynced(self) -> list[str]:
        """Symbols whose book never started (no usable snapshot in the recording)."""
        return sorted(s for s, sync in self.books.items() if sync.last_id is None)
