"""The perpetual's funding (pure): settled every eight hours, the rate following the premium, capped."""

from __future__ import annotations

from decimal import Decimal

from cryptolab.exchange.usdm_perp import funding_rate_of, next_funding_ms


def test_funding_settles_every_eight_hours_and_follows_the_premium() -> None:
    assert next_funding_ms(0) == 8 * 3_600_000
    assert next_funding_ms(8 * 3_600_000) == 16 * 3_600_000
    assert funding_rate_of(0.0) == Decimal("0.0001")
    assert funding_rate_of(0.001) == Decimal("0.0002")
    assert funding_rate_of(1.0) == Decimal("0.0075") and funding_rate_of(-1.0) == Decimal("-0.0075")
