"""The capture's books: follow each symbol's depth diffs, fetch snapshots, queue every row.

A thin shell around `book.sync.BookSync` (the decisions): every diff and quote the stream
delivers is queued for the sink as it came (stored once whatever the book thinks of it); the
diffs also drive the local book. When a book needs a snapshot (start, a gap, a crossed book, a
reconnect or rotation) one task per symbol fetches it from REST — its weight counted by the
REST client's budget — stores it, and retries a stale one; the gaps `BookSync` records are
queued for `book_gaps` and counted. Quotes are kept in update-id order per symbol (an id seen
again on an overlapping connection is dropped here, not stored twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..binance.depth import snapshot_from_rest
from ..binance.rest import RestClient
from ..book.model import BookGap, DepthDiff, Quote
from ..book.sync import BookSync, DiffResult, SnapshotResult
from ..errors import CryptolabError
from ..model import DeadLetter, now_us
from .backoff import backoff
from .options import CaptureOptions, Counters
from .sink import Sink

__all__ = ["BookFeed", "stream_names", "STREAM_KINDS", "DEPTH_SPEEDS"]

log = logging.getLogger("cryptolab.capture")

STREAM_KINDS = ("trade", "depth", "bookTicker")
DEPTH_SPEEDS = ("100ms", "1000ms")


def stream_names(symbol: str, kinds: Iterable[str], depth_speed: str = "100ms") -> list[str]:
    """Binance stream names of `symbol` for the stream kinds asked (`trade`, `depth`, `bookTicker`)."""
    s = symbol.lower()
    out = []
    for k in kinds:
        if k == "trade":
            out.append(f"{s}@trade")
        elif k == "depth":
            out.append(f"{s}@depth@100ms" if depth_speed == "100ms" else f"{s}@depth")
        elif k == "bookTicker":
            out.append(f"{s}@bookTicker")
        else:
            raise ValueError(f"unknown stream kind {k!r}: one of {', '.join(STREAM_KINDS)}")
    return out


class BookFeed:
    """Books of the symbols a capture follows (event-loop thread only)."""

    def __init__(
        self,
        exchange: str,
        sink: Sink,
        counters: Counters,
        rest: RestClient,
        options: CaptureOptions,
        *,
        futures: bool = False,
    ) -> None:
        self.exchange = exchange
        self.sink = sink
        self.counters = counters
        self.rest = rest
        self.options = options
        self.futures = futures
        self.syncs: dict[str, BookSync] = {}
        self.last_quote: dict[str, int] = {}
        self.snapshot_errors: dict[str, str] = {}
        self.gap_log: dict[tuple[str, str, int], BookGap] = {}
        """Every book gap seen (latest record of each: seen, then healed), for `status()`."""
        self._fetching: dict[str, asyncio.Task[None]] = {}

    def follow(self, symbol: str, last_stored_id: int | None) -> None:
        """Keep `symbol`'s book; `last_stored_id` (the last diff stored before) lets a restart's hole show."""
        prev = self.syncs.get(symbol)
        sync = BookSync(self.exchange, symbol, futures=self.futures, keep_tops=True)
        sync.last_id = prev.last_id if prev is not None and prev.last_id is not None else last_stored_id
        self.syncs[symbol] = sync

    def forget(self, symbols: Iterable[str]) -> None:
        for s in symbols:
            self.syncs.pop(s, None)
            task = self._fetching.pop(s, None)
            if task is not None:
                task.cancel()

    # ---- the hot path (called from the stream worker's on_message)

    def on_diff(self, d: DepthDiff) -> None:
        sync = self.syncs.get(d.symbol)
        if sync is None:
            self.sink.put_dead(
                DeadLetter(
                    f"depth diff for a symbol not followed: {d.symbol}",
                    b"",
                    d.source,
                    d.exchange,
                    d.symbol,
                    d.received_at_us,
                )
            )
            return
        self._queue(d)
        res = sync.on_diff(d, d.received_at_us or now_us())
        if sync.tops:
            self.sink.book.extend(sync.tops)
            sync.tops.clear()
        if res is DiffResult.GAP:
            self.counters.book_resyncs += 1
        if sync.gaps:
            self._record_gaps(sync)
        if sync.wants_snapshot and d.symbol not in self._fetching:
            self._fetch(sync)

    def on_quote(self, q: Quote) -> None:
        last = self.last_quote.get(q.symbol)
        if last is not None and q.update_id <= last:
            self.counters.dropped_duplicates += 1
            return
        self.last_quote[q.symbol] = q.update_id
        self._queue(q)

    def _queue(self, row: DepthDiff | Quote) -> None:
        book = self.sink.book
        book.append(row)
        n = len(book)
        if (n == 1 or n >= self.options.commit_rows) and not self.sink.wake.is_set():
            self.sink.wake.set()

    # ---- re-syncs and snapshots

    def restart(self, symbols: Iterable[str]) -> None:
        """A connection carrying these symbols was (re)opened: their books start again."""
        now = now_us()
        for s in symbols:
            sync = self.syncs.get(s)
            if sync is not None and (sync.synced or sync.buffer):
                sync.restart(now)
                self.counters.book_resyncs += 1

    def _record_gaps(self, sync: BookSync) -> None:
        for g in sync.gaps:
            if g.snapshot_id is None:
                self.counters.book_gaps += 1
                log.warning(
                    "%s book: %s after update id %s%s; re-syncing from a new snapshot",
                    g.symbol,
                    "a crossed book" if g.reason == "crossed" else "diffs missed",
                    g.after_id,
                    f" (next seen: {g.before_id})" if g.before_id is not None else "",
                )
            elif g.reason == "restart":
                self.counters.book_gaps += 1
            self.sink.put_book(g)
            if len(self.gap_log) < 10_000:
                self.gap_log[(g.symbol, g.reason, g.after_id)] = g
        sync.gaps.clear()

    def _fetch(self, sync: BookSync) -> None:
        task = asyncio.get_running_loop().create_task(self._snapshot(sync))
        self._fetching[sync.symbol] = task
        symbol = sync.symbol

        def done(t: asyncio.Task[None]) -> None:
            if self._fetching.get(symbol) is t:
                del self._fetching[symbol]

        task.add_done_callback(done)

    async def _snapshot(self, sync: BookSync) -> None:
        """Fetch snapshots until one starts the book (a stale one is stored and another taken)."""
        delays = backoff(0.25, 10.0)
        while sync.wants_snapshot and self.syncs.get(sync.symbol) is sync:
            try:
                obj = await self.rest.depth(sync.symbol, self.options.depth_snapshot)
                snap = snapshot_from_rest(obj, sync.symbol, exchange=self.exchange, received_at_us=now_us())
            except (CryptolabError, asyncio.TimeoutError, OSError) as exc:
                self.snapshot_errors[sync.symbol] = str(exc)
                log.warning("%s book: snapshot failed (%s); retrying", sync.symbol, exc)
                await asyncio.sleep(next(delays))
                continue
            self.snapshot_errors.pop(sync.symbol, None)
            self.sink.put_book(snap)
            res = sync.on_snapshot(snap, now_us())
            if sync.tops:
                self.sink.book.extend(sync.tops)
                sync.tops.clear()
            if sync.gaps:
                self._record_gaps(sync)
            if res is SnapshotResult.STALE:
                await asyncio.sleep(next(delays))
            elif res in (SnapshotResult.SYNCED, SnapshotResult.WAIT):
                return

    def status(self) -> dict[str, dict[str, object]]:
        """Per symbol: synced or not, the book's update id, best bid/ask, resyncs, the last snapshot error."""
        out: dict[str, dict[str, object]] = {}
        for sym, s in self.syncs.items():
            bb, ba = (s.book.best_bid(), s.book.best_ask()) if s.synced else (None, None)
            out[sym] = {
                "synced": s.synced,
                "update_id": s.book.update_id,
                "best_bid": bb,
                "best_ask": ba,
                "resyncs": s.resyncs,
                "snapshot_error": self.snapshot_errors.get(sym),
            }
        return out
