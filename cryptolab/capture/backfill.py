"""REST backfill: what the sequencer reports missing is asked from `historicalTrades` by id.

The gap policy (`sequencer.GapPolicy`) decides when and how much; this module only
pages through REST, carves what arrives out of the missing range, queues it for the
sink as source `backfill`, and records the outcome (`filled`, or `unrecoverable` for
ids REST does not return) — a range is never dropped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from ..binance.rest import RestClient
from ..binance.wire import trade_from_rest
from ..errors import CryptolabError
from ..model import DeadLetter, Trade, now_us
from .options import Counters
from .sequencer import GapEvent, GapPolicy, Sequencer
from .sink import Sink

__all__ = ["Backfiller"]

PAGE = 1000
"""Trades per historicalTrades request (Binance's maximum)."""


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

    async def run(self) -> None:
        """Check for due ranges ten times a second, until cancelled."""
        while True:
            await asyncio.sleep(0.1)
            try:
                await self.fill_due()
            except CryptolabError as exc:
                self.report_error(str(exc))
                await asyncio.sleep(1.0)

    async def fill_due(self, *, final: bool = False) -> None:
        """Backfill every range the policy says is due (all of them when `final`)."""
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
                await self.backfill_range(seq, plan.lo, plan.hi, catch_up=plan.catch_up and plan.give_up is None)

    async def backfill_range(self, seq: Sequencer, lo: int, hi: int, *, catch_up: bool = False) -> None:
        """Ask REST for ids lo..hi, page by page; what it does not return is recorded as lost.

        `catch_up`: the ids printed before the capture's first streamed trade: counted as
        backfilled, not as a gap found and filled (only a loss among them makes it a gap)."""
        frm, lost = lo, False
        while frm <= hi:
            items = await self.rest.historical_trades(seq.symbol, from_id=frm, limit=min(PAGE, hi - frm + 1))
            received = now_us()
            got: list[Trade] = []
            for it in items:
                try:
                    t = trade_from_rest(it, seq.symbol, exchange=self.exchange, received_at_us=received)
                except ValueError as exc:
                    self.sink.put_dead(DeadLetter(f"backfill: {exc}", orjson.dumps(it), "backfill", self.exchange,
                                                  seq.symbol, received))
                    continue
                if frm <= t.trade_id <= hi:
                    got.append(t)
            ids = sorted(t.trade_id for t in got)
            if not ids or ids[0] != frm:
                last_missing = (ids[0] - 1) if ids else hi
                self.sink.put_gap(GapEvent(seq.symbol, frm, last_missing, "unrecoverable",
                                           "REST historicalTrades did not return these ids"))
                if catch_up and not lost:
                    self.counters.gaps_found += 1
                self.counters.gaps_lost += 1
                lost = True
                seq.carve_range(frm, last_missing)
                if not ids:
                    return
            for t in got:
                if seq.carve(t.trade_id):
                    self.sink.trades.append(t)
                    self.counters.backfilled += 1
            self.sink.wake.set()
            frm = ids[-1] + 1
        if not lost and not catch_up:
            self.counters.gaps_filled += 1
            self.sink.put_gap(GapEvent(seq.symbol, lo, hi, "filled", "backfilled from REST"))
