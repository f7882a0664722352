"""How numbers are shown: one number of decimals per column from its magnitude, one unit per duration
column, key figures on one line; the exact values themselves are never changed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from cryptolab.analysis.display import column_decimals, duration_unit, format_number, format_value

UTC = timezone.utc


def test_a_column_shows_about_six_significant_digits_never_more_than_it_carries() -> None:
    assert column_decimals([Decimal("61815.01"), Decimal("61815.5")]) == 2  # prices: cents
    assert column_decimals([Decimal("0.00123456789")]) == 8  # small quantities: at most 8
    assert column_decimals([Decimal("0.5"), Decimal("0.25")]) == 2  # no more than the values carry
    assert column_decimals([1, 2, 3]) == 0 and column_decimals([None]) == 0


def test_numbers_get_thousands_separators_and_null_a_dash() -> None:
    assert format_number(1234567) == "1,234,567"
    assert format_number(Decimal("61815.0123")) == "61,815.01"
    assert format_number(Decimal("61815.0123"), 4) == "61,815.0123"
    assert format_number(None) == "–" and format_number(float("nan")) == "–"
    assert format_number(True) == "true"


def test_a_duration_column_gets_one_unit_from_its_largest_value() -> None:
    assert duration_unit([timedelta(milliseconds=5), timedelta(seconds=12)]) == ("s", 1e6)
    assert duration_unit([timedelta(microseconds=300), None]) == ("µs", 1.0)
    assert duration_unit([timedelta(milliseconds=3)]) == ("ms", 1e3)
    assert duration_unit([None]) == ("ms", 1e3)


def test_a_key_figure_is_one_readable_line() -> None:
    assert format_value("60000.12345678") == "60,000.12"  # exact decimal text, rounded to show
    assert format_value(timedelta(microseconds=2500)) == "2.5 ms"
    assert format_value(datetime(2024, 8, 8, 23, 0, 5, 123000, tzinfo=UTC)) == "2024-08-08 23:00:05.123 UTC"
    assert format_value(datetime(2024, 8, 8, 23, 0, 5, tzinfo=UTC)) == "2024-08-08 23:00:05 UTC"
    assert format_value({"a": 1, "b": None}) == "a: 1 · b: –"
    assert format_value(["x", "y"]) == "x – y" and format_value([]) == "none"
    assert format_value(True) == "yes" and format_value("BTCUSDT") == "BTCUSDT"
