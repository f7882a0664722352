"""Times as integer microseconds since the epoch, exact both ways; ms and µs epoch times told apart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cryptolab.model import US_CUTOFF, datetime_to_us, to_us, us_to_datetime

UTC = timezone.utc


def test_microseconds_and_datetimes_convert_exactly_both_ways() -> None:
    t = datetime(2024, 8, 8, 23, 59, 59, 999_999, tzinfo=UTC)
    us = datetime_to_us(t)
    assert us == 1_723_161_599_999_999 and us_to_datetime(us) == t
    far = 4_102_444_800_000_001  # 2100-01-01 plus 1 µs: past what a float64 of seconds holds exactly
    assert datetime_to_us(us_to_datetime(far)) == far
    assert us_to_datetime(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_a_naive_datetime_is_utc_and_an_aware_one_is_converted() -> None:
    naive = datetime(2024, 8, 8, 12, 0)
    kolkata = datetime(2024, 8, 8, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert datetime_to_us(naive) == datetime_to_us(naive.replace(tzinfo=UTC)) == datetime_to_us(kolkata)


def test_epoch_times_in_ms_become_us_and_us_stay() -> None:
    assert to_us(1_723_161_255_342) == 1_723_161_255_342_000  # ms, as Binance's streams send by default
    assert to_us(1_735_689_600_010_866) == 1_735_689_600_010_866  # µs, asked for
    assert to_us(US_CUTOFF - 1) == (US_CUTOFF - 1) * 1000 and to_us(US_CUTOFF) == US_CUTOFF
