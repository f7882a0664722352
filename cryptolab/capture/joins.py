"""History joins (`Capture(since=…)`) that a stop cut short: what is missing, said and recorded.

A join stores every trade of a symbol from the first trade of UTC day `since` up to the
live edge (`history.backfill_until`). When the capture stops before a join finishes, the
ids of that span the database does not hold are counted, said in the status (and by the
CLI, which then exits 1), and recorded in `capture_gaps` as `open`: the next capture of
the symbol fetches them from REST by id whatever its look-back (`runs.resume_points`
takes every open range).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import psycopg

from ..binance.rest import RestClient
from ..errors import CryptolabError
from .backfill import missing_parts, stored_runs
from .sequencer import GapEvent

__all__ = ["UNFINISHED", "Join", "first_id_of_day", "settle", "unfinished"]

UNFINISHED = "history join unfinished"
"""How `status().history[symbol]` starts for a join a stop cut short."""


@dataclass
class Join:
    """One symbol's join: from `first_id` (the first trade of `since`; None when REST did not
    say) up to `edge` (the live edge when it began)."""

    symbol: str
    since: date
    first_id: int | None
    edge: int
    market: str = "spot"
    """"usdm": the ids are aggregate ids (`agg_trades`), as futures are sequenced."""


async def first_id_of_day(rest: RestClient, symbol: str, day: date, key: str = "f") -> int | None:
    """The id of the first trade at or after UTC midnight of `day` (None when there is none or REST fails);
    `key="a"`: of the first aggregate."""
    start_ms = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1000
    try:
        rows = await rest.agg_trades(symbol, start_ms=start_ms, limit=1)
        return (int(rows[0]["a"]) if key == "a" else int(rows[0]["f"])) if rows else None
    except Exception:  # only a better report at stop depends on it: the join itself goes on without it
        return None


def _ids(parts: list[tuple[int, int]], shown: int = 3) -> str:
    text = ", ".join(f"{a}…{b}" if a != b else str(a) for a, b in parts[:shown])
    return text + (f" and {len(parts) - shown} more ranges" if len(parts) > shown else "")


def _lowest_stored(dsn: str, exchange: str, symbol: str, day: date, market: str = "spot") -> int | None:
    from ..storage import db

    sql = ("SELECT min(agg_id) FROM agg_trades" if market == "usdm" else "SELECT min(trade_id) FROM trades")
    with db.connect(dsn, autocommit=True, ensure_schema=False) as conn:
        row = conn.execute(sql + " WHERE exchange = %s AND symbol = %s "
                           "AND trade_time >= %s::date::timestamptz", (exchange, symbol, day)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def unfinished(join: Join, dsn: str, exchange: str) -> tuple[str, list[GapEvent]]:
    """What the stopped `join` left missing: the status line and the open gaps to record
    (I/O: reads the stored ids of the span)."""
    lo = (join.first_id if join.first_id is not None
          else _lowest_stored(dsn, exchange, join.symbol, join.since, join.market))
    if lo is None or lo > join.edge:
        return (f"{UNFINISHED} at stop: nothing of {join.since} … id {join.edge} is stored yet; "
                f"run the capture again with --since {join.since}"), []
    if join.market == "usdm":
        from .usdm import stored_agg_runs

        runs = stored_agg_runs(dsn, exchange, join.symbol, lo, join.edge)
    else:
        runs = stored_runs(dsn, exchange, join.symbol, lo, join.edge)
    parts = missing_parts(lo, join.edge, runs)
    missing = sum(b - a + 1 for a, b in parts)
    if not parts:
        return f"history joined from {join.since}: every id up to {join.edge} is stored", []
    reason = f"history join from {join.since} stopped before it finished"
    events = [GapEvent(join.symbol, a, b, "open", reason) for a, b in parts]
    what = "aggregates" if join.market == "usdm" else "trades"
    return (
        f"{UNFINISHED} at stop: {missing:,} {what} of {join.since} … id {join.edge} missing (ids "
        f"{_ids(parts)}); recorded in capture_gaps as open: the next capture of {join.symbol} fetches them"
    ), events


async def settle(
    joins: dict[str, Join],
    tasks: set[asyncio.Task[None]],
    history: dict[str, str],
    put_gap: Callable[[GapEvent], None],
    dsn: str,
    exchange: str,
) -> None:
    """At stop: cancel the joins still running; say and record what each unfinished one left missing."""
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sym, join in list(joins.items()):
        try:
            line, events = await asyncio.to_thread(unfinished, join, dsn, exchange)
        except (psycopg.Error, CryptolabError) as exc:
            line, events = (
                (
                    f"{UNFINISHED} at stop: ids {join.first_id or '?'}…{join.edge} may be missing "
                    f"(could not check: {' '.join(str(exc).split())[:120]}); run again with --since "
                    f"{join.since}"
                ),
                [],
            )
        history[sym] = line
        for ev in events:
            put_gap(ev)
        joins.pop(sym, None)
