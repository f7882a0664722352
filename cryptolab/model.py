"""The normalized rows that flow from wire to database: `Trade` and `DeadLetter`.

Times are integer microseconds since the Unix epoch (UTC): exact, cheap to carry,
and converted to `timestamptz` by the database. Prices and quantities are
`decimal.Decimal`, never floats.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "DEFAULT_EXCHANGE",
    "SIMULATOR_EXCHANGE",
    "US_CUTOFF",
    "Trade",
    "TradeFields",
    "DeadLetter",
    "now_us",
    "to_us",
    "us_to_datetime",
    "datetime_to_us",
]

SOURCES = ("live", "backfill", "replay", "simulator")
#: Exchange name of real Binance spot data, the default where none is named.
DEFAULT_EXCHANGE = "binance"
#: Exchange name of synthetic (simulated / local-exchange) markets: never mixed with real data.
SIMULATOR_EXCHANGE = "simulator"
#: Epoch times at or above this are microseconds, below it milliseconds. Today ms values
#: are ~1.7e12 and µs values ~1.7e15; 1e14 as ms is the year 5138, so the cut is safe.
US_CUTOFF = 100_000_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Trade(NamedTuple):
    """One exchange trade, as stored in `trades`."""

    exchange: str
    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    is_buyer_maker: bool
    trade_time_us: int
    event_time_us: int | None = None
    received_at_us: int | None = None
    source: str = "live"


TradeFields = tuple[str, int, str, str, bool, int, int | None]
"""A live trade as the capture's columns keep it (`storage.columns.TradeColumns`): symbol, id,
price and quantity as the exchange's decimal strings, buyer is maker, trade time µs, event time
µs or None."""


class DeadLetter(NamedTuple):
    """A message that could not become a trade, with the reason (stored in `dead_letters`)."""

    reason: str
    payload: bytes
    source: str = "live"
    exchange: str | None = None
    symbol: str | None = None
    received_at_us: int | None = None


def now_us() -> int:
    """Wall-clock time now in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(value: int) -> int:
    """An epoch time in ms or µs (told apart by `US_CUTOFF`) → µs."""
    return value if value >= US_CUTOFF else value * 1000


def us_to_datetime(us: int) -> datetime:
    """Epoch microseconds → aware UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=us)


def datetime_to_us(dt: datetime) -> int:
    """Aware (or UTC-naive) datetime → epoch microseconds (exact)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
