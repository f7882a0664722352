"""REST backfill: what the sequencer reports missing is asked from `historicalTrades` by id.

The gap policy (`sequencer.GapPolicy`) decides when and how much; this module only
pages through REST, carves what arrives out of the missing range, queues it for the
sink as source `backfill`, and records the outcome (`filled`, or `unrecoverable` for
ids REST does not return) — a range is never dropped silently.

What the database already holds is not asked again: before a range goes to REST, the
ids of it stored meanwhile are carved out (one query for the stored runs of ids), and
nothing is backfilled until the journals an earlier capture left are replayed — their
rows are stored from the journal, not fetched a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from ..binance.rest import RestClient
from ..binance.wire import trade_from_rest
from ..errors import CryptolabError
from ..model import DeadLetter, now_us
from .options import Counters
from .sequencer import GapEvent, GapPolicy, Sequencer
from .sink import Sink

__all__ = ["Backfiller", "missing_parts", "stored_runs"]

PAGE = 1000
"""Trades per historicalTrades request (Binance's maximum)."""
LOOK = 0.1
"""Seconds between two looks while something is due or journals are being replayed."""
IDLE_LOOK = 1.0
"""Longest sleep when nothing is missing (a new missing range wakes the backfiller at once)."""


def stored_runs(dsn: str, exchange: str, symbol: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The runs of consecutive ids of [lo, hi] stored for the symbol, in id order."""
    from ..storage import db

    with db.connect(dsn, autocommit=True, ensure_schema=False) as conn:
        conn.execute("SET statement_timeout = '30s'")
        rows = conn.execute(
            "SELECT min(trade_id), max(trade_id) FROM (SELECT trade_id, trade_id - row_number() OVER "
            "(ORDER BY trade_id) AS run FROM (SELECT DISTINCT trade_id FROM trades WHERE exchange = %s "
            "AND symbol = %s AND trade_id BETWEEN %s AND %s) ids) t GROUP BY run ORDER BY 1",
            (exchange, symbol, lo, hi)).fetchall()
    return [(int(a), int(b)) for a, b in rows]


def missing_parts(lo: int, hi: int, stored: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi] minus the sorted, disjoint runs `stored` (pure)."""
    out, nxt = [], lo
    for a, b in stored:
        if a > nxt:
            out.append((nxt, min(a - 1, hi)))
        nxt = max(nxt, b + 1)
    if nxt <= hi:
        out.append((nxt, hi))
    return out


class Backfiller:
    """Fills the missing ranges of every sequencer from REST."""

    def __init__(self, rest: RestClient, seqs: dict[str, Sequencer], sink: Sink, counters: Counters,
                 policy: GapPolicy, exchange: str, report_error: Callable[[str], None]) -> None:
        self.rest = rest
        self.seqs = seqs
        self.sink = sink
        self.counters = counters
        self.policy = policy
        self.exchange = exchange
        self.report_error = report_error
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Fill ranges as they fall due, until cancelled.

        Between two looks it sleeps until the first missing range is due, or until a sequencer
        opens a new one (`Sequencer.on_open`), at most `IDLE_LOOK` seconds: a quiet capture's event
        loop is not woken ten times a second for nothing. While journals left behind are being
        replayed (nothing is fetched until then) and between retries it looks every `LOOK` seconds."""
        while True:
            await self._sleep()
            try:
                await self.fill_due()
            except CryptolabError as exc:
                self.report_error(str(exc))
                await asyncio.sleep(1.0)

    async def _sleep(self) -> None:
        for seq in self.seqs.values():  # sequencers adopted later are hooked on the next look
            if seq.on_open is None:
                seq.on_open = self._wake.set
        due = self.policy.due_in(list(self.seqs.values()), time.monotonic())
        wait = (
            LOOK
            if not self.sink.replayed.is_set()
            else min(IDLE_LOOK, max(LOOK, due if due is not None else IDLE_LOOK))
        )
        if wait <= LOOK:
            await asyncio.sleep(wait)
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
        self._wake.clear()

    async def fill_due(self, *, final: bool = False) -> None:
        """Backfill every range the policy says is due (all of them when `final`)."""
        if not final and not self.sink.replayed.is_set():
            return  # the journals left behind first: their rows are not fetched again
        for seq in list(self.seqs.values()):
            while True:
                plan = self.policy.plan(seq, time.monotonic(), final=final)
                if plan.action == "wait":
                    break
                if plan.first_attempt and (not plan.catch_up or plan.give_up is not None):
                    self.counters.gaps_found += 1  # the start's catch-up is no gap, unless part of it is lost
                if plan.give_up is not None:
                    self.sink.put_gap(plan.give_up)
                    self.counters.gaps_lost += 1
                catch_up = plan.catch_up and plan.give_up is None
                if plan.first_attempt:
                    parts = await self._not_stored(seq, plan.lo, plan.hi)
                    if not parts and not catch_up:
                        self.counters.gaps_filled += 1
                        self.sink.put_gap(
                            GapEvent(seq.symbol, plan.lo, plan.hi, "filled", "stored meanwhile")
                        )
                    for lo, hi in parts:
                        await self.backfill_range(seq, lo, hi, catch_up=catch_up)
                else:
                    await self.backfill_range(seq, plan.lo, plan.hi, catch_up=catch_up)

    # ---- what a kind of id is (a subclass fills other ids the same way: capture/usdm.py, aggregates)

    stored_runs = staticmethod(stored_runs)
    """Runs of consecutive ids of [lo, hi] the database holds for a symbol."""
    source = "REST historicalTrades"

    async def fetch_page(self, symbol: str, from_id: int, limit: int) -> list[Any]:
        """One REST page of items from `from_id`."""
        return list(await self.rest.historical_trades(symbol, from_id=from_id, limit=limit))

    def parse(self, item: Any, symbol: str, received: int) -> tuple[int, Any]:
        """(id, row) of one REST item; ValueError when it is bad."""
        t = trade_from_rest(item, symbol, exchange=self.exchange, received_at_us=received)
        return t.trade_id, t

    def queue(self, row: Any) -> None:
        self.sink.trades.append(row)

    # ----

    async def _not_stored(self, seq: Sequencer, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi] the database does not hold (all of it when it cannot be asked)."""
        try:
            stored = await asyncio.to_thread(
                self.stored_runs, self.sink.link.dsn, self.exchange, seq.symbol, lo, hi
            )
        except (psycopg.Error, CryptolabError):
            return [(lo, hi)]
        for a, b in stored:
            seq.carve_range(a, b)
        return missing_parts(lo, hi, stored)

    async def backfill_range(self, seq: Sequencer, lo: int, hi: int, *, catch_up: bool = False) -> None:
        """Ask REST for ids lo..hi, page by page; what it does not return is recorded as lost.

        `catch_up`: the ids printed before the capture's first streamed trade: counted as
        backfilled, not as a gap found and filled (only a loss among them makes it a gap)."""
        frm, lost = lo, False
        valve = self.sink.valve
        while frm <= hi:
            if valve is not None:
                await valve.wait_open()  # backpressure: no page while the writer is behind
            items = await self.fetch_page(seq.symbol, frm, min(PAGE, hi - frm + 1))
            received = now_us()
            got: list[tuple[int, Any]] = []
            for it in items:
                try:
                    i, row = self.parse(it, seq.symbol, received)
                except ValueError as exc:
                    self.sink.put_dead(
                        DeadLetter(
                            f"backfill: {exc}",
                            orjson.dumps(it),
                            "backfill",
                            self.exchange,
                            seq.symbol,
                            received,
                        )
                    )
                    continue
                if frm <= i <= hi:
                    got.append((i, row))
            ids = sorted(i for i, _ in got)
            if not ids or ids[0] != frm:
                last_missing = (ids[0] - 1) if ids else hi
                self.sink.put_gap(
                    GapEvent(
                        seq.symbol,
                        frm,
                        last_missing,
                        "unrecoverable",
                        f"{self.source} did not return these ids",
                    )
                )
                if catch_up and not lost:
                    self.counters.gaps_found += 1
                self.counters.gaps_lost += 1
                lost = True
                seq.carve_range(frm, last_missing)
                if not ids:
                    return
            for i, row in got:
                if seq.carve(i):
                    self.queue(row)
                    self.counters.backfilled += 1
            self.sink.wake.set()
            if valve is not None:
                valve.check()  # a page past the mark stops the sockets too
            frm = ids[-1] + 1
        if not lost and not catch_up:
            self.counters.gaps_filled += 1
            self.sink.put_gap(GapEvent(seq.symbol, lo, hi, "filled", f"backfilled from {self.source}"))
