"""Which capture inputs make sense: pure checks, each problem one sentence saying what to give instead.

`option_problems(options)` for `CaptureOptions` (negative, zero or non-finite durations, counts
below one, a lease renewed no faster than it expires); `since_problem(day, today)` for
`--since` (a day that has not begun yet has no history to join).
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import date
from typing import Any

__all__ = ["option_problems", "since_problem"]

_MAY_BE_ZERO = {
    "gap_grace",
    "takeover_grace",
    "handoff_settle",
    "lookback_seconds",
    "max_backfill_trades",
    "commit_window",
}
"""Options for which 0 means "none" (no grace, no look-back, no backfill, commit at once); the others
must be > 0."""


def option_problems(options: Any) -> list[str]:
    """What is wrong with a CaptureOptions (empty: nothing)."""
    out = []
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name == "streams":
            out += _stream_problems(value)
            continue
        if f.name == "depth_speed" and value not in ("100ms", "1000ms"):
            out.append(f"depth_speed={value!r}: use 100ms or 1000ms")
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            out.append(f"{f.name}={value} is not a finite number")
        elif f.name in _MAY_BE_ZERO and value < 0:
            out.append(f"{f.name}={value} is negative: use 0 or more")
        elif f.name not in _MAY_BE_ZERO and value <= 0:
            out.append(f"{f.name}={value} must be more than 0")
    if not out and options.lease_renew_seconds >= options.lease_seconds:
        out.append(
            f"lease_renew_seconds={options.lease_renew_seconds} must be less than "
            f"lease_seconds={options.lease_seconds}: a lease would expire before its renewal"
        )
    if not out and not 1 <= options.depth_snapshot <= 5000:
        out.append(f"depth_snapshot={options.depth_snapshot}: Binance serves 1 to 5000 levels a side")
    if not out and options.backoff_base > options.backoff_max:
        out.append(f"backoff_base={options.backoff_base} is more than backoff_max={options.backoff_max}")
    return out


def _stream_problems(streams: Any) -> list[str]:
    kinds = ("trade", "depth", "bookTicker", "aggTrade", "markPrice", "forceOrder")
    if isinstance(streams, str) or not streams:
        return [f"streams={streams!r}: give a list of {', '.join(kinds)}"]
    bad = [s for s in streams if s not in kinds]
    return [f"streams: unknown {', '.join(map(repr, bad))} (one of {', '.join(kinds)})"] if bad else []


def since_problem(day: date, today: date) -> str | None:
    """Why `--since day` cannot be joined, or None."""
    if day > today:
        return (
            f"--since {day} is in the future (today is {today}, UTC): give a past day, or leave --since out "
            "to capture from now on"
        )
    return None
