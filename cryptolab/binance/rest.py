"""Async client of Binance's public REST API (spot market data), polite and explicit.

Used by capture (backfill of missed trade ids) and analysis (klines). It

* charges each call's request weight and reads `X-MBX-USED-WEIGHT-1M`; when the next
  call would pass the budget it waits for the next minute instead of being refused;
* on HTTP 429/418 sleeps `Retry-After` seconds and retries, but waits at most
  `max_retry_after` seconds in all for one call (a server asking for more gets a
  `SourceError` naming the endpoint and the wait it asked); retries 5xx answers,
  dropped connections and timeouts with bounded exponential backoff;
* reads at most `max_response_bytes` of one answer (64 MiB by default): a longer one
  is cut off and raises `SourceError` naming the endpoint, never fills the memory;
* otherwise raises `SourceError` saying what to do: HTTP 451 (binance.com refuses the
  location) → use source "binance.us"; connection refused / DNS failure → no network,
  try the local exchange; code -1121 → unknown symbol.

    async with RestClient("https://api.binance.com") as rest:
        rows = await rest.historical_trades("BTCUSDT", from_id=123, limit=1000)
        info = await rest.market_info(["BTCUSDT"])   # info.synthetic: the local exchange's made-up market

Rows come back as Binance prints them (JSON objects typed below as `TypedDict`s of
Binance's documented fields); the client checks the shape of the answer (an object or
a list) but not each field: callers that store rows validate them (`wire.trade_from_rest`).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

import aiohttp
import orjson

from ..errors import SourceError
from ..model import DEFAULT_EXCHANGE, SIMULATOR_EXCHANGE

__all__ = [
    "RestClient",
    "RestStats",
    "WEIGHTS",
    "depth_weight",
    "MarketInfo",
    "RestTrade",
    "AggTrade",
    "Kline",
    "Ticker24h",
    "SymbolInfo",
    "ExchangeInfo",
    "LocalExchangeInfo",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRY_AFTER",
]

WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/ticker/24hr": 2,
    # USD-M futures (binance.usdm.UsdmRestClient; budget 2400 a minute)
    "/fapi/v1/time": 1,
    "/fapi/v1/exchangeInfo": 1,
    "/fapi/v1/aggTrades": 20,
    "/fapi/v1/klines": 5,
    "/fapi/v1/markPriceKlines": 5,
    "/fapi/v1/fundingRate": 1,
    "/fapi/v1/openInterest": 1,
    "/futures/data/openInterestHist": 1,
}


def depth_weight(limit: int) -> int:
    """Binance's request weight of `GET /api/v3/depth` for `limit` levels (1…5000)."""
    if not 1 <= limit <= 5000:
        raise ValueError(f"depth limit {limit} is outside 1…5000")
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


_NEAR = 0.9  # wait for the next minute rather than pass 90 % of the budget
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest answer read (bytes, after decompression); a 1000-row page is ~150 kB."""
DEFAULT_MAX_RETRY_AFTER = 120.0
"""Longest total wait (s) one call spends honouring `Retry-After` before giving up."""
_CHUNK = 256 * 1024

Params = dict[str, str | int]


class RestTrade(TypedDict):
    """One row of /api/v3/trades and /api/v3/historicalTrades (decimals as strings)."""

    id: int
    price: str
    qty: str
    quoteQty: str
    time: int  # ms (µs with time_unit="MICROSECOND")
    isBuyerMaker: bool
    isBestMatch: bool


class AggTrade(TypedDict):
    """One row of /api/v3/aggTrades."""

    a: int  # aggregate id
    p: str  # price
    q: str  # quantity
    f: int  # first trade id
    l: int  # last trade id  # noqa: E741 (Binance's name)
    T: int  # time, ms (µs with time_unit="MICROSECOND")
    m: bool  # buyer is the maker
    M: bool

Kline = list[int | str]
"""[open_time, open, high, low, close, volume, close_time, quote_volume, trades,
taker_buy_base, taker_buy_quote, "0"]: times and counts ints, decimals strings."""


class Ticker24h(TypedDict):
    """/api/v3/ticker/24hr for one symbol (the fields cryptolab reads; Binance sends more)."""

    symbol: str
    priceChange: str
    priceChangePercent: str
    weightedAvgPrice: str
    lastPrice: str
    openPrice: str
    highPrice: str
    lowPrice: str
    volume: str
    quoteVolume: str
    openTime: int
    closeTime: int
    firstId: int
    lastId: int
    count: int


class SymbolInfo(TypedDict):
    """One entry of exchangeInfo's `symbols` (the fields cryptolab reads; Binance sends more)."""

    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str


class LocalExchangeInfo(TypedDict, total=False):
    """The `cryptolab` object the local exchange adds to exchangeInfo (Binance has none)."""

    synthetic: bool  # True: the synthetic market (made-up trades); False: a replay of real data
    source: str  # "simulator" or "replay"
    seed: int  # synthetic market: the random seed


class _ExchangeInfoBase(TypedDict):
    timezone: str
    serverTime: int
    symbols: list[SymbolInfo]


class ExchangeInfo(_ExchangeInfoBase, total=False):
    """/api/v3/exchangeInfo (the fields cryptolab reads; Binance sends more)."""

    cryptolab: LocalExchangeInfo


@dataclass(frozen=True)
class MarketInfo:
    """What an exchange says it serves (`RestClient.market_info`).

    `synthetic` is True only for the local exchange's synthetic market: its trades are
    made up and must never be stored as a real exchange's. `local` is True for any
    cryptolab local exchange (synthetic or replaying real data, `source` "simulator" or
    "replay"); a real exchange is `local=False, synthetic=False, source="exchange"`.
    """

    symbols: tuple[str, ...]
    synthetic: bool
    local: bool
    source: str
    seed: int | None = None

    @property
    def stored_as(self) -> str:
        """The `exchange` its trades are stored under unless the user names one: "simulator"
        for a synthetic market (never a real exchange's name), else Binance's."""
        return SIMULATOR_EXCHANGE if self.synthetic else DEFAULT_EXCHANGE


@dataclass
class RestStats:
    """What one client did (cumulative)."""

    requests: int = 0
    weight_used: int = 0
    retries_429: int = 0
    retries_5xx: int = 0
    timeouts: int = 0
    budget_waits: int = 0


class RestClient:
    """Binance spot public REST client (aiohttp); one per event loop."""

    def __init__(
        self,
        base_url: str,
        *,
        weight_budget: int = 6000,
        timeout: float = 10.0,
        max_retries: int = 5,
        time_unit: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.weight_budget = weight_budget
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.max_retry_after = max_retry_after
        self.time_unit = time_unit.upper() if time_unit else None
        self.stats = RestStats()
        self.used_weight_1m = 0
        """The last X-MBX-USED-WEIGHT-1M the server reported (for this minute)."""
        self._minute = 0
        self._session: aiohttp.ClientSession | None = None
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ endpoints
    async def ping(self) -> None:
        await self._get_object("/api/v3/ping", {})

    async def server_time(self) -> int:
        """The exchange's clock, epoch ms (µs with time_unit="MICROSECOND")."""
        body = await self._get_object("/api/v3/time", {})
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(
                f"{self.base_url}/api/v3/time answered without a serverTime: {body!r:.200}"
            ) from None

    async def exchange_info(self, symbols: list[str] | None = None) -> ExchangeInfo:
        """Listing and filters of the given symbols (all without), as Binance prints them."""
        params: Params = {}
        if symbols:
            names = [s.upper() for s in symbols]
            params["symbols"] = orjson.dumps(names).decode()
        body = await self._get_object("/api/v3/exchangeInfo", params, symbol=",".join(symbols or []))
        return cast(ExchangeInfo, body)  # Binance's documented shape, not checked field by field

    async def market_info(self, symbols: list[str] | None = None) -> MarketInfo:
        """What the exchange serves: its symbols (the given ones, all without) and whether
        the trades are real (`synthetic=False`) or the local exchange's made-up market.

        One exchangeInfo call (weight 20). A capture calls it before storing anything, to
        choose the `exchange` its rows are stored under (synthetic → "simulator").
        """
        info = await self.exchange_info(symbols)
        names = tuple(str(s.get("symbol", "")) for s in info.get("symbols", []) if isinstance(s, dict))
        local = info.get("cryptolab")
        if not isinstance(local, dict):
            return MarketInfo(symbols=names, synthetic=False, local=False, source="exchange")
        synthetic = local.get("synthetic")
        if not isinstance(synthetic, bool):
            raise SourceError(
                f"{self.base_url}/api/v3/exchangeInfo: the local exchange's `cryptolab.synthetic` is "
                f"{synthetic!r}, not true/false — is this a cryptolab local exchange?"
            )
        seed = local.get("seed")
        return MarketInfo(
            symbols=names,
            synthetic=synthetic,
            local=True,
            source=str(local.get("source", "simulator" if synthetic else "replay")),
            seed=seed if isinstance(seed, int) else None,
        )

    async def historical_trades(self, symbol: str, from_id: int, limit: int = 1000) -> list[RestTrade]:
        """Up to `limit` (≤ 1000) trades from id `from_id` on, as Binance prints them."""
        return await self._get_list(
            "/api/v3/historicalTrades",
            {"symbol": symbol.upper(), "fromId": int(from_id), "limit": int(limit)},
            symbol=symbol,
        )

    async def depth(self, symbol: str, limit: int = 1000) -> dict[str, Any]:
        """The book's `limit` best levels a side with its `lastUpdateId` (weight 5…250 by `limit`)."""
        return await self._get_object(
            "/api/v3/depth",
            {"symbol": symbol.upper(), "limit": int(limit)},
            symbol=symbol,
            weight=depth_weight(limit),
        )

    async def recent_trades(self, symbol: str, limit: int = 500) -> list[RestTrade]:
        """The latest `limit` (≤ 1000) trades, as Binance prints them."""
        return await self._get_list(
            "/api/v3/trades", {"symbol": symbol.upper(), "limit": int(limit)}, symbol=symbol
        )

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[AggTrade]:
        """Aggregate trades, as Binance prints them."""
        params: Params = {"symbol": symbol.upper(), "limit": int(limit)}
        if from_id is not None:
            params["fromId"] = int(from_id)
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/api/v3/aggTrades", params, symbol=symbol)

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Kline]:
        """Klines as Binance's arrays: [open_time, o, h, l, c, volume, close_time, quote_volume,
        trades, taker_buy_base, taker_buy_quote, "0"] (decimals as strings)."""
        params: Params = {"symbol": symbol.upper(), "interval": interval, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/api/v3/klines", params, symbol=symbol)

    async def ticker_24hr(self, symbol: str) -> Ticker24h:
        """24-hour statistics of one symbol."""
        body = await self._get_object("/api/v3/ticker/24hr", {"symbol": symbol.upper()}, symbol=symbol)
        return cast(Ticker24h, body)  # Binance's documented shape, not checked field by field

    # ------------------------------------------------------------------ plumbing
    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "cryptolab"}
            if self.time_unit:
                headers["X-MBX-TIME-UNIT"] = self.time_unit
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def _respect_budget(self, weight: int) -> None:
        """Wait for the next minute when this call would pass ~90 % of the weight budget."""
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self.used_weight_1m = minute, 0
        if self.used_weight_1m + weight > self.weight_budget * _NEAR:
            self.stats.budget_waits += 1
            await asyncio.sleep(60 - time.time() % 60 + 0.05)
            self._minute, self.used_weight_1m = int(time.time() // 60), 0

    def _host(self) -> str:
        return urlsplit(self.base_url).hostname or self.base_url

    def _backoff(self, attempt: int) -> float:
        return min(5.0, 0.2 * 2.0**attempt) * (0.5 + random.random())

    async def _get_object(
        self, path: str, params: Params, *, symbol: str = "", weight: int | None = None
    ) -> dict[str, Any]:
        body = await self._get(path, params, symbol=symbol, weight=weight)
        if not isinstance(body, dict):
            raise SourceError(
                f"{self.base_url}{path} answered {type(body).__name__}, not a JSON object: {body!r:.200}"
            )
        return body

    async def _get_list(self, path: str, params: Params, *, symbol: str = "") -> list[Any]:
        body = await self._get(path, params, symbol=symbol)
        if not isinstance(body, list):
            raise SourceError(
                f"{self.base_url}{path} answered {type(body).__name__}, not a JSON list: {body!r:.200}"
            )
        return body

    async def _read_capped(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The body, or SourceError once it passes `max_response_bytes` (stops reading there)."""
        cap = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise SourceError(
                f"{url} announced an answer of {resp.content_length:,} bytes, more than "
                f"max_response_bytes={cap:,}: not read — ask for fewer rows (limit) or raise "
                "max_response_bytes"
            )
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > cap:
                raise SourceError(
                    f"{url} sent more than max_response_bytes={cap:,} bytes in one answer: cut off — "
                    "a misbehaving server, or ask for fewer rows (limit) / raise max_response_bytes"
                )
        return bytes(buf)

    async def _get(self, path: str, params: Params, *, symbol: str = "", weight: int | None = None) -> object:
        weight = weight if weight is not None else WEIGHTS.get(path, 1)
        url = self.base_url + path
        session = self._session_now()
        attempt = 0
        waited = 0.0  # seconds slept on Retry-After for this call
        while True:
            await self._respect_budget(weight)
            self.stats.requests += 1
            self.stats.weight_used += weight
            self.used_weight_1m += weight
            try:
                async with session.get(url, params=params) as resp:
                    used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                    if used is not None and used.isdigit():
                        self.used_weight_1m = int(used)
                        self._minute = int(time.time() // 60)
                    status = resp.status
                    body = await self._read_capped(resp, url)
                    retry_after = resp.headers.get("Retry-After")
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                self.stats.timeouts += 1
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{url} did not answer within {self.timeout:g} s ({attempt + 1} tries): the endpoint "
                        "is overloaded or unreachable — retry later or raise the timeout"
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            except aiohttp.ClientConnectorError as exc:
                raise SourceError(
                    f"cannot reach {self.base_url}: {exc.os_error or exc} — no network? try the local "
                    "exchange: `cryptolab exchange` / --source simulator"
                ) from None
            except (
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientPayloadError,
                aiohttp.ClientOSError,
            ) as exc:
                self.stats.retries_5xx += 1
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{url}: connection dropped {attempt + 1} times ({exc}) — retry later"
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if status == 200:
                try:
                    return orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise SourceError(
                        f"{url} answered HTTP 200 with invalid JSON ({exc}): {body[:200]!r}"
                    ) from None
            if status in (429, 418):
                self.stats.retries_429 += 1
                wait = (
                    float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else 1.0
                )
                if waited + wait > self.max_retry_after:
                    raise SourceError(
                        f"{url} answered HTTP {status} asking to wait {wait:g} s (Retry-After) — more than "
                        f"max_retry_after={self.max_retry_after:g} s in all for one call"
                        + (f" (already waited {waited:g} s)" if waited else "")
                        + ": retry later, or lower the request rate"
                        + (" — HTTP 418 means this IP is banned for a while" if status == 418 else "")
                    )
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{self._host()} keeps answering HTTP {status} (rate limit; Retry-After {wait:g} s) "
                        f"after {attempt + 1} tries: lower the request rate or the weight budget"
                        + (" — HTTP 418 means this IP is banned for a while" if status == 418 else "")
                    )
                await asyncio.sleep(wait)
                waited += wait
                attempt += 1
                continue
            if status >= 500:
                self.stats.retries_5xx += 1
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{url} answered HTTP {status} {attempt + 1} times: the exchange has trouble — retry "
                        "later"
                    )
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            raise self._client_error(status, body, path, symbol)

    def _client_error(self, status: int, body: bytes, path: str, symbol: str) -> SourceError:
        if status == 451:
            return SourceError(
                f"HTTP 451 from {self._host()}: Binance refuses service from this location — "
                'use source "binance.us" (or the local exchange: `cryptolab exchange`)'
            )
        code, msg = None, body[:200].decode("utf-8", "replace")
        try:
            err = orjson.loads(body)
            code, msg = err.get("code"), err.get("msg", msg)
        except (orjson.JSONDecodeError, AttributeError):
            pass
        if code == -1121:
            return SourceError(
                f"unknown symbol {symbol.upper() or '?'} on {self._host()}: check the spelling "
                "(exchangeInfo lists the symbols; binance.us lists fewer than binance.com)"
                + (
                    "; a spot-only symbol? capture it without --market usdm"
                    if path.startswith("/fapi")
                    else "; a USD-M futures contract? add --market usdm"
                )
            )
        return SourceError(
            f"{path} on {self._host()} answered HTTP {status}"
            + (f" {code}" if code is not None else "")
            + f": {msg}"
        )
