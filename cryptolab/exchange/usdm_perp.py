"""A synthetic perpetual of the local exchange: its state beside the spot log and its pure rules.

Funding settles every `FUNDING_HOURS` h from 00:00 UTC (`next_funding_ms`) at the rate of the
premium then (`funding_rate_of`); a one-second move above `LIQ_MOVE_BPS` liquidates a burst;
trade ids skip now and then before an aggregate (`P_TRADE_ID_SKIP`). `UsdmMarket` (usdm.py)
moves one `Perp` per symbol each tick and second.
"""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

from ..markets import FundingRate, Liquidation, MarkPrice, OpenInterest
from .tradelog import UNIT, SymbolLog, SymbolSpec

__all__ = [
    "FUNDING_HOURS",
    "FUNDING_PAST_DAYS",
    "HOUR_MS",
    "LIQ_MOVE_BPS",
    "P_LIQ_QUIET",
    "P_TRADE_ID_SKIP",
    "Perp",
    "funding_rate_of",
    "next_funding_ms",
]


FUNDING_HOURS = 8
FUNDING_PAST_DAYS = 30
LIQ_MOVE_BPS = 3.0
"""A one-second move of the perp above this many bps liquidates a burst of positions."""
P_LIQ_QUIET = 0.15
"""Chance a second without a big move still sees a liquidation."""
P_TRADE_ID_SKIP = 0.03
"""Chance that trade ids skip before an aggregate (insurance-fund / ADL trades not aggregated)."""
HOUR_MS = 3_600_000


def next_funding_ms(t_ms: int) -> int:
    """The next funding settlement after `t_ms` (every 8 h from 00:00 UTC)."""
    step = FUNDING_HOURS * HOUR_MS
    return (t_ms // step + 1) * step


def funding_rate_of(basis: float) -> Decimal:
    """The funding rate of a premium `basis` (a fraction): 0.01 % interest plus a tenth of the
    premium, clamped to ±0.75 %, at 8 decimals (pure)."""
    r = max(-0.0075, min(0.0075, 0.0001 + basis * 0.1))
    return Decimal(round(r * 1e8)) / Decimal(10**8)


class Perp:
    """One perp's state beside its spot log."""

    def __init__(self, spec: SymbolSpec, seed: int, first_id: int) -> None:
        self.spec = spec
        self.log = SymbolLog(spec, source="simulator")
        self.rng = random.Random(seed * 7_919 + zlib.crc32(b"usdm:" + spec.symbol.encode()))
        self.next_id = first_id
        self.basis = 0.0003  # a fraction (3 bps)
        self.index = spec.price
        self.oi = 1_000 * UNIT * max(1, (61_800 * UNIT) // max(1, spec.price))  # contracts, units
        self.sec_price: int | None = None
        self.marks: list[MarkPrice] = []
        self.liqs: list[Liquidation] = []
        self.fundings: list[FundingRate] = []
        self.ois: list[OpenInterest] = []
        self.rate: Decimal = funding_rate_of(self.basis)

    def price_of(self, spot: int) -> int:
        tick = self.spec.tick
        return max(tick, round(spot * (1.0 + self.basis) / tick) * tick)
