"""Argument checks every analysis shares (pure): symbols, times, intervals, decimals, kinds.

Bad input raises `DataError` before any SQL runs. Times are aware or naive-UTC datetimes,
dates or ISO-8601 strings; intervals are one of INTERVALS ('1s' … '1w'). The types below say
what the public analyses accept; the checks still refuse anything else at run time (notebooks
are not type-checked).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ..durations import parse_duration
from ..errors import DataError
from ..model import DEFAULT_EXCHANGE

if TYPE_CHECKING:  # both are imported when a frame is built, not with the package
    import pandas as pd
    import polars as pl

__all__ = [
    "AsType",
    "Frame",
    "TimeLike",
    "DurationLike",
    "SecondsLike",
    "DecimalLike",
    "Kind",
    "KINDS",
    "check_kind",
    "check_as",
    "as_frame",
    "INTERVALS",
    "MAX_ROWS",
    "parse_interval",
    "parse_window",
    "auto_interval",
    "parse_time",
    "parse_decimal",
    "normalize_symbol",
]


Frame: TypeAlias = "pl.DataFrame | pd.DataFrame"
"""What an analysis returns: a polars DataFrame, or a pandas DataFrame when `as_="pandas"` (each
public analysis is overloaded on `as_`, so a call without it is typed `pl.DataFrame`)."""


TimeLike: TypeAlias = datetime | date | str
"""A time (`parse_time`): an aware datetime, a naive one (UTC), a date (its midnight UTC) or an
ISO-8601 string like '2024-08-08T23:00:00Z'."""


DurationLike: TypeAlias = timedelta | str
"""A duration with its unit (`parse_window`): a timedelta or '500ms', '90s', '5m', '2h'."""


SecondsLike: TypeAlias = timedelta | str | int | float | Decimal
"""A duration where a plain number is seconds (`cryptolab.durations.parse_duration`)."""


DecimalLike: TypeAlias = Decimal | str | int
"""An exact number (`parse_decimal`): a Decimal, a decimal string like '0.01' or an int; a float
is refused (it is not exact)."""


AsType = Literal["polars", "pandas"]


Kind = Literal["auto", "trades", "aggTrades"]


KINDS = ("auto", "trades", "aggTrades")
"""Which data an analysis reads: raw trades, Binance aggregate trades, or auto (trades first)."""
AGG_MODULE = "agg_trades"
"""The SQL module (sql/agg_trades.sql) computing the analyses from aggregate trades."""


INTERVALS = (
    "1s",
    "5s",
    "10s",
    "15s",
    "30s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "1w",
)
"""The bar sizes every function with an `interval` takes (all but 1w divide a day)."""


_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,31}")


MAX_ROWS = 5_000_000
"""Largest dense series (buckets) one call may ask for."""


def parse_window(value: Any, *, name: str = "window") -> timedelta:
    """A positive duration argument ('500ms', '90s', '5m', '2h', or a timedelta): the grammar of
    `cryptolab.durations`, with its unit (a plain number is not seconds here)."""
    return parse_duration(value, name=name, bare_seconds=False, error=DataError)


def parse_interval(value: Any, *, name: str = "interval") -> tuple[str, timedelta]:
    """Validate a bar size from INTERVALS ('1s', '15m', '4h', '1d', …); returns (text, timedelta)."""
    text = str(value).strip() if value is not None else ""
    if text not in INTERVALS:
        raise DataError(f"{name} {value!r} is not an interval: use one of {', '.join(INTERVALS)}")
    return text, parse_window(text, name=name)


def auto_interval(length: timedelta, *, most: int = 120) -> tuple[str, timedelta]:
    """The finest interval of INTERVALS (up to 1d) giving at most `most` bars over `length`."""
    for iv in INTERVALS[:-1]:
        step = parse_window(iv)
        if length / step <= most:
            return iv, step
    return "1d", timedelta(days=1)


def parse_time(value: Any, name: str) -> datetime | None:
    """A datetime/date/ISO string as an aware UTC datetime (naive means UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise DataError(
                f"{name} {value!r} is not a time: use an ISO-8601 string like '2024-08-08T23:00:00Z' "
                "or a datetime"
            ) from None
    else:
        raise DataError(
            f"{name} must be a datetime, a date or an ISO-8601 string, not {type(value).__name__}"
        )
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def parse_decimal(value: Any, name: str, *, positive: bool = True) -> Decimal:
    """An exact Decimal from a Decimal, int or decimal string (floats refused: not exact)."""
    if isinstance(value, float):
        raise DataError(
            f"{name} must be exact: pass a Decimal or a string like '0.01', not the float {value!r}"
        )
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise DataError(f"{name} {value!r} is not a number: pass a Decimal or a string like '0.01'") from None
    if not d.is_finite() or (positive and d <= 0):
        raise DataError(f"{name} must be a {'positive ' if positive else ''}finite number, not {value!r}")
    return d


def normalize_symbol(symbol: Any) -> str:
    """Symbols are stored upper case ('btcusdt' → 'BTCUSDT')."""
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol.strip().upper()):
        raise DataError(f"symbol {symbol!r} is not a symbol: pass a name like 'BTCUSDT'")
    return symbol.strip().upper()


def _normalize_exchange(exchange: Any) -> str:
    if not isinstance(exchange, str) or not exchange.strip():
        raise DataError(
            f"exchange {exchange!r} is not an exchange name: use e.g. {DEFAULT_EXCHANGE!r}, or None "
            "for the one holding the data"
        )
    return exchange.strip().lower()


def check_kind(kind: Any) -> str:
    """A checked `kind`: "auto", "trades" or "aggTrades" (DataError otherwise)."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}, not {kind!r}")
    return kind


def check_as(as_: object) -> None:
    """Refuse an `as_` other than "polars" or "pandas" (DataError), before any SQL runs."""
    if as_ not in ("polars", "pandas"):
        raise DataError(f"as_ must be 'polars' or 'pandas', not {as_!r}")


def as_frame(frame: pl.DataFrame, as_: AsType) -> Frame:
    """`frame` as the caller asked: itself, or a pandas DataFrame for `as_="pandas"`."""
    return frame.to_pandas() if as_ == "pandas" else frame
