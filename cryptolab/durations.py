"""The one duration grammar of every user-facing option (pure, no I/O).

A duration is a number and a unit: `500ms`, `2s`, `1.5m`, `5m`, `1h`, `1d`, `1w` (units ms, s,
m, h, d, w; no sign, no exponent, spaces around allowed). Where an option has always taken
seconds — the CLI flags given in seconds, `--option lease_seconds=3`, a fault schedule's
`every=30` — a plain number (`30`, `0.25`) is seconds; an analysis argument (`window`, `horizon`)
needs the unit, since a plain number there means something else (a count of intervals) or
nothing. Python callers may also pass a `timedelta` or, where plain numbers are seconds, an int,
float or Decimal. Everything else is one CryptolabError line naming the option and the grammar.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .errors import ConfigError, CryptolabError

__all__ = ["UNITS", "parse_duration", "parse_seconds", "duration_text"]

UNITS: dict[str, int] = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
"""Microseconds in one of each unit."""

_GRAMMAR = re.compile(r"\s*(-?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h|d|w)?\s*")  # a sign only to say "negative"
_MAX_US = (timedelta.max - timedelta(days=1)) // timedelta(microseconds=1)


def _refuse(value: Any, name: str, bare_seconds: bool, error: type[CryptolabError]) -> CryptolabError:
    plain = "; a plain number is seconds" if bare_seconds else ""
    return error(
        f"{name} {value!r} is not a duration: write a number and a unit, like 500ms, 2s, 5m, 1h or 1d{plain}"
    )


def _micros(value: Any, name: str, bare_seconds: bool, error: type[CryptolabError]) -> Decimal:
    """`value` in microseconds, exact (not yet rounded or range-checked)."""
    if isinstance(value, timedelta):
        return Decimal(value // timedelta(microseconds=1))
    if isinstance(value, bool):
        raise _refuse(value, name, bare_seconds, error)
    if isinstance(value, (int, float, Decimal)) and bare_seconds:
        if isinstance(value, float) and not math.isfinite(value):
            raise _refuse(value, name, bare_seconds, error)
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise _refuse(value, name, bare_seconds, error)
        return number * UNITS["s"]
    m = _GRAMMAR.fullmatch(value) if isinstance(value, str) else None
    if m is None or (m.group(2) is None and not bare_seconds):
        raise _refuse(value, name, bare_seconds, error)
    return Decimal(m.group(1)) * UNITS[m.group(2) or "s"]


def parse_duration(
    value: Any,
    *,
    name: str = "duration",
    bare_seconds: bool = True,
    zero: bool = False,
    error: type[CryptolabError] = ConfigError,
) -> timedelta:
    """`value` (see the module doc) as a timedelta, to the microsecond.

    `name` is the option as the user wrote it (`--seconds`, `horizon`), quoted in the error;
    `bare_seconds` lets a plain number mean seconds; `zero` allows 0 (never a negative);
    `error` is the CryptolabError subclass raised (ConfigError for settings and flags,
    DataError for a function's argument).
    """
    micros = _micros(value, name, bare_seconds, error)
    if micros < 0:
        raise error(f"{name} {value!r} must not be negative")
    if micros > _MAX_US:
        raise error(f"{name} {value!r} is too long: give at most {_MAX_US // UNITS['d']} days")
    us = int(micros.to_integral_value(ROUND_HALF_EVEN))
    if us == 0 and not zero:
        raise error(f"{name} {value!r} must be more than 0")
    return timedelta(microseconds=us)


def parse_seconds(
    value: Any, *, name: str = "duration", zero: bool = False, error: type[CryptolabError] = ConfigError
) -> float:
    """`parse_duration(value)` in seconds, for an option that has always been a number of seconds."""
    return parse_duration(value, name=name, zero=zero, error=error).total_seconds()


def duration_text(value: timedelta) -> str:
    """The text of the grammar meaning exactly `value`, in its largest whole unit (`5m`, `90s`,
    `500ms`; finer than a millisecond in decimal seconds, `0.0015s`)."""
    us = value // timedelta(microseconds=1)
    if us == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s", "ms"):
        if us and us % UNITS[unit] == 0:
            return f"{us // UNITS[unit]}{unit}"
    return f"{Decimal(us) / UNITS['s']}s"
