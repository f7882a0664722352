"""The file plan of a history: which dumps (monthly, daily) and which REST spans.

Pure: dates in, plan out, no I/O. Like a careful user would: a monthly dump for every
whole calendar month of the range that is surely published, daily dumps for the edges,
and REST for today (never published) — daily files of the last `publish_lag_days` days
are marked `optional` (Binance publishes a day some hours after it ends: a 404 there is
normal, and REST fills the day). Paths are data.binance.vision's (spot):

    data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2025-01.zip
    data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-05.zip
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-05.zip

each with its `.CHECKSUM` beside it. USD-M futures (`market="usdm"`) live under
`data/futures/um/…` with more kinds: `markPriceKlines/<iv>`, `fundingRate` (monthly files only:
the days of a month not surely published are a REST span) and `metrics` (daily files only).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from ..binance.dumps import check_symbol
from ..errors import DataError

__all__ = [
    "Kind",
    "KINDS",
    "USDM_KINDS",
    "USDM_INTERVALS",
    "INTERVALS",
    "DumpFile",
    "RestSpan",
    "HistoryPlan",
    "plan_history",
    "parse_day",
]

Kind = Literal["trades", "aggTrades", "klines", "markPriceKlines", "fundingRate", "metrics"]
KINDS: tuple[Kind, ...] = ("trades", "aggTrades", "klines")
"""What spot dumps hold."""
USDM_KINDS: tuple[Kind, ...] = ("trades", "aggTrades", "klines", "markPriceKlines", "fundingRate", "metrics")
"""What USD-M futures dumps hold (data/futures/um)."""
_INTERVAL_KINDS = ("klines", "markPriceKlines")
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
"""Kline intervals of Binance's spot dumps."""
USDM_INTERVALS = INTERVALS[1:]
"""Kline intervals of the futures dumps (no 1s)."""


@dataclass(frozen=True)
class DumpFile:
    """One dump file of the plan."""

    symbol: str
    kind: Kind
    interval: str  # klines only, else ""
    period: Literal["daily", "monthly"]
    first_day: date
    last_day: date
    optional: bool = False  # may not be published yet: a 404 is normal
    market: str = "spot"  # "usdm": data/futures/um

    @property
    def stamp(self) -> str:
        return self.first_day.isoformat() if self.period == "daily" else self.first_day.strftime("%Y-%m")

    @property
    def name(self) -> str:
        """`BTCUSDT-trades-2025-01-05.zip`, `BTCUSDT-1m-2025-01.zip`."""
        return (
            f"{self.symbol}-{self.interval if self.kind in _INTERVAL_KINDS else self.kind}-{self.stamp}.zip"
        )

    @property
    def path(self) -> str:
        """The path on data.binance.vision (no leading slash)."""
        sub = f"{self.interval}/" if self.kind in _INTERVAL_KINDS else ""
        root = "futures/um" if self.market == "usdm" else "spot"
        return f"data/{root}/{self.period}/{self.kind}/{self.symbol}/{sub}{self.name}"

    @property
    def checksum_path(self) -> str:
        return self.path + ".CHECKSUM"

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


@dataclass(frozen=True)
class RestSpan:
    """Days no dump holds (not published yet): fetched from REST, up to now for today."""

    symbol: str
    kind: Kind
    interval: str
    first_day: date
    last_day: date


@dataclass
class HistoryPlan:
    """Dump files (in time order per symbol) and REST spans of one history request."""

    symbols: tuple[str, ...]
    kind: Kind
    interval: str
    first_day: date
    last_day: date
    files: list[DumpFile] = field(default_factory=list)
    rest: list[RestSpan] = field(default_factory=list)
    market: str = "spot"

    def files_of(self, symbol: str) -> list[DumpFile]:
        return [f for f in self.files if f.symbol == symbol]


def parse_day(text: str | date, what: str = "date") -> date:
    """`2025-01-05` (or a date) → date; a DataError naming the option otherwise."""
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise DataError(f"{what} {str(text)[:40]!r} is not a date: write it as YYYY-MM-DD (UTC)") from None


def _month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def plan_history(
    symbols: Sequence[str],
    start: str | date,
    end: str | date | None = None,
    *,
    today: date,
    kind: str = "trades",
    interval: str = "1m",
    publish_lag_days: int = 1,
    monthly: bool = True,
    market: str = "spot",
) -> HistoryPlan:
    """The plan for `symbols` over the UTC days [start, end] (end: today when None).

    Days before today come from dumps: whole months whose every day is at least
    `publish_lag_days + 1` days old as one monthly file, the rest as daily files (those of
    the last `publish_lag_days` days optional). Today (when in the range) is a REST span.
    """
    kinds, intervals = (USDM_KINDS, USDM_INTERVALS) if market == "usdm" else (KINDS, INTERVALS)
    if market not in ("spot", "usdm"):
        raise DataError(f"--market {market!r}: use spot or usdm")
    if kind not in kinds:
        extra = (
            " (markPriceKlines, fundingRate and metrics are futures data: add --market usdm)"
            if kind in USDM_KINDS
            else ""
        )
        raise DataError(f"--kind {kind!r}: use one of {', '.join(kinds)}{extra}")
    if kind in _INTERVAL_KINDS and interval not in intervals:
        raise DataError(f"--interval {interval!r}: use one of {', '.join(intervals)}")
    syms = tuple(dict.fromkeys(check_symbol(s) for s in symbols))
    if not syms:
        raise DataError("no symbols given: name at least one, e.g. BTCUSDT")
    first = parse_day(start, "--from")
    last = parse_day(end, "--to") if end is not None else today
    if first > today:
        raise DataError(f"--from {first} is in the future (today is {today} UTC)")
    if first > last:
        raise DataError(f"--from {first} is after --to {last}: nothing to fetch")
    if first < date(2017, 7, 14):
        raise DataError(f"--from {first} is before Binance's first trade (2017-07-14): no data exists then")
    last = min(last, today)
    iv = interval if kind in _INTERVAL_KINDS else ""
    k: Kind = kind
    plan = HistoryPlan(syms, k, iv, first, last, market=market)
    dump_last = min(last, today - timedelta(days=1))
    sure = today - timedelta(days=1 + publish_lag_days)  # every day up to here is published
    for sym in syms:
        if k == "fundingRate":
            _plan_monthly_only(plan, sym, first, last, sure)
            continue
        d = first
        while d <= dump_last:
            m_end = _month_end(d)
            if monthly and k != "metrics" and d.day == 1 and m_end <= dump_last and m_end <= sure:
                plan.files.append(DumpFile(sym, k, iv, "monthly", d, m_end, market=market))
                d = m_end + timedelta(days=1)
                continue
            plan.files.append(DumpFile(sym, k, iv, "daily", d, d, optional=d > sure, market=market))
            d += timedelta(days=1)
        if last >= today:
            plan.rest.append(RestSpan(sym, k, iv, today, today))
    return plan


def _plan_monthly_only(plan: HistoryPlan, sym: str, first: date, last: date, sure: date) -> None:
    """fundingRate: one monthly file per month of the range surely published (the whole month,
    whatever part of it the range holds); the days after them are one REST span."""
    d = first.replace(day=1)
    while d <= last:
        m_end = _month_end(d)
        if m_end > sure:
            plan.rest.append(RestSpan(sym, plan.kind, "", max(first, d), last))
            return
        plan.files.append(DumpFile(sym, plan.kind, "", "monthly", d, m_end, market="usdm"))
        d = m_end + timedelta(days=1)
