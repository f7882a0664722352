"""The book's streams: each symbol's synthetic book driven by the clock and the trades, and
the messages Binance spot sends about it.

`BookFeed.advance(now, trades, wanted)` runs once per market tick: at every 100 ms boundary
it closes the window of each book (`<sym>@depth@100ms`; every tenth also `<sym>@depth`, the
1000 ms stream, and the partial books `<sym>@depth5/10/20[@100ms]`), then lets the background
flow and the tick's trades change the books (`<sym>@bookTicker` after every change of the
top), and turns trades into `<sym>@aggTrade`. Only streams someone wants (or the recorder)
are encoded; every diff and bookTicker is kept in a bounded log all the same (what the
exchange published, for tests), and the books keep their own history (`book_at`).

Books are lazy: a symbol gets one the first time something asks for it (a subscription to
one of its book streams, `GET /api/v3/depth`, the control API, a recording, `--pace`), and
from then on it follows every trade. An exchange nobody asks for a book pays nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .book import DEFAULT_HISTORY, BookDiff, Levels, SyntheticBook, Top, poisson
from .calibration import BOOK_IDS_PER_S, BOOK_TRADES_PER_S
from .tradelog import SymbolLog, fmt8, fmt8b

__all__ = [
    "BookFeed",
    "Named",
    "PublishedLog",
    "agg_messages",
    "book_stream_kind",
    "encode_levels",
    "PARTIAL_LEVELS",
]

PARTIAL_LEVELS = (5, 10, 20)
WINDOW_US = 100_000
BG_PER_TRADE = (BOOK_IDS_PER_S - 2.8 * BOOK_TRADES_PER_S) / BOOK_TRADES_PER_S
"""Background changes per trade of the symbol's rate (the recording's ids/s less those trades cause)."""
STEADY_SHARE = 0.25
"""Share of the background flow that comes steadily; the rest follows the trades (bursts)."""
MAX_BACKGROUND = 10_000
"""Background changes per second and symbol at most (~15× BTCUSDT's): a market asked for
100k trades/s still gets a book it can keep up with (its trades change it all the same)."""
DIFF_LOG = 200_000
QUOTE_LOG = 1_000_000


class Named(NamedTuple):
    """One message of a named stream: its payload with ms times and with µs times."""

    stream: str
    kind: str  # diff (100 ms), diff1000, quote, partial, agg
    ms: bytes
    us: bytes


def book_stream_kind(kind: str) -> str | None:
    """The part after `<symbol>@` → 'diff', 'diff1000', 'quote', 'partial', 'agg', or None."""
    if kind == "depth@100ms":
        return "diff"
    if kind == "depth":
        return "diff1000"
    if kind == "bookTicker":
        return "quote"
    if kind == "aggTrade":
        return "agg"
    head, _, speed = kind.partition("@")
    if (
        head[:5] == "depth"
        and head[5:].isdigit()
        and int(head[5:]) in PARTIAL_LEVELS
        and speed in ("", "100ms")
    ):
        return "partial"
    return None


def encode_levels(levels: Iterable[tuple[int, int]]) -> bytes:
    return b"[" + b",".join(b'["%s","%s"]' % (fmt8b(p), fmt8b(q)) for p, q in levels) + b"]"


class PublishedLog:
    """A bounded list that remembers how many it forgot (numbering stays absolute)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[Any] = []
        self.offset = 0

    def append(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) > 2 * self.size:
            cut = len(self.items) - self.size
            del self.items[:cut]
            self.offset += cut

    def since(self, start: int) -> tuple[int, list[Any]]:
        """(absolute index of the first item returned, items from `start` on)."""
        i = max(0, start - self.offset)
        return self.offset + i, self.items[i:]


class BookFeed:
    """Every symbol's book (lazily made) and the messages about it (see the module doc)."""

    agg_base = 0
    """Added to every aggregate's index (its `a`) in `@aggTrade` messages."""

    def __init__(
        self,
        logs: dict[str, SymbolLog],
        *,
        seed: int,
        id_base: int,
        rate_of: Callable[[str], float],
        history: int = DEFAULT_HISTORY,
    ) -> None:
        import random

        self.logs = logs
        self.seed = seed
        self.id_base = id_base
        self.rate_of = rate_of
        self.history = history
        self.rng = random.Random(seed ^ 0xB00C)
        self.books: dict[str, SyntheticBook] = {}
        self.diffs: dict[str, PublishedLog] = {}
        self.quotes: dict[str, PublishedLog] = {}
        self.record = False
        """Encode trade, depth@100ms and bookTicker messages of every book (the recorder wants them)."""
        self._win: int | None = None
        self._last_us: int | None = None
        self._sym_b = {s: s.encode() for s in logs}

    @property
    def active(self) -> bool:
        return bool(self.books)

    def activate(self, symbol: str) -> SyntheticBook:
        """The symbol's book, made now if it has none yet (starting around its last price)."""
        sym = symbol.upper()
        b = self.books.get(sym)
        if b is None:
            log = self.logs[sym]
            price = log.prices[-1] if len(log.makers) else log.spec.price
            b = self.books[sym] = SyntheticBook(
                log.spec, seed=self.seed, first_id=self.id_base, price=price, history=self.history
            )
            self.diffs[sym] = PublishedLog(DIFF_LOG)
            self.quotes[sym] = PublishedLog(QUOTE_LOG)
        return b

    # ------------------------------------------------------------------ one tick
    def advance(
        self, now_us: int, batch: list[tuple[SymbolLog, int]], wanted: Mapping[str, int], *, flow: bool = True
    ) -> list[Named]:
        """Move every book to `now_us` with the tick's trades; the messages to send, in order.

        `flow=False` (the market paused or stopped): no background changes, windows still close."""
        out: list[Named] = []
        w = now_us // WINDOW_US
        if self._win is not None and w != self._win and self.books:
            self._close(now_us, w // 10 != self._win // 10, wanted, out)
        self._win = w
        dt = 0 if self._last_us is None or not flow else max(0, now_us - self._last_us)
        self._last_us = now_us
        trades: dict[str, list[int]] = {}
        for log, i in batch:
            trades.setdefault(log.spec.symbol, []).append(i)
        for sym, b in self.books.items():
            idx = trades.get(sym, ())
            rate = self.rate_of(sym)
            per_trade = BG_PER_TRADE * min(1.0, MAX_BACKGROUND / max(1e-9, BG_PER_TRADE * rate))
            lam = STEADY_SHARE * per_trade * rate * dt / 1e6
            b.background(poisson(self.rng, lam))
            log = self.logs[sym]
            burst = (1 - STEADY_SHARE) * per_trade
            for i in idx:
                b.trade(log.prices[i], log.qtys[i], bool(log.makers[i]))
                b.background(poisson(self.rng, burst))
            tops = b.take_quotes()
            if tops:
                self._quotes(sym, tops, wanted, out)
        if wanted:
            out += agg_messages(batch, wanted, base=self.agg_base)
        return out

    def _close(self, now_us: int, second: bool, wanted: Mapping[str, int], out: list[Named]) -> None:
        for sym, b in self.books.items():
            s = sym.lower()
            d = b.close_window(now_us)
            if d is not None:
                self.diffs[sym].append(d)
                name = f"{s}@depth@100ms"
                if self.record or wanted.get(name):
                    out.append(self._diff_msg(sym, name, "diff", d))
            if second:
                d = b.close_second(now_us)
                name = f"{s}@depth"
                if d is not None and wanted.get(name):
                    out.append(self._diff_msg(sym, name, "diff1000", d))
            if wanted:
                for n in PARTIAL_LEVELS:
                    for name in (
                        (f"{s}@depth{n}@100ms", f"{s}@depth{n}") if second else (f"{s}@depth{n}@100ms",)
                    ):
                        if wanted.get(name):
                            bids, asks = b.top(n)
                            pl = b'{"lastUpdateId":%d,"bids":%s,"asks":%s}' % (
                                b.update_id,
                                encode_levels(bids),
                                encode_levels(asks),
                            )
                            out.append(Named(name, "partial", pl, pl))

    def _diff_msg(self, sym: str, name: str, kind: str, d: BookDiff) -> Named:
        body = b'"s":"%s","U":%d,"u":%d,"b":%s,"a":%s}' % (
            self._sym_b[sym],
            d.first_id,
            d.last_id,
            encode_levels(d.bids),
            encode_levels(d.asks),
        )
        return Named(
            name,
            kind,
            b'{"e":"depthUpdate","E":%d,' % (d.event_us // 1000) + body,
            b'{"e":"depthUpdate","E":%d,' % d.event_us + body,
        )

    def _quotes(self, sym: str, tops: list[Top], wanted: Mapping[str, int], out: list[Named]) -> None:
        log = self.quotes[sym]
        for t in tops:
            log.append(t)
        name = f"{sym.lower()}@bookTicker"
        if self.record or wanted.get(name):
            sb = self._sym_b[sym]
            for t in tops:
                pl = b'{"u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s"}' % (
                    t.update_id,
                    sb,
                    fmt8b(t.bid),
                    fmt8b(t.bid_qty),
                    fmt8b(t.ask),
                    fmt8b(t.ask_qty),
                )
                out.append(Named(name, "quote", pl, pl))

    # ------------------------------------------------------------------ what it says
    def snapshot(self, symbol: str, limit: int, *, stale: bool = False) -> dict[str, Any]:
        """`GET /api/v3/depth`: the best `limit` levels a side and `lastUpdateId`.

        `stale`: the book as it was ~3 s of diffs ago (or at the oldest id kept): a
        `lastUpdateId` older than what the stream shows."""
        sym = symbol.upper()
        b = self.activate(sym)
        if not stale:
            bids, asks = b.top(limit)
            uid = b.update_id
        else:
            items = self.diffs[sym].items
            uid = items[-30].first_id - 1 if len(items) >= 30 else b.oldest_id
            uid = max(uid, b.oldest_id)
            bd, ad = b.book_at(uid)
            bids = [(p, bd[p]) for p in sorted(bd, reverse=True)[:limit]]
            asks = [(p, ad[p]) for p in sorted(ad)[:limit]]
        return {
            "lastUpdateId": uid,
            "bids": [[fmt8(p), fmt8(q)] for p, q in bids],
            "asks": [[fmt8(p), fmt8(q)] for p, q in asks],
        }

    def book_json(self, symbol: str, update_id: int | None) -> dict[str, Any]:
        """The whole book (every level) at `update_id` (default: now), for the control API."""
        b = self.activate(symbol)
        uid = b.update_id if update_id is None else update_id
        bd, ad = b.book_at(uid)
        return {
            "symbol": symbol.upper(),
            "lastUpdateId": uid,
            "oldest": b.oldest_id,
            "latest": b.update_id,
            "bids": _strs(sorted(bd.items(), reverse=True)),
            "asks": _strs(sorted(ad.items())),
        }

    def books_json(self, symbol: str, update_ids: list[int]) -> dict[str, Any]:
        """The whole book at each of `update_ids` (one pass: cheaper than one `book_json` each)."""
        b = self.activate(symbol)
        return {
            "symbol": symbol.upper(),
            "books": [
                {
                    "lastUpdateId": uid,
                    "bids": _strs(sorted(bd.items(), reverse=True)),
                    "asks": _strs(sorted(ad.items())),
                }
                for uid, bd, ad in b.books_at(update_ids)
            ],
        }

    def diff_log_json(self, symbol: str, start: int) -> dict[str, Any]:
        sym = symbol.upper()
        self.activate(sym)
        first, items = self.diffs[sym].since(start)
        return {
            "symbol": sym,
            "start": first,
            "diffs": [[d.first_id, d.last_id, d.event_us, _strs(d.bids), _strs(d.asks)] for d in items],
        }

    def quote_log_json(self, symbol: str, start: int) -> dict[str, Any]:
        sym = symbol.upper()
        self.activate(sym)
        first, items = self.quotes[sym].since(start)
        return {
            "symbol": sym,
            "start": first,
            "quotes": [
                [t.update_id, fmt8(t.bid), fmt8(t.bid_qty), fmt8(t.ask), fmt8(t.ask_qty)] for t in items
            ],
        }


def agg_messages(batch: list[tuple[SymbolLog, int]], wanted: Mapping[str, int], base: int = 0) -> list[Named]:
    """`<sym>@aggTrade` of one tick's trades, for the symbols someone subscribed to: consecutive
    trades of one aggregate (same T, price and side; the trade log's numbering, as REST's
    aggTrades, plus `base`) as one message."""
    out: list[Named] = []
    group: list[int] = []
    cur: tuple[SymbolLog, int] | None = None
    for log, i in [*batch, (None, -1)]:
        key = (log, bisect.bisect_right(log.agg_starts, i) - 1) if log is not None else None
        if group and key != cur:
            assert cur is not None
            name = f"{cur[0].spec.stream}@aggTrade"
            if wanted.get(name):
                out.append(_agg_msg(cur[0], cur[1] + base, group, name))
            group = []
        cur = key
        group.append(i)
    return out


def _agg_msg(log: SymbolLog, a: int, group: list[int], name: str) -> Named:
    f, last = group[0], group[-1]
    qty = sum(log.qtys[i] for i in group)
    e = max(log.events[i] for i in group)
    t = log.times[f]
    m = b"true" if log.makers[f] else b"false"
    fmt = b'{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}'
    sb = log.spec.symbol.encode()
    p, q = fmt8b(log.prices[f]), fmt8b(qty)
    return Named(
        name,
        "agg",
        fmt % (e // 1000, sb, a, p, q, log.ids[f], log.ids[last], t // 1000, m),
        fmt % (e, sb, a, p, q, log.ids[f], log.ids[last], t, m),
    )


def _strs(levels: Levels) -> list[list[str]]:
    return [[fmt8(p), fmt8(q)] for p, q in levels]
