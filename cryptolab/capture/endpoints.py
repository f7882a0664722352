"""Where a source's WebSocket streams and REST API live."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import SourceError

__all__ = ["KNOWN_SOURCES", "Endpoint", "resolve_source"]


@dataclass(frozen=True)
class Endpoint:
    """A source's name, WebSocket base URL and REST base URL.

    `micro`: the source gives trade times in µs when asked (the streams' `timeUnit=MICROSECOND`,
    REST's `X-MBX-TIME-UNIT: MICROSECOND`): Binance and the local exchange do, and the capture
    then stores the exchange's full µs times — the same times as its dumps since 2025."""

    name: str
    ws: str
    rest: str
    micro: bool = True

    @property
    def time_unit(self) -> str | None:
        """The REST client's `time_unit` for this source (None: its default, ms)."""
        return "MICROSECOND" if self.micro else None

    @property
    def local(self) -> bool:
        host = urlsplit(self.ws).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")


KNOWN_SOURCES = {
    "binance": Endpoint("binance", "wss://stream.binance.com:9443", "https://api.binance.com"),
    # Binance.US documents no µs option: its default ms times
    "binance.us": Endpoint(
        "binance.us", "wss://stream.binance.us:9443", "https://api.binance.us", micro=False
    ),
    "binance-data": Endpoint(
        "binance-data", "wss://data-stream.binance.vision", "https://data-api.binance.vision"
    ),
}


def resolve_source(source: str) -> Endpoint:
    """A source name (`binance`, `binance.us`, `binance-data`) or a local exchange URL → Endpoint."""
    if source in KNOWN_SOURCES:
        return KNOWN_SOURCES[source]
    parts = urlsplit(source)
    if parts.scheme in ("ws", "wss", "http", "https") and parts.netloc:
        secure = parts.scheme in ("wss", "https")
        return Endpoint(
            source,
            f"{'wss' if secure else 'ws'}://{parts.netloc}",
            f"{'https' if secure else 'http'}://{parts.netloc}",
        )
    raise SourceError(
        f"unknown source {source!r}: use binance, binance.us, binance-data, simulator, "
        "or the URL of a local exchange (ws://127.0.0.1:PORT)"
    )
