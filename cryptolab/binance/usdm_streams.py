"""Binance USD-M futures streams: names, routes and URLs (pure).

Routed streams (Binance, 2026): depth and bookTicker on `/public`, aggTrade, markPrice and
forceOrder on `/market` (an unrouted URL gets the public ones only): `stream_urls()` gives the
URL of each route for a set of symbols and kinds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import DataError

__all__ = ["DEFAULT_FSTREAM_URL", "STREAM_KINDS", "route_of", "stream_name", "stream_urls"]


DEFAULT_FSTREAM_URL = "wss://fstream.binance.com"
"""Binance's futures stream root (CRYPTOLAB_FSTREAM_URL overrides it)."""
STREAM_KINDS = {"aggTrade": "market", "markPrice@1s": "market", "markPrice": "market", "forceOrder": "market",
                "bookTicker": "public", "depth": "public", "depth@100ms": "public", "depth@0ms": "public",
                "depth@500ms": "public"}
"""Each futures stream kind and its route (Binance's 2026 routed URLs)."""


# ---------------------------------------------------------------------- routed stream URLs
def route_of(stream: str) -> str:
    """`btcusdt@aggTrade` → "market", `btcusdt@depth@100ms` → "public" (Binance's 2026 routes)."""
    _, _, kind = stream.partition("@")
    route = STREAM_KINDS.get(kind)
    if route is None:
        raise DataError(f"unknown futures stream {stream!r}: use <symbol>@ one of {', '.join(STREAM_KINDS)}")
    return route


def stream_name(symbol: str, kind: str) -> str:
    """`("BTCUSDT", "markPrice@1s")` → `btcusdt@markPrice@1s`."""
    name = f"{symbol.strip().lower()}@{kind}"
    route_of(name)
    return name


def stream_urls(
    symbols: Sequence[str],
    kinds: Iterable[str] = ("aggTrade", "markPrice@1s", "forceOrder"),
    base: str | None = None,
) -> dict[str, str]:
    """The combined-stream URL of each route the streams need: `{"market": "wss://…/market/stream?streams=…"}`
    (`base` None: the settings' `fstream_url`)."""
    if base is None:
        from ..config import settings

        base = settings().fstream_url
    by_route: dict[str, list[str]] = {}
    for sym in symbols:
        for kind in kinds:
            name = stream_name(sym, kind)
            by_route.setdefault(route_of(name), []).append(name)
    root = base.rstrip("/")
    return {
        route: f"{root}/{route}/stream?streams={'/'.join(names)}" for route, names in sorted(by_route.items())
    }
