"""Storing USD-M futures rows: aggregate trades, mark price / funding updates, settled funding,
liquidations, open interest. Idempotent: a row offered twice is stored once.

Each call is one statement over arrays (`INSERT … SELECT FROM unnest(…) ON CONFLICT …`) in
the caller's transaction, and returns how many rows were new. Keys (schema.sql, version 8):

* `agg_trades` (exchange, symbol, agg_id) — futures aggregates sit beside spot's under
  exchange `binance-usdm`;
* `mark_prices` (exchange, symbol, event_time), partitioned by UTC day (made here as needed);
* `funding_rates` (exchange, symbol, funding_time): a later offer with the mark price fills it
  in where the first had none (a dump has no mark price, REST has), nothing else changes;
* `liquidations` (exchange, symbol, trade_time, side, price, qty): Binance gives no id;
* `open_interest` (exchange, symbol, ts): a later offer fills the value / ratios left empty.

    with conn.transaction():
        new = write_mark_prices(conn, rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg

from ..markets import AggTrade, FundingRate, Liquidation, MarkPrice, OpenInterest
from ..model import us_to_datetime

__all__ = ["write_agg_trades", "write_mark_prices", "write_funding_rates", "write_liquidations",
           "write_open_interest", "ensure_day_partitions", "FuturesRow", "FuturesResult", "write_futures"]


def _ts(us: int | None) -> Any:
    return None if us is None else us_to_datetime(us)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[r[k] for r in rows] for k in range(width)]


def ensure_day_partitions(conn: psycopg.Connection, table: str, first_us: int, last_us: int) -> int:
    """Make `table`'s UTC-day partitions for [first, last] (schema's cryptolab_ensure_day_partitions)."""
    row = conn.execute("SELECT cryptolab_ensure_day_partitions(%s, %s, %s)",
                       (table, us_to_datetime(first_us), us_to_datetime(last_us))).fetchone()
    return int(row[0]) if row else 0


def _insert(conn: psycopg.Connection, sql: str, cols: list[list[Any]]) -> int:
    cur = conn.execute(sql, cols)
    return max(cur.rowcount, 0)


_AGG = """
INSERT INTO agg_trades (exchange, symbol, agg_id, price, qty, first_trade_id, last_trade_id, trade_time,
                        is_buyer_maker, source)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::numeric[], %s::numeric[], %s::bigint[],
                     %s::bigint[], %s::timestamptz[], %s::boolean[], %s::text[])
ON CONFLICT (exchange, symbol, agg_id) DO NOTHING
"""


def write_agg_trades(conn: psycopg.Connection, rows: Sequence[AggTrade]) -> int:
    """Aggregate trades into `agg_trades` (either market); returns how many were new."""
    if not rows:
        return 0
    data = [(r.exchange, r.symbol, r.agg_id, r.price, r.qty, r.first_trade_id, r.last_trade_id,
             us_to_datetime(r.trade_time_us), r.is_buyer_maker, r.source) for r in rows]
    return _insert(conn, _AGG, _columns(data, 10))


_MARK = """
INSERT INTO mark_prices (exchange, symbol, event_time, mark_price, index_price, est_settle_price,
                         funding_rate, next_funding_time, received_at, source)
SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::numeric[], %s::numeric[], %s::numeric[],
                     %s::numeric[], %s::timestamptz[], %s::timestamptz[], %s::text[])
ON CONFLICT (exchange, symbol, event_time) DO NOTHING
"""


def write_mark_prices(conn: psycopg.Connection, rows: Sequence[MarkPrice]) -> int:
    """Mark price / funding updates into `mark_prices` (day partitions made as needed); returns
    how many were new."""
    if not rows:
        return 0
    times = [r.event_time_us for r in rows]
    ensure_day_partitions(conn, "mark_prices", min(times), max(times))
    data = [
        (
            r.exchange,
            r.symbol,
            us_to_datetime(r.event_time_us),
            r.mark_price,
            r.index_price,
            r.est_settle_price,
            r.funding_rate,
            _ts(r.next_funding_time_us),
            _ts(r.received_at_us),
            r.source,
        )
        for r in rows
    ]
    return _insert(conn, _MARK, _columns(data, 10))


_FUNDING = """
INSERT INTO funding_rates AS f (exchange, symbol, funding_time, funding_rate, mark_price, interval_hours,
                                source)
SELECT DISTINCT ON (e, s, t) * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::numeric[],
                     %s::numeric[], %s::integer[], %s::text[]) AS u(e, s, t, r, m, h, src)
ORDER BY e, s, t, m NULLS LAST
ON CONFLICT (exchange, symbol, funding_time) DO UPDATE SET
    mark_price = coalesce(f.mark_price, EXCLUDED.mark_price),
    interval_hours = coalesce(f.interval_hours, EXCLUDED.interval_hours)
WHERE (f.mark_price IS NULL AND EXCLUDED.mark_price IS NOT NULL)
   OR (f.interval_hours IS NULL AND EXCLUDED.interval_hours IS NOT NULL)
RETURNING (xmax = 0) AS inserted
"""


def write_funding_rates(conn: psycopg.Connection, rows: Sequence[FundingRate]) -> int:
    """Settled funding into `funding_rates`; returns how many settlements were new (a mark price
    or interval filled into a stored one is not counted)."""
    if not rows:
        return 0
    data = [
        (
            r.exchange,
            r.symbol,
            us_to_datetime(r.funding_time_us),
            r.funding_rate,
            r.mark_price,
            r.interval_hours,
            r.source,
        )
        for r in rows
    ]
    out = conn.execute(_FUNDING, _columns(data, 7)).fetchall()
    return sum(1 for (inserted,) in out if inserted)


_LIQ = """
INSERT INTO liquidations (exchange, symbol, trade_time, side, order_type, time_in_force, price, avg_price,
                          qty, last_filled_qty, filled_qty, status, event_time, received_at, source)
SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                     %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::text[],
                     %s::timestamptz[], %s::timestamptz[], %s::text[])
ON CONFLICT (exchange, symbol, trade_time, side, price, qty) DO NOTHING
"""


def write_liquidations(conn: psycopg.Connection, rows: Sequence[Liquidation]) -> int:
    """Liquidations into `liquidations`; returns how many were new."""
    if not rows:
        return 0
    data = [
        (
            r.exchange,
            r.symbol,
            us_to_datetime(r.trade_time_us),
            r.side,
            r.order_type,
            r.time_in_force,
            r.price,
            r.avg_price,
            r.qty,
            r.last_filled_qty,
            r.filled_qty,
            r.status,
            _ts(r.event_time_us),
            _ts(r.received_at_us),
            r.source,
        )
        for r in rows
    ]
    return _insert(conn, _LIQ, _columns(data, 15))


_OI = """
INSERT INTO open_interest AS o (exchange, symbol, ts, open_interest, open_interest_value, source)
SELECT DISTINCT ON (e, s, t) * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::numeric[],
                                           %s::numeric[], %s::text[]) AS u(e, s, t, oi, v, src)
ORDER BY e, s, t, v NULLS LAST
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET open_interest_value = EXCLUDED.open_interest_value
WHERE o.open_interest_value IS NULL AND EXCLUDED.open_interest_value IS NOT NULL
RETURNING (xmax = 0) AS inserted
"""


def write_open_interest(conn: psycopg.Connection, rows: Sequence[OpenInterest]) -> int:
    """Open interest into `open_interest`; returns how many times were new (a value filled into a
    stored row is not counted)."""
    if not rows:
        return 0
    data = [
        (r.exchange, r.symbol, us_to_datetime(r.time_us), r.open_interest, r.open_interest_value, r.source)
        for r in rows
    ]
    out = conn.execute(_OI, _columns(data, 6)).fetchall()
    return sum(1 for (inserted,) in out if inserted)


FuturesRow = AggTrade | MarkPrice | Liquidation | OpenInterest
"""A live futures row a capture queues for the sink (stored by `write_futures`)."""


class FuturesResult(NamedTuple):
    """What one `write_futures` stored: new rows of each kind (offered twice: stored once)."""

    agg_trades: int = 0
    mark_prices: int = 0
    liquidations: int = 0
    open_interest: int = 0
    agg_offered: int = 0


def write_futures(conn: psycopg.Connection, rows: Sequence[FuturesRow]) -> FuturesResult:
    """A capture's batch of futures rows, each kind to its table, in the caller's transaction."""
    aggs: list[AggTrade] = []
    marks: list[MarkPrice] = []
    liqs: list[Liquidation] = []
    ois: list[OpenInterest] = []
    for r in rows:
        t = type(r)
        if t is AggTrade:
            aggs.append(r)  # type: ignore[arg-type]
        elif t is MarkPrice:
            marks.append(r)  # type: ignore[arg-type]
        elif t is Liquidation:
            liqs.append(r)  # type: ignore[arg-type]
        else:
            ois.append(r)  # type: ignore[arg-type]
    return FuturesResult(
        write_agg_trades(conn, aggs),
        write_mark_prices(conn, marks),
        write_liquidations(conn, liqs),
        write_open_interest(conn, ois),
        len(aggs),
    )
