"""The local exchange's REST API: Binance spot's public market-data endpoints.

`/api/v3/{ping,time,exchangeInfo,trades,historicalTrades,aggTrades,klines,ticker/24hr}`
answered from the exchange's own trade logs, with Binance's request weights (per
client IP and UTC minute, `X-MBX-USED-WEIGHT-1M`), HTTP 429 + `Retry-After` past the
budget, Binance's error bodies (`{"code": -1121, "msg": "Invalid symbol."}` …), the
`X-MBX-TIME-UNIT: MICROSECOND` header, and the REST faults (429/500/timeouts) the fault
injector arms or draws. `ExchangeServer` composes it with the logs, the injector and the
counters it shares with the streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping

from ..binance.rest import WEIGHTS, AggTrade, Kline, RestTrade
from ..model import now_us, to_us

if TYPE_CHECKING:
    from .injector import FaultInjector
from .tradelog import KLINE_INTERVALS_MS, SymbolLog, fmt8, fmt_scaled

__all__ = ["ApiError", "RestApi", "json_response"]

Query = MultiMapping[str]
Ticker = dict[str, str | int]


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer in Binance's compact form."""
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


class ApiError(Exception):
    """A REST error answered in Binance's shape: HTTP status + {"code", "msg"}."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


def _bad_int(name: str) -> ApiError:
    return ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
    )


def _int_param(q: Query, name: str, default: int | None = None) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 20:
        raise _bad_int(name)
    return int(raw)


def _time_param(q: Query, name: str) -> int | None:
    """A time parameter in ms or µs (detected) → µs."""
    v = _int_param(q, name)
    if v is None:
        return None
    return to_us(v)


MAX_DEPTH_LIMIT = 5000


def depth_weight(limit: int) -> int:
    """Binance spot's request weight of `GET /api/v3/depth?limit=N`."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


DepthSource = Callable[[str, int, bool], dict[str, Any]]
"""(symbol, limit, stale) → the `/api/v3/depth` answer (`lastUpdateId`, `bids`, `asks`)."""


class RestApi:
    """REST handlers over the exchange's trade logs; one request weight budget per client IP."""

    def __init__(
        self,
        logs: dict[str, SymbolLog],
        faults: FaultInjector,
        stats: dict[str, int],
        describe: Callable[[], dict[str, Any]],
        weight_budget: int = 6000,
    ) -> None:
        self.logs = logs
        self.faults = faults
        self.stats = stats
        self.describe = describe
        self.weight_budget = weight_budget
        self._weights: dict[str, tuple[int, int]] = {}  # ip -> (minute, used)
        self._stale = False
        self.depth: DepthSource | None = None
        """Where `/api/v3/depth` is answered from (the book feed, or a replayed recording)."""

    def _use_weight(self, ip: str, weight: int) -> tuple[bool, int, int]:
        """Charge the weight of one request; (allowed, used this minute, seconds to next minute)."""
        t = time.time()
        minute = int(t // 60)
        m, used = self._weights.get(ip, (minute, 0))
        if m != minute:
            used = 0
        if used + weight > self.weight_budget:
            self._weights[ip] = (minute, used)
            return False, used, max(1, int(60 - t % 60) + 1)
        used += weight
        self._weights[ip] = (minute, used)
        return True, used, 0

    async def handle(self, request: web.Request) -> web.Response:
        """`/api/…`: one REST call, answered as Binance would."""
        self.stats["rest_requests"] += 1
        path = request.path.rstrip("/")
        handler: Callable[[Query, bool], object] | None = {
            "/api/v3/ping": lambda q, micro: {},
            "/api/v3/time": self._api_time,
            "/api/v3/exchangeInfo": self._api_exchange_info,
            "/api/v3/trades": self._api_trades,
            "/api/v3/historicalTrades": self._api_historical,
            "/api/v3/aggTrades": self._api_agg_trades,
            "/api/v3/klines": self._api_klines,
            "/api/v3/ticker/24hr": self._api_ticker,
            "/api/v3/depth": self._api_depth,
        }.get(path)
        if handler is None:
            return json_response(
                {"code": -1000, "msg": f"Unknown endpoint {request.method} {request.path}."}, 404
            )
        if request.method != "GET":
            return json_response({"code": -1000, "msg": f"{request.method} is not supported on {path}."}, 405)
        fault = self.faults.next_rest_fault()
        if fault is not None:
            kind, p = fault
            self.faults.count(kind)
            if kind == "rest_429":
                return json_response(
                    {"code": -1003, "msg": "Too many requests; please use the websocket for live updates."},
                    429,
                    {"Retry-After": "1"},
                )
            if kind == "rest_500":
                return json_response(
                    {
                        "code": -1001,
                        "msg": "Internal error; unable to process your request. Please try again.",
                    },
                    500,
                )
            await asyncio.sleep(p["seconds"])
            return json_response(
                {"code": -1007, "msg": "Timeout waiting for response from backend server."}, 504
            )
        q = request.query
        if path == "/api/v3/depth":
            early = self._depth_fault()
            if early is not None:
                return early
            try:
                weight = depth_weight(self._depth_limit(q))
            except ApiError as exc:
                return json_response({"code": exc.code, "msg": exc.msg}, exc.status)
        else:
            weight = WEIGHTS[path]  # Binance's request weights: one table, shared with the client
        if path == "/api/v3/ticker/24hr" and "symbol" not in q:
            try:
                n = len(self._symbols_param(q) or ())
            except ApiError as exc:
                return json_response({"code": exc.code, "msg": exc.msg}, exc.status)
            weight = 80 if n == 0 or n > 100 else (40 if n > 20 else 2)
        ok, used, wait = self._use_weight(request.remote or "?", weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
        if not ok:
            self.stats["rest_429_budget"] += 1
            headers["Retry-After"] = str(wait)
            return json_response(
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {self.weight_budget} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                    "polling the API.",
                },
                429,
                headers,
            )
        micro = request.headers.get("X-MBX-TIME-UNIT", "").upper() == "MICROSECOND"
        try:
            body = handler(q, micro)
        except ApiError as exc:
            return json_response({"code": exc.code, "msg": exc.msg}, exc.status, headers)
        return json_response(body, 200, headers)

    def _depth_fault(self) -> web.Response | None:
        """snapshot_429 / snapshot_500 answered here; snapshot_stale is remembered for the answer."""
        self._stale = False
        kind = self.faults.next_snapshot_fault()
        if kind is None:
            return None
        self.faults.count(kind)
        if kind == "snapshot_429":
            return json_response(
                {"code": -1003, "msg": "Too many requests; please use the websocket for live updates."},
                429,
                {"Retry-After": "1"},
            )
        if kind == "snapshot_500":
            return json_response(
                {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
                500,
            )
        self._stale = True
        return None

    def _depth_limit(self, q: Query) -> int:
        v = _int_param(q, "limit", 100)
        assert v is not None
        if v < 1:
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            )
        return min(v, MAX_DEPTH_LIMIT)  # Binance answers at most 5000 levels

    def _api_depth(self, q: Query, micro: bool) -> dict[str, Any]:
        self._check_params(q, ("symbol", "limit"))
        log = self._symbol(q)
        if self.depth is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return self.depth(log.spec.symbol, self._depth_limit(q), self._stale)

    def _check_params(self, q: Query, allowed: tuple[str, ...]) -> None:
        extra = [k for k in q if k not in allowed]
        if extra:
            raise ApiError(
                400,
                -1104,
                f"Not all sent parameters were read; read '{len(q) - len(extra)}' parameter(s) but was sent "
                f"'{len(q)}'.",
            )

    def _symbol(self, q: Query) -> SymbolLog:
        raw = q.get("symbol")
        if not raw:
            raise ApiError(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if not all(ch.isupper() or ch.isdigit() or ch in "-_." for ch in raw) or len(raw) > 20:
            raise ApiError(
                400,
                -1100,
                "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
            )
        log = self.logs.get(raw)
        if log is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return log

    def _symbols_param(self, q: Query) -> list[str] | None:
        if "symbol" in q:
            return [self._symbol(q).spec.symbol]
        if "symbols" in q:
            try:
                names = json.loads(q["symbols"])
                assert isinstance(names, list) and names and all(isinstance(n, str) for n in names)
            except (ValueError, AssertionError):
                raise ApiError(
                    400,
                    -1100,
                    "Illegal characters found in parameter 'symbols'; legal range is "
                    "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.",
                ) from None
            for n in names:
                if n not in self.logs:
                    raise ApiError(400, -1121, "Invalid symbol.")
            return names
        return None

    def _limit(self, q: Query, default: int = 500, most: int = 1000) -> int:
        v = _int_param(q, "limit", default)
        assert v is not None
        if v < 1:
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            )
        return min(v, most)

    def _api_time(self, q: Query, micro: bool) -> dict[str, int]:
        self._check_params(q, ())
        t = now_us()
        return {"serverTime": t if micro else t // 1000}

    def _api_exchange_info(self, q: Query, micro: bool) -> dict[str, object]:
        self._check_params(q, ("symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"))
        names = self._symbols_param(q) or list(self.logs)
        t = now_us()
        return {
            "timezone": "UTC",
            "serverTime": t if micro else t // 1000,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_budget,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self.logs[n].spec.exchange_info() for n in names],
            # not Binance's: tells clients whether these trades are real (see RestClient.market_info)
            "cryptolab": self.describe(),
        }

    def _api_trades(self, q: Query, micro: bool) -> list[RestTrade]:
        self._check_params(q, ("symbol", "limit"))
        log = self._symbol(q)
        limit = self._limit(q)
        n = len(log.makers)
        return [log.rest_trade(i, micro) for i in range(max(0, n - limit), n)]

    def _api_historical(self, q: Query, micro: bool) -> list[RestTrade]:
        self._check_params(q, ("symbol", "limit", "fromId"))
        log = self._symbol(q)
        limit = self._limit(q)
        from_id = _int_param(q, "fromId")
        n = len(log.makers)
        start = max(0, n - limit) if from_id is None else log.index_of_id(from_id)
        return [log.rest_trade(i, micro) for i in range(start, min(n, start + limit))]

    def _api_agg_trades(self, q: Query, micro: bool) -> list[AggTrade]:
        self._check_params(q, ("symbol", "fromId", "startTime", "endTime", "limit"))
        log = self._symbol(q)
        limit = self._limit(q)
        from_id = _int_param(q, "fromId")
        start_us, end_us = _time_param(q, "startTime"), _time_param(q, "endTime")
        if start_us is not None and end_us is not None and start_us > end_us:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        n = len(log.agg_starts)
        if from_id is not None:
            a = from_id
        elif start_us is not None:
            a = log.agg_index_of_time(start_us)
        elif end_us is not None:
            a = max(0, log.agg_index_of_time(end_us + 1) - limit)
        else:
            a = max(0, n - limit)
        out: list[AggTrade] = []
        while a < n and len(out) < limit:
            row = log.rest_agg(a, micro)
            t = log.times[log.agg_starts[a]]
            if end_us is not None and t > end_us:
                break
            out.append(row)
            a += 1
        return out

    def _api_klines(self, q: Query, micro: bool) -> list[Kline]:
        self._check_params(q, ("symbol", "interval", "startTime", "endTime", "limit", "timeZone"))
        log = self._symbol(q)
        interval = q.get("interval")
        if not interval:
            raise ApiError(
                400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        step = KLINE_INTERVALS_MS.get(interval)
        if step is None:
            raise ApiError(400, -1120, "Invalid interval.")
        if q.get("timeZone", "0") not in ("0", "+0", "-0", "00:00", "+00:00", "-00:00"):
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'timeZone': only UTC (0) is served here."
            )
        limit = self._limit(q)
        start_us, end_us = _time_param(q, "startTime"), _time_param(q, "endTime")
        if start_us is not None and end_us is not None and start_us > end_us:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        now_ms = now_us() // 1000
        end_ms = (end_us // 1000) if end_us is not None else now_ms
        if start_us is not None:
            start_ms = start_us // 1000
        else:
            last_open = min(end_ms, log.times[-1] // 1000 if len(log.makers) else end_ms) // step * step
            start_ms = last_open - (limit - 1) * step
        return log.klines(step, start_ms, end_ms, limit, micro)

    def _api_ticker(self, q: Query, micro: bool) -> Ticker | list[Ticker]:
        self._check_params(q, ("symbol", "symbols", "type"))
        single = "symbol" in q
        names = self._symbols_param(q) or list(self.logs)
        now = now_us()
        rows = [self._ticker(self.logs[n], now, micro) for n in names]
        return rows[0] if single else rows

    def _ticker(self, log: SymbolLog, now: int, micro: bool) -> Ticker:
        k = 1 if micro else 1000
        n = len(log.makers)
        i = log.index_of_time(now - 86_400_000_000)
        base: Ticker = {
            "symbol": log.spec.symbol,
            "openTime": (now - 86_400_000_000) // k,
            "closeTime": now // k,
        }
        if i >= n:
            zero = fmt8(0)
            last = fmt8(log.prices[n - 1]) if n else zero
            return {
                **base,
                "priceChange": zero,
                "priceChangePercent": "0.000",
                "weightedAvgPrice": zero,
                "prevClosePrice": last,
                "lastPrice": last,
                "lastQty": zero,
                "bidPrice": last,
                "bidQty": zero,
                "askPrice": last,
                "askQty": zero,
                "openPrice": last,
                "highPrice": last,
                "lowPrice": last,
                "volume": zero,
                "quoteVolume": zero,
                "firstId": -1,
                "lastId": -1,
                "count": 0,
            }
        prices = log.prices[i:n]
        qtys = log.qtys[i:n]
        vol = sum(qtys)
        quote = sum(p * q for p, q in zip(prices, qtys))
        o, c = prices[0], prices[-1]
        change = c - o
        pct = (change * 100_000 // o) if o else 0  # thousandths of a percent
        pct_s = f"{'-' if pct < 0 else ''}{abs(pct) // 1000}.{abs(pct) % 1000:03d}"
        vwap = quote // vol if vol else 0  # units·units/units → price units (floored)
        spread = log.spec.tick
        return {
            **base,
            "priceChange": fmt8(change),
            "priceChangePercent": pct_s,
            "weightedAvgPrice": fmt8(vwap),
            "prevClosePrice": fmt8(log.prices[i - 1]) if i > 0 else fmt8(o),
            "lastPrice": fmt8(c),
            "lastQty": fmt8(qtys[-1]),
            "bidPrice": fmt8(c - spread if log.makers[n - 1] == 0 else c),
            "bidQty": fmt8(log.spec.lot),
            "askPrice": fmt8(c if log.makers[n - 1] == 0 else c + spread),
            "askQty": fmt8(log.spec.lot),
            "openPrice": fmt8(o),
            "highPrice": fmt8(max(prices)),
            "lowPrice": fmt8(min(prices)),
            "volume": fmt8(vol),
            "quoteVolume": fmt_scaled(quote, 16),
            "openTime": log.times[i] // k,
            "closeTime": log.times[n - 1] // k,
            "firstId": log.ids[i],
            "lastId": log.ids[n - 1],
            "count": n - i,
        }
