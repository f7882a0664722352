"""The one duration grammar (cryptolab/durations.py): what it accepts, what it refuses and how."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cryptolab.durations import duration_text, parse_duration, parse_seconds
from cryptolab.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("5m", timedelta(minutes=5)),
        ("1.5m", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        (" 3 s ", timedelta(seconds=3)),
        (".25s", timedelta(milliseconds=250)),
        ("0.0000015s", timedelta(microseconds=2)),  # to the microsecond, half to even
        ("30", timedelta(seconds=30)),  # a plain number is seconds
        ("0.25", timedelta(milliseconds=250)),
    ],
)
def test_the_grammar_reads_a_number_and_a_unit(text: str, want: timedelta) -> None:
    assert parse_duration(text) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (timedelta(minutes=2), timedelta(minutes=2)),
        (3, timedelta(seconds=3)),
        (0.5, timedelta(milliseconds=500)),
        (Decimal("0.000001"), timedelta(microseconds=1)),
    ],
)
def test_python_callers_may_pass_a_timedelta_or_a_number_of_seconds(value: Any, want: timedelta) -> None:
    assert parse_duration(value) == want


@pytest.mark.parametrize(
    "bad", ["", "soon", "5 minutes", "1e3s", "-5s", "5mm", "s", "1.2.3s", "inf", "nan", True, None, [1]]
)
def test_anything_else_is_one_clear_line_naming_the_option(bad: Any) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(bad, name="--ping-interval")
    msg = str(err.value)
    assert msg.startswith(f"--ping-interval {bad!r} is not a duration") or "negative" in msg
    assert "\n" not in msg


def test_plain_numbers_need_a_unit_where_they_mean_something_else() -> None:
    assert parse_duration("5m", bare_seconds=False) == timedelta(minutes=5)
    for plain in ("5", 5, 2.5):
        with pytest.raises(DataError, match="window .* is not a duration: write a number and a unit"):
            parse_duration(plain, name="window", bare_seconds=False, error=DataError)


def test_zero_negative_and_overflow_are_refused_unless_zero_is_allowed() -> None:
    for zero in ("0", "0s", 0, timedelta(0), "0.0000001s"):
        with pytest.raises(ConfigError, match="must be more than 0"):
            parse_duration(zero, name="--seconds")
        assert parse_duration(zero, zero=True) == timedelta(0)
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration(-1)
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration(timedelta(seconds=-1))
    with pytest.raises(ConfigError, match="too long"):
        parse_duration("99999999999d")
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(float("inf"))


def test_seconds_for_the_options_that_always_took_seconds() -> None:
    assert parse_seconds("500ms") == 0.5
    assert parse_seconds("1.5m") == 90.0
    assert parse_seconds("20") == 20.0
    assert parse_seconds("0", zero=True) == 0.0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(weeks=2), "2w"),
        (timedelta(days=1), "1d"),
        (timedelta(hours=25), "25h"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(microseconds=1500), "0.0015s"),
        (timedelta(0), "0s"),
    ],
)
def test_duration_text_is_the_grammar_back(value: timedelta, text: str) -> None:
    assert duration_text(value) == text
    assert parse_duration(text, zero=True) == value


def test_postgresql_reads_duration_text_as_the_same_interval(conn: psycopg.Connection) -> None:
    """The analyses pass `duration_text` to SQL that casts it to an interval (sql/book.sql)."""
    for value in (timedelta(milliseconds=500), timedelta(microseconds=1500), timedelta(seconds=90)):
        text = duration_text(value)
        got = conn.execute(
            r"SELECT regexp_replace(%s, '^(\d+)([smhdw])$', '\1 \2')::interval", (text,)
        ).fetchone()
        assert got is not None and got[0] == value, text
