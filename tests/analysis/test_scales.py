"""Scales that do not depend on the range: which columns say nothing about their scale, and the last
stored minute asked instead (the pure parts of `keep_scales`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import polars as pl

from cryptolab.analysis.scales import reference_values, uninformative


def test_only_scale_0_decimal_columns_of_nulls_and_zeros_are_uninformative() -> None:
    frame = pl.DataFrame(
        {
            "nulls": pl.Series([None, None], dtype=pl.Decimal(38, 0)),
            "zeros": pl.Series([Decimal("0"), None], dtype=pl.Decimal(38, 0)),
            "scaled": pl.Series([Decimal("0"), Decimal("0")], dtype=pl.Decimal(38, 8)),
            "counts": pl.Series([Decimal("0"), Decimal("5")], dtype=pl.Decimal(38, 0)),
            "ints": [0, 0],
        }
    )
    assert uninformative(frame, ["nulls", "zeros", "scaled", "counts", "ints"]) == ["nulls", "zeros"]


def test_the_reference_is_the_last_stored_minute_unless_the_range_is_that_minute() -> None:
    last = datetime(2024, 8, 8, 12, 0, 59)
    day = {"symbol": "BTCUSDT", "start": datetime(2024, 8, 8), "end": datetime(2024, 8, 9)}
    minute = {"symbol": "BTCUSDT", "start": datetime(2024, 8, 8, 12, 0), "end": datetime(2024, 8, 8, 12, 1)}
    assert reference_values(day, last) == minute
    assert reference_values(minute, last) is None  # already that minute: nothing more to ask
    assert reference_values(day, None) is None  # nothing stored
    assert reference_values({**day, "start": None}, last) is None
