"""What the local exchange's futures connections get: the book feed with futures messages and
the routed hub.

`FuturesFeed` is the spot book feed with Binance's futures bodies (diffs carry `T` and `pu`,
the previous diff's `u`; bookTicker carries `e`, `E`, `T`). `RoutedHub` serves Binance's 2026
paths: `/market/stream?streams=…` and `/market/ws/…` carry aggTrade, markPrice and forceOrder,
`/public/…` depth and bookTicker; unrouted `/stream`, `/ws` get the public ones only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from ..binance.usdm_streams import STREAM_KINDS
from ..model import now_us
from .book import BookDiff, Top
from .bookfeed import BookFeed, Named
from .streams import StreamHub
from .tradelog import fmt8b

_ROUTE: contextvars.ContextVar[str] = contextvars.ContextVar("usdm_route", default="")


class FuturesFeed(BookFeed):
    """The spot book feed with futures messages (diffs with `T` and `pu`, bookTicker with e/E/T)."""

    agg_base = 0
    """Added to every aggregate's index (its `a`): exchanges started apart never share aggregate ids."""

    def _diff_msg(self, sym: str, name: str, kind: str, d: BookDiff) -> Named:
        ms = d.event_us // 1000
        body = b'{"e":"depthUpdate","E":%d,"T":%d,"s":"%s","U":%d,"u":%d,"pu":%d,"b":%s,"a":%s}' % (
            ms,
            ms,
            sym.encode(),
            d.first_id,
            d.last_id,
            d.first_id - 1,
            _levels(d.bids),
            _levels(d.asks),
        )
        return Named(name, kind, body, body)

    def _quotes(self, sym: str, tops: list[Top], wanted: Mapping[str, int], out: list[Named]) -> None:
        log = self.quotes[sym]
        for t in tops:
            log.append(t)
        name = f"{sym.lower()}@bookTicker"
        if wanted.get(name):
            ms = (self._last_us or now_us()) // 1000
            for t in tops:
                pl = (
                    b'{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}'
                    % (
                        t.update_id,
                        sym.encode(),
                        fmt8b(t.bid),
                        fmt8b(t.bid_qty),
                        fmt8b(t.ask),
                        fmt8b(t.ask_qty),
                        ms,
                        ms,
                    )
                )
                out.append(Named(name, "quote", pl, pl))


def _levels(levels: Iterable[tuple[int, int]]) -> bytes:
    return b"[" + b",".join(b'["%s","%s"]' % (fmt8b(p), fmt8b(q)) for p, q in levels) + b"]"


class RoutedHub(StreamHub):
    """The futures connections: routed paths, futures stream names (see the module doc)."""

    def __init__(self, *args: Any, activate: Callable[[str], Any], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.activate = activate

    async def routed(self, request: web.Request) -> web.StreamResponse:
        _ROUTE.set(request.match_info.get("route", ""))
        if request.path.endswith("/stream"):
            request = request.clone(rel_url="/stream?" + request.query_string)
        return await self.handle(request)

    def _resubscribe(self, c: Any) -> None:
        route = _ROUTE.get() or "public"  # unrouted: the public streams only (Binance, 2026)
        named = set()
        for name in c.streams:
            sym, _, kind = name.partition("@")
            if sym.upper() in self.logs and sym == sym.lower() and STREAM_KINDS.get(kind) == route:
                named.add(name)
        c.symbols = frozenset()
        books = {
            n.partition("@")[0].upper()
            for n in named - c.named
            if STREAM_KINDS.get(n.partition("@")[2]) == "public"
        }
        self._set_named(c, frozenset(named))
        for sym in books:
            self.activate(sym)
