"""Async client of Binance's public REST API (spot market data), polite and explicit.

Used by capture (backfill of missed trade ids) and analysis (klines). It

* charges each call's request weight and reads `X-MBX-USED-WEIGHT-1M`; when the next
  call would pass the budget it waits for the next minute instead of being refused;
* on HTTP 429/418 sleeps `Retry-After` seconds and retries; retries 5xx answers,
  dropped connections and timeouts with bounded exponential backoff;
* otherwise raises `SourceError` saying what to do: HTTP 451 (binance.com refuses the
  location) → use source "binance.us"; connection refused / DNS failure → no network,
  try the local exchange; code -1121 → unknown symbol.

    async with RestClient("https://api.binance.com") as rest:
        rows = await rest.historical_trades("BTCUSDT", from_id=123, limit=1000)
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from .errors import SourceError

__all__ = ["RestClient", "RestStats", "WEIGHTS"]

WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/ticker/24hr": 2,
}
_NEAR = 0.9  # wait for the next minute rather than pass 90 % of the budget


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.weight_budget = weight_budget
        self.timeout = timeout
        self.max_retries = max_retries
        self.time_unit = time_unit.upper() if time_unit else None
        self.stats = RestStats()
        self.used_weight_1m = 0
        """The last X-MBX-USED-WEIGHT-1M the server reported (for this minute)."""
        self._minute = 0
        self._session: aiohttp.ClientSession | None = None
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ endpoints
    async def ping(self) -> None:
        await self._get("/api/v3/ping", {})

    async def server_time(self) -> int:
        """The exchange's clock, epoch ms (µs with time_unit="MICROSECOND")."""
        return int((await self._get("/api/v3/time", {}))["serverTime"])

    async def exchange_info(self, symbols: list[str] | None = None) -> dict:
        """Listing and filters of the given symbols (all without)."""
        params: dict[str, Any] = {}
        if symbols:
            names = [s.upper() for s in symbols]
            params["symbols"] = orjson.dumps(names).decode()
        return await self._get("/api/v3/exchangeInfo", params, symbol=",".join(symbols or []))

    async def historical_trades(self, symbol: str, from_id: int, limit: int = 1000) -> list[dict]:
        """Up to `limit` (≤ 1000) trades from id `from_id` on, as Binance's raw dicts."""
        return await self._get(
            "/api/v3/historicalTrades",
            {"symbol": symbol.upper(), "fromId": int(from_id), "limit": int(limit)},
            symbol=symbol,
        )

    async def recent_trades(self, symbol: str, limit: int = 500) -> list[dict]:
        """The latest `limit` (≤ 1000) trades, as Binance's raw dicts."""
        return await self._get("/api/v3/trades", {"symbol": symbol.upper(), "limit": int(limit)}, symbol=symbol)

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[dict]:
        """Aggregate trades (raw dicts)."""
        params: dict[str, Any] = {"symbol": symbol.upper(), "limit": int(limit)}
        if from_id is not None:
            params["fromId"] = int(from_id)
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get("/api/v3/aggTrades", params, symbol=symbol)

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[list]:
        """Klines as Binance's arrays: [open_time, o, h, l, c, volume, close_time, quote_volume,
        trades, taker_buy_base, taker_buy_quote, "0"] (decimals as strings)."""
        params: dict[str, Any] = {"symbol": symbol.upper(), "interval": interval, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get("/api/v3/klines", params, symbol=symbol)

    async def ticker_24hr(self, symbol: str) -> dict:
        return await self._get("/api/v3/ticker/24hr", {"symbol": symbol.upper()}, symbol=symbol)

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
        return min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())

    async def _get(self, path: str, params: dict[str, Any], *, symbol: str = "") -> Any:
        weight = WEIGHTS.get(path, 1)
        url = self.base_url + path
        session = self._session_now()
        attempt = 0
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
                    body = await resp.read()
                    retry_after = resp.headers.get("Retry-After")
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                self.stats.timeouts += 1
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{url} did not answer within {self.timeout:g} s ({attempt + 1} tries): the endpoint is "
                        "overloaded or unreachable — retry later or raise the timeout"
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            except aiohttp.ClientConnectorError as exc:
                raise SourceError(
                    f"cannot reach {self.base_url}: {exc.os_error or exc} — no network? try the local exchange: "
                    "`cryptolab exchange` / --source simulator"
                ) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
                self.stats.retries_5xx += 1
                if attempt >= self.max_retries:
                    raise SourceError(f"{url}: connection dropped {attempt + 1} times ({exc}) — retry later") from None
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if status == 200:
                return orjson.loads(body)
            if status in (429, 418):
                self.stats.retries_429 += 1
                wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else 1.0
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{self._host()} keeps answering HTTP {status} (rate limit; Retry-After {wait:g} s) after "
                        f"{attempt + 1} tries: lower the request rate or the weight budget"
                        + (" — HTTP 418 means this IP is banned for a while" if status == 418 else "")
                    )
                await asyncio.sleep(wait)
                attempt += 1
                continue
            if status >= 500:
                self.stats.retries_5xx += 1
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"{url} answered HTTP {status} {attempt + 1} times: the exchange has trouble — retry later"
                    )
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            raise self._client_error(status, body, path, symbol)

    def _client_error(self, status: int, body: bytes, path: str, symbol: str) -> SourceError:
        if status == 451:
            return SourceError(
                f"HTTP 451 from {self._host()}: Binance refuses service from this location — "
                "use source \"binance.us\" (or the local exchange: `cryptolab exchange`)"
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
            )
        return SourceError(f"{path} on {self._host()} answered HTTP {status}" + (f" {code}" if code is not None else "") + f": {msg}")
