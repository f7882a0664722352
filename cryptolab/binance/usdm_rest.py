"""Binance USD-M futures REST: `UsdmRestClient` and the pure conversions of its answers to rows.

`UsdmRestClient` is `binance.rest.RestClient` (weights, Retry-After, retries, capped answers)
on `https://fapi.binance.com` with the futures endpoints: `/fapi/v1/aggTrades` by `fromId` or by a
time window shorter than one hour (Binance's limit; `agg_windows` cuts a range), `/fapi/v1/fundingRate`,
`/fapi/v1/openInterest`, `/futures/data/openInterestHist` (Binance keeps only the last 30 days:
older starts are refused here with one line), `/fapi/v1/klines`, `/fapi/v1/markPriceKlines`,
`/fapi/v1/exchangeInfo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict, cast

from ..errors import DataError, SourceError
from ..markets import AggTrade, FundingRate, OpenInterest, exchange_for
from ..model import now_us
from .rest import Kline, MarketInfo, Params, RestClient
from .usdm import USDM_EXCHANGE, _agg, _nonneg, _signed, _symbol
from .wire import _Bad, _decimal, _time_us

__all__ = [
    "DEFAULT_FAPI_URL",
    "OI_HIST_DAYS",
    "MAX_AGG_WINDOW_MS",
    "agg_trade_from_rest",
    "funding_from_rest",
    "open_interest_from_rest",
    "open_interest_hist_from_rest",
    "agg_windows",
    "UsdmRestClient",
    "FapiAggTrade",
    "FundingRateRow",
    "OpenInterestNow",
    "OpenInterestHistRow",
]


DEFAULT_FAPI_URL = "https://fapi.binance.com"
"""Binance's futures REST root (CRYPTOLAB_FAPI_URL overrides it: `config.settings().fapi_url`)."""
OI_HIST_DAYS = 30
"""/futures/data/openInterestHist answers the last 30 days only."""
MAX_AGG_WINDOW_MS = 3_600_000
"""/fapi/v1/aggTrades by startTime/endTime: the window must be shorter than one hour."""


# ---------------------------------------------------------------------- REST rows
class FapiAggTrade(TypedDict):
    """One row of /fapi/v1/aggTrades."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 (Binance's name)
    T: int
    m: bool


class FundingRateRow(TypedDict, total=False):
    """One row of /fapi/v1/fundingRate (markPrice since 2023)."""

    symbol: str
    fundingTime: int
    fundingRate: str
    markPrice: str


class OpenInterestNow(TypedDict):
    """/fapi/v1/openInterest."""

    symbol: str
    openInterest: str
    time: int


class OpenInterestHistRow(TypedDict):
    """One row of /futures/data/openInterestHist."""

    symbol: str
    sumOpenInterest: str
    sumOpenInterestValue: str
    timestamp: int


def _rest(fn: Any, what: str) -> Any:
    try:
        return fn()
    except KeyError as exc:
        raise ValueError(f"{what} without field {exc}") from None
    except _Bad as exc:
        raise ValueError(f"{what}: {exc}") from None


def agg_trade_from_rest(
    item: Mapping[str, Any], symbol: str, *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> AggTrade:
    """One /fapi/v1/aggTrades item → AggTrade (ValueError if bad)."""
    return cast(
        AggTrade,
        _rest(lambda: _agg({**item, "s": symbol.upper()}, exchange, source, now_us()), "REST aggTrade"),
    )


def funding_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> FundingRate:
    """One /fapi/v1/fundingRate item → FundingRate (ValueError if bad)."""

    def one() -> FundingRate:
        mark = item.get("markPrice")
        return FundingRate(
            exchange,
            _symbol({"s": item["symbol"]}),
            _time_us(item["fundingTime"], "fundingTime"),
            _signed(item["fundingRate"], "fundingRate"),
            None if mark in (None, "") or Decimal(str(mark)) == 0 else _decimal(mark, "markPrice"),
            None,
            source,
        )

    return cast(FundingRate, _rest(one, "REST fundingRate"))


def open_interest_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "live"
) -> OpenInterest:
    """/fapi/v1/openInterest → OpenInterest (ValueError if bad)."""
    return cast(
        OpenInterest,
        _rest(
            lambda: OpenInterest(
                exchange,
                _symbol({"s": item["symbol"]}),
                _time_us(item["time"], "time"),
                _nonneg(item["openInterest"], "openInterest"),
                None,
                source,
            ),
            "REST openInterest",
        ),
    )


def open_interest_hist_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> OpenInterest:
    """One /futures/data/openInterestHist item → OpenInterest (ValueError if bad)."""
    return cast(
        OpenInterest,
        _rest(
            lambda: OpenInterest(
                exchange,
                _symbol({"s": item["symbol"]}),
                _time_us(item["timestamp"], "timestamp"),
                _nonneg(item["sumOpenInterest"], "sumOpenInterest"),
                _nonneg(item["sumOpenInterestValue"], "sumOpenInterestValue"),
                source,
            ),
            "REST openInterestHist",
        ),
    )


def agg_windows(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start_ms, end_ms) cut into windows Binance accepts for aggTrades by time: each
    `(startTime, endTime)` inclusive and shorter than one hour."""
    if end_ms <= start_ms:
        return []
    step = MAX_AGG_WINDOW_MS - 1
    return [(t, min(t + step, end_ms) - 1) for t in range(start_ms, end_ms, step)]


# ---------------------------------------------------------------------- REST client
class UsdmRestClient(RestClient):
    """`RestClient` on Binance USD-M futures (`/fapi`): same weights, retries and caps."""

    def __init__(self, base_url: str | None = None, *, weight_budget: int = 2400, **kw: Any) -> None:
        """`base_url` None: the settings' `fapi_url` (CRYPTOLAB_FAPI_URL, else Binance's)."""
        if base_url is None:
            from ..config import settings

            base_url = settings().fapi_url
        super().__init__(base_url, weight_budget=weight_budget, **kw)

    async def server_time(self) -> int:
        body = await self._get_object("/fapi/v1/time", {})
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(
                f"{self.base_url}/fapi/v1/time answered without a serverTime: {body!r:.200}"
            ) from None

    async def exchange_info(self, symbols: list[str] | None = None) -> Any:
        """The futures listing (all symbols: /fapi/v1/exchangeInfo takes no filter; `symbols`
        filters here)."""
        body = await self._get_object("/fapi/v1/exchangeInfo", {}, symbol=",".join(symbols or []))
        if symbols:
            want = {s.upper() for s in symbols}
            listed = body.get("symbols", [])
            body = {**body, "symbols": [s for s in listed if isinstance(s, dict) and s.get("symbol") in want]}
        return body

    async def usdm_market(self, symbols: list[str] | None = None) -> tuple[MarketInfo, str]:
        """What the futures market serves and the `exchange` its rows are stored under
        ("binance-usdm", or "simulator-usdm" for the local exchange's synthetic market)."""
        info = await self.market_info(symbols)
        return info, exchange_for("usdm", info.stored_as)

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Any]:
        """Aggregate trades by `fromId`, or in a time window shorter than one hour (refused otherwise)."""
        if start_ms is not None and end_ms is not None and end_ms - start_ms >= MAX_AGG_WINDOW_MS:
            raise DataError(
                f"aggTrades by time: {end_ms - start_ms} ms is not under one hour — Binance refuses "
                "longer windows; cut it with agg_windows() or page by fromId"
            )
        params: Params = {"symbol": symbol.upper(), "limit": int(limit)}
        if from_id is not None:
            params["fromId"] = int(from_id)
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/fapi/v1/aggTrades", params, symbol=symbol)

    async def depth(self, symbol: str, limit: int = 1000) -> dict[str, Any]:
        """The futures book's `limit` best levels a side (5…1000) with `lastUpdateId`, `E`, `T`."""
        from .rest import depth_weight

        return await self._get_object(
            "/fapi/v1/depth",
            {"symbol": symbol.upper(), "limit": int(min(limit, 1000))},
            symbol=symbol,
            weight=depth_weight(min(limit, 1000)),
        )

    async def funding_rate(
        self, symbol: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 1000
    ) -> list[FundingRateRow]:
        """Settled funding rates (oldest first), as Binance prints them."""
        params: Params = {"symbol": symbol.upper(), "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/fapi/v1/fundingRate", params, symbol=symbol)

    async def open_interest(self, symbol: str) -> OpenInterestNow:
        """Open interest now (contracts), as Binance prints it."""
        body = await self._get_object("/fapi/v1/openInterest", {"symbol": symbol.upper()}, symbol=symbol)
        return cast(OpenInterestNow, body)

    async def open_interest_hist(
        self,
        symbol: str,
        period: str = "5m",
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[OpenInterestHistRow]:
        """Open interest history: Binance keeps only the last 30 days (an older start is refused here)."""
        oldest = now_us() // 1000 - OI_HIST_DAYS * 86_400_000
        if start_ms is not None and start_ms < oldest:
            raise DataError(
                f"openInterestHist reaches back {OI_HIST_DAYS} days only: a start before that has no "
                "answer — take older open interest from the `metrics` dumps (cryptolab history "
                "--market usdm --kind metrics)"
            )
        params: Params = {"symbol": symbol.upper(), "period": period, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/futures/data/openInterestHist", params, symbol=symbol)

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Kline]:
        return await self._klines("/fapi/v1/klines", symbol, interval, start_ms, end_ms, limit)

    async def mark_price_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Kline]:
        return await self._klines("/fapi/v1/markPriceKlines", symbol, interval, start_ms, end_ms, limit)

    async def _klines(
        self, path: str, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Kline]:
        params: Params = {"symbol": symbol.upper(), "interval": interval, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list(path, params, symbol=symbol)
