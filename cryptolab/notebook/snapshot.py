"""The dashboard's data: one snapshot of a symbol (candles, session VWAP and CVD, the tape,
trades/s) read from `bars_1s` and `trades`, exact Decimals, cached between refreshes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from ..errors import ConfigError
from ..model import DEFAULT_EXCHANGE

__all__ = ["WINDOWS", "Snapshot", "SnapshotCache", "read_snapshot"]


# window name -> (length, candle step); each step divides a day, so no candle spans 00:00 UTC.
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "1m": (timedelta(minutes=1), timedelta(seconds=1)),
    "5m": (timedelta(minutes=5), timedelta(seconds=5)),
    "15m": (timedelta(minutes=15), timedelta(seconds=10)),
    "1h": (timedelta(hours=1), timedelta(seconds=30)),
    "4h": (timedelta(hours=4), timedelta(minutes=2)),
    "1d": (timedelta(days=1), timedelta(minutes=10)),
}


_TPS_SPAN = timedelta(seconds=10)


_SECONDS_PER_YEAR = 365 * 86_400


_Q_LAST = "SELECT max(ts) FROM bars_1s WHERE exchange = %s AND symbol = %s"


_Q_FIRST = "SELECT min(ts) FROM bars_1s WHERE exchange = %s AND symbol = %s AND ts > %s"


# finer candle steps for data shorter than the window (each divides a day)
_STEPS = tuple(timedelta(seconds=x) for x in (1, 2, 5, 10, 30, 60, 120, 600))


_MIN_CANDLES = 30


_Q_CANDLES = """
SELECT date_bin(%(step)s, ts, timestamptz 'epoch') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(quote_volume)                      AS quote_volume,
       sum(taker_buy_volume)                  AS taker_buy_volume,
       sum(trade_count)::bigint               AS trade_count,
       sum(quote_volume * quote_volume / volume) AS q2v
FROM bars_1s
WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(cfrom)s AND ts <= %(to)s
GROUP BY 1 ORDER BY 1
"""


# Σ volume, Σ quote, Σ taker buy, Σ quote²/volume of the bars in [lo, hi): the session's
# sums before the window (for VWAP, σ and CVD that start at 00:00 UTC).
_Q_PREFIX = """
SELECT row(coalesce(sum(volume), 0), coalesce(sum(quote_volume), 0),
           coalesce(sum(taker_buy_volume), 0), coalesce(sum(quote_volume * quote_volume / volume), 0))::text
FROM bars_1s WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(lo)s AND ts < %(hi)s
"""


# The rest of the prefix (checkpoint → window start), the day's open and the last 10 s.
_Q_SESSION = """
SELECT
  (SELECT row(coalesce(sum(volume), 0), coalesce(sum(quote_volume), 0), coalesce(sum(taker_buy_volume), 0),
              coalesce(sum(quote_volume * quote_volume / volume), 0))::text
     FROM bars_1s
    WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(checkpoint)s AND ts < %(from)s) AS prior,
  (SELECT open FROM bars_1s WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(session)s
    ORDER BY ts LIMIT 1) AS session_open,
  (SELECT coalesce(sum(trade_count), 0) FROM bars_1s
    WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts > %(to)s - %(tps_span)s AND ts <= %(to)s)
       AS recent_trades
"""


_Q_TAPE = """
SELECT trade_id, price, qty, is_buyer_maker, trade_time, received_at, ingested_at
FROM trades
WHERE exchange = %(ex)s AND symbol = %(sym)s AND trade_time >= %(since)s
ORDER BY trade_id DESC
LIMIT %(n)s
"""


_CHECKPOINT = timedelta(minutes=15)


_GRACE = timedelta(seconds=5)


_RAW = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
    "trade_count",
    "q2v",
)


@dataclass
class SnapshotCache:
    """What one dashboard keeps between ticks so a tick reads only the newest bars:
    candles closed more than 5 s ago, and the session's sums up to a 15-minute checkpoint.

    Everything is read afresh every `max_age` seconds and whenever the symbol or window
    changes, so a late backfill of older bars shows within a minute.
    """

    max_age: float = 60.0
    key: tuple[str, str, str] | None = None
    born: float = 0.0
    candles: list[dict[str, Any]] = field(default_factory=list)
    prefix: dict[datetime, list[Decimal]] = field(default_factory=dict)

    def valid_for(self, key: tuple[str, str, str]) -> bool:
        """True when the cache holds this key's data and is young enough; else reset it."""
        if self.key == key and time.monotonic() - self.born < self.max_age:
            return True
        self.key, self.born, self.candles, self.prefix = key, time.monotonic(), [], {}
        return False


@dataclass
class Snapshot:
    """What one refresh read for one symbol and window (exact values as Decimal)."""

    symbol: str
    window: str
    step: timedelta
    as_of: datetime | None = None
    """Second of the newest stored bar (the chart's right edge); None when nothing stored."""
    candles: list[dict[str, Any]] = field(default_factory=list)
    """Per candle: ts, open, high, low, close, volume, taker_buy_volume, trade_count,
    vwap (session VWAP at the candle's close), sigma (float), cvd (session CVD)."""
    trades: list[dict[str, Any]] = field(default_factory=list)
    """Newest trades first: trade_id, price, qty, is_buyer_maker, trade_time, received_at, ingested_at."""
    session_open: Decimal | None = None
    session_volume: Decimal | None = None
    """Σ qty of the session (UTC day of `as_of`), exact."""
    session_quote_volume: Decimal | None = None
    """Σ price·qty of the session, exact."""
    session_vwap: Decimal | None = None
    session_cvd: Decimal | None = None
    volatility: float | None = None
    """Annualized realized volatility of the window's candle closes, as a fraction."""
    trades_per_s: float = 0.0
    """Trades per second over the last 10 s of stored bars."""
    took_ms: float = 0.0

    @property
    def last(self) -> dict[str, Any] | None:
        """The newest stored trade."""
        return self.trades[0] if self.trades else None

    @property
    def change(self) -> Decimal | None:
        """Last price minus the session (UTC day) open."""
        if self.last is None or self.session_open is None:
            return None
        price: Decimal = self.last["price"]
        return price - self.session_open


def _day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _parse_row(text: str) -> list[Decimal]:
    return [Decimal(x) for x in text.strip("()").split(",")]


def read_snapshot(
    conn: psycopg.Connection,
    symbol: str,
    window: str = "15m",
    *,
    exchange: str = DEFAULT_EXCHANGE,
    tape_rows: int = 18,
    cache: SnapshotCache | None = None,
) -> Snapshot:
    """Read everything one dashboard refresh shows (a handful of index-backed queries).

    With a `cache`, closed candles and the session prefix come from earlier ticks and
    only newer bars are read; the result is the same as without it.
    """
    if window not in WINDOWS:
        raise ConfigError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")
    t0 = time.perf_counter()
    symbol = symbol.upper()
    length, step = WINDOWS[window]
    snap = Snapshot(symbol=symbol, window=window, step=step)
    row = conn.execute(_Q_LAST, (exchange, symbol)).fetchone()
    last_ts: datetime | None = row[0] if row else None
    if last_ts is None:
        snap.took_ms = 1000 * (time.perf_counter() - t0)
        return snap
    snap.as_of = last_ts
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    first_row = conn.execute(_Q_FIRST, (exchange, symbol, last_ts - length)).fetchone()
    first_ts: datetime | None = first_row[0] if first_row else None
    span = last_ts - first_ts + timedelta(seconds=1) if first_ts is not None else length
    if span < length:  # less data than the window: finer candles, and no empty stretch on the left
        step = max((x for x in _STEPS if x <= step and span / x >= _MIN_CANDLES), default=_STEPS[0])
        snap.step = step
    last_bin = epoch + (last_ts - epoch) // step * step
    start = last_bin - length + step
    if first_ts is not None and span < length:
        start = epoch + (first_ts - epoch) // step * step
    day = _day(start)

    cached: list[dict[str, Any]] = []
    checkpoint = day
    if cache is not None and cache.valid_for((exchange, symbol, f"{window}@{int(step.total_seconds())}s")):
        cached = [c for c in cache.candles if c["ts"] >= start]
    if cache is not None:
        checkpoint = max(day, epoch + (start - epoch) // _CHECKPOINT * _CHECKPOINT)
        if checkpoint not in cache.prefix:
            cache.prefix = {
                checkpoint: _parse_row(
                    conn.execute(
                        _Q_PREFIX, {"ex": exchange, "sym": symbol, "lo": day, "hi": checkpoint}
                    ).fetchone()[0]  # type: ignore[index]
                )
            }
    params = {
        "ex": exchange,
        "sym": symbol,
        "step": step,
        "from": start,
        "to": last_ts,
        "cfrom": cached[-1]["ts"] + step if cached else start,
        "checkpoint": checkpoint,
        "session": _day(last_ts),
        "tps_span": _TPS_SPAN,
        "since": last_ts - timedelta(minutes=2),
        "n": tape_rows,
    }
    with conn.pipeline():
        cur_c = conn.execute(_Q_CANDLES, params)
        cur_s = conn.execute(_Q_SESSION, params)
        cur_t = conn.execute(_Q_TAPE, params)
    names = [d.name for d in cur_c.description or []]
    rows = cached + [dict(zip(names, r)) for r in cur_c.fetchall()]
    prior, session_open, recent = cur_s.fetchone()  # type: ignore[misc]
    tnames = [d.name for d in cur_t.description or []]
    snap.trades = [dict(zip(tnames, r)) for r in cur_t.fetchall()]
    if cache is not None:
        cache.candles = [dict(c) for c in rows if c["ts"] + step <= last_ts - _GRACE]

    sums = _parse_row(prior)
    if cache is not None:
        sums = [a + b for a, b in zip(cache.prefix[checkpoint], sums)]
    vol, quote, buy, q2v = sums
    candles = []
    for raw in rows:
        c = {k: raw[k] for k in _RAW if k != "q2v"}
        if _day(c["ts"]) != day:  # a new UTC session inside the window: VWAP and CVD restart
            day = _day(c["ts"])
            vol = quote = buy = q2v = Decimal(0)
        vol += raw["volume"]
        quote += raw["quote_volume"]
        buy += raw["taker_buy_volume"]
        q2v += raw["q2v"]
        c["session_volume"], c["session_quote_volume"] = vol, quote
        vwap = quote / vol
        c["vwap"] = vwap
        c["sigma"] = math.sqrt(max(0.0, float(q2v / vol - vwap * vwap)))
        c["cvd"] = 2 * buy - vol
        candles.append(c)
    snap.candles = candles
    if candles and _day(candles[-1]["ts"]) == _day(last_ts):
        last = candles[-1]
        snap.session_vwap, snap.session_cvd = last["vwap"], last["cvd"]
        snap.session_volume, snap.session_quote_volume = last["session_volume"], last["session_quote_volume"]
    snap.session_open = session_open
    snap.trades_per_s = float(recent) / _TPS_SPAN.total_seconds()
    snap.volatility = _volatility(candles)
    snap.took_ms = 1000 * (time.perf_counter() - t0)
    return snap


def _step_name(step: timedelta) -> str:
    s = int(step.total_seconds())
    return f"{s // 60}m" if s >= 60 and s % 60 == 0 else f"{s}s"


def _volatility(candles: Sequence[Mapping[str, Any]]) -> float | None:
    """Annualized σ of log returns between consecutive candle closes, each scaled by
    √(seconds apart) so quiet gaps do not inflate it; None with fewer than 3 candles."""
    r = [
        math.log(float(b["close"]) / float(a["close"])) / math.sqrt((b["ts"] - a["ts"]).total_seconds())
        for a, b in zip(candles, candles[1:])
    ]
    if len(r) < 2:
        return None
    return statistics.stdev(r) * math.sqrt(_SECONDS_PER_YEAR)
