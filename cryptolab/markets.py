"""Which market a row belongs to: the `exchange` column carries it.

Spot and USD-M futures sit side by side in every table under different exchange names:
`binance` (spot, the data stored before futures existed here, unchanged) and
`binance-usdm` (USD-M perpetual futures); the local exchange's synthetic markets are
`simulator` and `simulator-usdm`. Every table, primary key, partition, lease and archive
path already keys by exchange, so futures rows need no migration and SQL reads
`WHERE exchange = 'binance-usdm'`.

    exchange_for("usdm")               -> "binance-usdm"
    exchange_for("spot", "simulator")  -> "simulator"
    market_of("binance-usdm")          -> "usdm"
    base_of("simulator-usdm")          -> "simulator"

The rows only the futures market has (`MarkPrice`, `Liquidation`, `FundingRate`,
`OpenInterest`) and the aggregate trade row (`AggTrade`, stored in `agg_trades` for either
market) live here too, beside `model.Trade`: times are integer microseconds, prices and
quantities `Decimal`. Pure: names in, names out.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NamedTuple

from .errors import DataError
from .model import DEFAULT_EXCHANGE

__all__ = [
    "AggTrade",
    "MarkPrice",
    "Liquidation",
    "FundingRate",
    "OpenInterest",
    "MARKETS",
    "Market",
    "SUFFIX",
    "check_market",
    "exchange_for",
    "market_of",
    "base_of",
    "spot_of",
    "usdm_of",
]

Market = Literal["spot", "usdm"]
MARKETS: tuple[Market, ...] = ("spot", "usdm")
"""The markets cryptolab knows: Binance spot and Binance USD-M futures (perpetuals)."""
SUFFIX: dict[str, str] = {"spot": "", "usdm": "-usdm"}
"""What a market adds to its base exchange name."""


def check_market(market: object) -> Market:
    """`market` checked: "spot" or "usdm" (case and spaces ignored); one clear DataError otherwise."""
    text = market.strip().lower() if isinstance(market, str) else market
    if text == "spot":
        return "spot"
    if text == "usdm":
        return "usdm"
    raise DataError(
        f"unknown market {market!r}: use one of {', '.join(MARKETS)} "
        "(spot, or usdm for Binance USD-M futures)"
    )


def base_of(exchange: str) -> str:
    """The exchange name without its market: "binance-usdm" → "binance", "simulator" → "simulator"."""
    name = exchange.strip().lower()
    for suffix in SUFFIX.values():
        if suffix and name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def market_of(exchange: str) -> Market:
    """The market of an exchange name: "binance-usdm" → "usdm", anything else → "spot"."""
    name = exchange.strip().lower()
    for market, suffix in SUFFIX.items():
        if suffix and name.endswith(suffix):
            return check_market(market)
    return "spot"


def exchange_for(market: str, base: str = DEFAULT_EXCHANGE) -> str:
    """The `exchange` value of `market` on `base` ("binance" or "simulator", or an exchange name of
    either market: its base is taken)."""
    m = check_market(market)
    if not isinstance(base, str) or not base.strip():
        raise DataError(f"exchange {base!r} is not an exchange name: use e.g. {DEFAULT_EXCHANGE!r}")
    return base_of(base) + SUFFIX[m]


def spot_of(exchange: str) -> str:
    """The spot exchange beside a market: "binance-usdm" → "binance"."""
    return exchange_for("spot", exchange)


def usdm_of(exchange: str) -> str:
    """The USD-M futures exchange beside a market: "binance" → "binance-usdm"."""
    return exchange_for("usdm", exchange)


# ---------------------------------------------------------------------- rows
class AggTrade(NamedTuple):
    """One aggregate trade (a taker order's fills at one price), as stored in `agg_trades`."""

    exchange: str
    symbol: str
    agg_id: int
    price: Decimal
    qty: Decimal
    first_trade_id: int
    last_trade_id: int
    trade_time_us: int
    is_buyer_maker: bool
    event_time_us: int | None = None
    received_at_us: int | None = None
    source: str = "live"


class MarkPrice(NamedTuple):
    """One `@markPrice@1s` update (table `mark_prices`); funding_rate is signed."""

    exchange: str
    symbol: str
    event_time_us: int
    mark_price: Decimal
    index_price: Decimal | None
    est_settle_price: Decimal | None
    funding_rate: Decimal | None
    next_funding_time_us: int | None
    received_at_us: int | None = None
    source: str = "live"


class Liquidation(NamedTuple):
    """One `@forceOrder` (table `liquidations`): side SELL = a long was liquidated."""

    exchange: str
    symbol: str
    trade_time_us: int
    side: str
    order_type: str
    time_in_force: str | None
    price: Decimal
    avg_price: Decimal
    qty: Decimal
    last_filled_qty: Decimal
    filled_qty: Decimal
    status: str
    event_time_us: int | None = None
    received_at_us: int | None = None
    source: str = "live"


class FundingRate(NamedTuple):
    """One settled funding (table `funding_rates`): longs pay `rate × mark` per unit when rate > 0."""

    exchange: str
    symbol: str
    funding_time_us: int
    funding_rate: Decimal
    mark_price: Decimal | None = None
    interval_hours: int | None = None
    source: str = "backfill"


class OpenInterest(NamedTuple):
    """Open interest at one time (table `open_interest`), in contracts (base units) and quote value."""

    exchange: str
    symbol: str
    time_us: int
    open_interest: Decimal
    open_interest_value: Decimal | None = None
    source: str = "backfill"
