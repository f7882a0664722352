"""`/fapi/v1/…` of the local exchange's futures market: Binance's futures answers (ms times)
over the perps, with the REST faults (`rest_*`, and `snapshot_*` on `/fapi/v1/depth`).

It reads the market through `PerpMarket` (what it needs of `UsdmMarket`), so the market
imports it and not the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from ..model import now_us
from .injector import FaultInjector
from .rest_api import ApiError, Query, RestApi, _int_param, _time_param, json_response
from .tradelog import SymbolLog
from .usdm_perp import HOUR_MS, Perp
from .usdm_streams import FuturesFeed


class PerpMarket(Protocol):
    """What the REST side reads of the futures market (`UsdmMarket` is one)."""

    logs: dict[str, SymbolLog]
    perps: dict[str, Perp]
    feed: FuturesFeed
    agg_base: int

    def exchange_info(self) -> dict[str, Any]: ...


class FapiApi(RestApi):
    """`/fapi/v1/…` over the perps (Binance's futures answers; ms times)."""

    def __init__(
        self,
        market: PerpMarket,
        faults: FaultInjector,
        stats: dict[str, int],
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(market.logs, faults, stats, describe)
        self.market = market

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        m = self.market
        handler: Callable[[Query], object] | None = {
            "/fapi/v1/ping": lambda q: {},
            "/fapi/v1/time": lambda q: {"serverTime": now_us() // 1000},
            "/fapi/v1/exchangeInfo": lambda q: m.exchange_info(),
            "/fapi/v1/aggTrades": self._aggs,
            "/fapi/v1/depth": self._depth,
            "/fapi/v1/fundingRate": self._funding,
            "/fapi/v1/openInterest": self._oi,
            "/fapi/v1/klines": lambda q: self._api_klines(q, False),
        }.get(path)
        self.stats["rest_requests"] += 1
        if handler is None:
            return json_response(
                {"code": -1000, "msg": f"Unknown endpoint {request.method} {request.path}."}, 404
            )
        fault = self.faults.next_rest_fault()
        if fault is not None:
            kind, p = fault
            self.faults.count(kind)
            if kind == "rest_429":
                return json_response({"code": -1003, "msg": "Too many requests."}, 429, {"Retry-After": "1"})
            if kind == "rest_500":
                return json_response(
                    {"code": -1001, "msg": "Internal error; unable to process your request."}, 500
                )
            await asyncio.sleep(p["seconds"])
            return json_response(
                {"code": -1007, "msg": "Timeout waiting for response from backend server."}, 504
            )
        if path == "/fapi/v1/depth":
            early = self._depth_fault()
            if early is not None:
                return early
        try:
            return json_response(handler(request.query))
        except ApiError as exc:
            return json_response({"code": exc.code, "msg": exc.msg}, exc.status)

    def _aggs(self, q: Query) -> list[dict[str, Any]]:
        self._check_params(q, ("symbol", "fromId", "startTime", "endTime", "limit"))
        log = self._symbol(q)
        limit = self._limit(q)
        from_id = _int_param(q, "fromId")
        start_ms, end_ms = _int_param(q, "startTime"), _int_param(q, "endTime")
        if start_ms is not None and end_ms is not None and end_ms - start_ms >= HOUR_MS:
            raise ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
        n = len(log.agg_starts)
        base = self.market.agg_base
        if from_id is not None:
            a = max(0, from_id - base)
        elif start_ms is not None:
            a = log.agg_index_of_time(start_ms * 1000)
        elif end_ms is not None:
            a = max(0, log.agg_index_of_time(end_ms * 1000 + 1000) - limit)
        else:
            a = max(0, n - limit)
        out: list[dict[str, Any]] = []
        while a < n and len(out) < limit:
            row: dict[str, Any] = dict(log.rest_agg(a, False))
            row.pop("M", None)
            row["a"] = a + base
            if end_ms is not None and int(row["T"]) > end_ms:
                break
            out.append(row)
            a += 1
        return out

    def _depth(self, q: Query) -> dict[str, Any]:
        self._check_params(q, ("symbol", "limit"))
        log = self._symbol(q)
        limit = self._limit(q, 500, 1000)
        snap = self.market.feed.snapshot(log.spec.symbol, limit, stale=self._stale)
        t = now_us() // 1000
        return {
            "lastUpdateId": snap["lastUpdateId"],
            "E": t,
            "T": t,
            "bids": snap["bids"],
            "asks": snap["asks"],
        }

    def _funding(self, q: Query) -> list[dict[str, Any]]:
        self._check_params(q, ("symbol", "startTime", "endTime", "limit"))
        perp = self.market.perps[self._symbol(q).spec.symbol]
        limit = self._limit(q, 100, 1000)
        start_us, end_us = _time_param(q, "startTime"), _time_param(q, "endTime")
        rows = [
            f
            for f in perp.fundings
            if (start_us is None or f.funding_time_us >= start_us)
            and (end_us is None or f.funding_time_us <= end_us)
        ]
        rows = rows[:limit] if start_us is not None else rows[-limit:]
        return [
            {
                "symbol": f.symbol,
                "fundingTime": f.funding_time_us // 1000,
                "fundingRate": format(f.funding_rate, "f"),
                "markPrice": format(f.mark_price, "f") if f.mark_price is not None else "",
            }
            for f in rows
        ]

    def _oi(self, q: Query) -> dict[str, Any]:
        self._check_params(q, ("symbol",))
        perp = self.market.perps[self._symbol(q).spec.symbol]
        last = perp.ois[-1]
        return {
            "symbol": perp.spec.symbol,
            "openInterest": format(last.open_interest, "f"),
            "time": last.time_us // 1000,
        }
