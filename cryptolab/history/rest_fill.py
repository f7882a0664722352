"""REST for what no dump holds: one symbol's day line after the dumps are loaded.

Every run of days without a loaded file (a day not published yet, today, a 404 inside the
range) and every break of the id sequence between two files is fetched from REST by id
(`historicalTrades` from the last id before it; `aggTrades` by aggregate id), klines and the
futures-only kinds by time. A run at the start of the range with no file before it starts at
the first trade at or after its first midnight (`aggTrades?startTime=`); when that trade lies
past the run, the symbol did not trade yet: a DataError says from which day it did. Rows are
stored `REST_BATCH_PAGES` pages per transaction (a killed run keeps what committed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..binance.rest import RestClient
from ..errors import DataError
from ..model import now_us
from . import futures as fut
from .download import Progress
from .plan import DumpFile, HistoryPlan
from .result import HistoryResult
from .store import HistoryStore, Loaded

__all__ = ["Cover", "RestFill", "PAGE", "REST_BATCH_PAGES"]

PAGE = 1000
REST_BATCH_PAGES = 20
"""REST pages stored per transaction (a killed run keeps what committed; a re-run resumes)."""
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def _day_us(d: date) -> int:
    return (d - _EPOCH).days * _US_PER_DAY


def _day(us: int) -> date:
    return _EPOCH + timedelta(days=us // _US_PER_DAY)


@dataclass
class Cover:
    """A file's place in a symbol's day line: its days and ids (None when it was not found)."""

    file: DumpFile
    loaded: Loaded | None


class RestFill:
    """The REST stage of one history request: fills `result` (rows, holes, last ids) as it stores."""

    def __init__(
        self,
        plan: HistoryPlan,
        *,
        rest_url: str,
        progress: Progress,
        until_ids: dict[str, int],
        today: date,
        result: HistoryResult,
    ) -> None:
        self.plan = plan
        self.rest_url = rest_url
        self.progress = progress
        self.until_ids = until_ids
        self.today = today
        self.result = result

    async def fill(self, store: HistoryStore, rest: RestClient, sym: str, covers: list[Cover]) -> None:
        """REST for every run of days no file covers, and for id breaks between files."""
        kind = self.plan.kind
        last_day = self.plan.last_day
        until = self.until_ids.get(sym)
        # the line of days: each planned file, then today's REST span when planned
        segs: list[tuple[date, date, Loaded | None, DumpFile | None]] = [
            (c.file.first_day, c.file.last_day, c.loaded, c.file) for c in covers
        ]
        segs.extend((s.first_day, s.last_day, None, None) for s in self.plan.rest if s.symbol == sym)
        prev: Loaded | None = None
        k = 0
        while k < len(segs):
            first, _, loaded, f = segs[k]
            if loaded is not None:
                if (
                    kind != "klines"
                    and prev is not None
                    and loaded.first_id is not None
                    and prev.last_id is not None
                    and loaded.first_id > prev.last_id + 1
                ):
                    self.progress.say(
                        f"history: {sym}: ids {prev.last_id + 1}…{loaded.first_id - 1} are in no "
                        "dump: fetching them from REST"
                    )
                    await self._fill(
                        store, rest, sym, prev.last_id + 1, loaded.first_id - 1, None, first, first
                    )
                if loaded.rows:
                    prev = loaded
                k += 1
                continue
            j = k
            while j < len(segs) and segs[j][2] is None:
                j += 1
            run_first, run_last = segs[k][0], segs[j - 1][1]
            nxt = segs[j][2] if j < len(segs) else None
            holes = [s[3] for s in segs[k:j] if s[3] is not None and not s[3].optional]
            if holes and nxt is not None:
                self.result.holes.extend(h.name for h in holes)
                self.progress.say(
                    f"history: {sym}: {len(holes)} dump(s) missing inside the range "
                    f"({holes[0].name}…): filling {run_first} … {run_last} from REST"
                )
            end_us = None if run_last >= self.today else _day_us(min(run_last, last_day) + timedelta(days=1))
            if kind == "klines":
                await self._fill_klines(store, rest, sym, run_first, run_last, end_us)
            elif kind in fut.TIME_KINDS:
                await self._fill_by_time(store, rest, sym, run_first, run_last, end_us)
            else:
                if prev is not None and prev.last_id is not None:
                    start_id: int | None = prev.last_id + 1
                else:
                    start_id = await self._first_id_at(
                        rest, sym, _day_us(run_first), end_us, run_first, nxt, j < len(segs)
                    )
                if start_id is not None:
                    hi = (nxt.first_id - 1) if (nxt is not None and nxt.first_id is not None) else None
                    if until is not None:
                        hi = until - 1 if hi is None else min(hi, until - 1)
                    await self._fill(store, rest, sym, start_id, hi, end_us, run_first, run_last)
                    if nxt is not None and nxt.first_id is not None:
                        prev = Loaded(1, 0, None, nxt.first_id - 1, "rest")  # the run reaches the next file
            k = j
        if until is not None and kind in ("trades", "aggTrades"):
            self.result.last_ids[sym] = until - 1

    async def _first_id_at(
        self,
        rest: RestClient,
        sym: str,
        start_us: int,
        end_us: int | None,
        day: date,
        nxt: Loaded | None,
        more: bool,
    ) -> int | None:
        """Id (trade id, or aggregate id for aggTrades) of the first trade at or after start_us."""
        rows = await rest.agg_trades(sym, start_ms=start_us // 1000, limit=1)
        nxt_first = nxt.first_id if nxt is not None else None
        if not rows:
            if more or nxt is not None:
                raise DataError(f"{sym}: no trades from {day} on at {self.rest_url}, yet later dumps exist")
            return None
        t = int(rows[0]["T"])
        t_us = t if t >= 10**14 else t * 1000
        if end_us is not None and t_us >= end_us:
            first_day = _day(t_us)
            if nxt is not None or more:
                raise DataError(
                    f"{sym} has no trades before {first_day} (it was not trading yet, or not listed): "
                    f"start --from at {first_day} or later — the days from {first_day} on are stored"
                )
            raise DataError(
                f"{sym} has no trades from {day} to {_day(end_us - 1)}: its first trade after {day} "
                f"is on {first_day} — choose days it traded"
            )
        first = int(rows[0]["a"]) if self.plan.kind == "aggTrades" else int(rows[0]["f"])
        if nxt_first is not None and first > nxt_first:
            return None
        return first

    async def _fill(
        self,
        store: HistoryStore,
        rest: RestClient,
        sym: str,
        from_id: int,
        to_id: int | None,
        end_us: int | None,
        first_day: date,
        last_day: date,
    ) -> None:
        """Page REST by id from `from_id` up to `to_id` / trades before `end_us` / the live edge."""
        kind = self.plan.kind
        if to_id is not None and to_id < from_id:
            return
        if kind == "trades" and self.plan.market == "usdm":
            raise DataError(
                f"{sym}: USD-M futures trades of {first_day} … {last_day} are in no dump and futures have "
                "no keyless REST for trades: fetch those days with --kind aggTrades"
            )
        if kind == "trades":
            from_id = await asyncio.to_thread(store.first_missing_id, sym, from_id, to_id)
            if to_id is not None and from_id > to_id:
                return
        nid = from_id
        batch: list[tuple[Any, ...]] = []
        batch_first = nid
        pages = 0
        done = False
        while not done:
            if kind == "trades":
                page: list[Any] = await rest.historical_trades(sym, from_id=nid, limit=PAGE)
            else:
                page = await rest.agg_trades(sym, from_id=nid, limit=PAGE)
            pages += 1
            if not page:
                break
            before = nid
            for r in page:
                rid = int(r["id"] if kind == "trades" else r["a"])
                t = int(r["time"] if kind == "trades" else r["T"])
                t_us = t if t >= 10**14 else t * 1000
                if rid < nid:
                    continue
                if (to_id is not None and rid > to_id) or (end_us is not None and t_us >= end_us):
                    done = True
                    break
                if kind == "trades":
                    batch.append((rid, r["price"], r["qty"], None, t, bool(r["isBuyerMaker"]), True))
                else:
                    batch.append((rid, r["p"], r["q"], int(r["f"]), int(r["l"]), t, bool(r["m"]), True))
                nid = rid + 1
            if len(page) < PAGE or (to_id is not None and nid > to_id) or nid == before:
                done = True  # the live edge, the end of the run, or a source that does not move on
            if batch and (done or pages % REST_BATCH_PAGES == 0):
                await self._store_rest(store, sym, batch, batch_first, first_day, last_day)
                batch, batch_first = [], nid
        if batch:
            await self._store_rest(store, sym, batch, batch_first, first_day, last_day)

    async def _store_rest(
        self,
        store: HistoryStore,
        sym: str,
        rows: list[tuple[Any, ...]],
        first: int,
        first_day: date,
        last_day: date,
    ) -> None:
        kind = self.plan.kind
        ep = "historicalTrades" if kind == "trades" else "aggTrades"
        name = f"rest:{ep}:{first}-{rows[-1][0]}"
        res = await asyncio.to_thread(
            store.store_rows,
            kind,
            sym,
            "",
            rows,
            name=name,
            url=f"{self.rest_url}/{self._api}/{ep}",
            first_day=first_day,
            last_day=last_day,
        )
        self.result.rest_rows += res.rows
        self.result.rest_stored += res.stored
        self.result.archived += res.archived
        self.progress.add_rows(res.rows)

    async def _fill_klines(
        self, store: HistoryStore, rest: RestClient, sym: str, first: date, last: date, end_us: int | None
    ) -> None:
        iv = self.plan.interval
        start_ms = _day_us(first) // 1000
        stop_ms = (end_us if end_us is not None else now_us()) // 1000
        rows: list[tuple[Any, ...]] = []
        while start_ms < stop_ms:
            page = await rest.klines(sym, iv, start_ms=start_ms, end_ms=stop_ms - 1, limit=PAGE)
            if not page:
                break
            now_ms = now_us() // 1000
            for k in page:
                if int(k[6]) >= now_ms:  # still open: not history yet
                    continue
                rows.append(
                    tuple(
                        [
                            int(k[0]),
                            k[1],
                            k[2],
                            k[3],
                            k[4],
                            k[5],
                            int(k[6]),
                            k[7],
                            int(k[8]),
                            k[9],
                            k[10],
                            str(k[11]),
                        ]
                    )
                )
            nxt = int(page[-1][0]) + 1
            if nxt <= start_ms or len(page) < PAGE:
                break
            start_ms = nxt
        if rows:
            res = await asyncio.to_thread(
                store.store_rows,
                "klines",
                sym,
                iv,
                rows,
                name=f"rest:klines:{rows[0][0]}-{rows[-1][0]}",
                url=f"{self.rest_url}/{self._api}/klines",
                first_day=first,
                last_day=last,
            )
            self.result.rest_rows += res.rows
            self.result.rest_stored += res.stored

    @property
    def _api(self) -> str:
        return "fapi/v1" if self.plan.market == "usdm" else "api/v3"

    async def _fill_by_time(
        self, store: HistoryStore, rest: RestClient, sym: str, first: date, last: date, end_us: int | None
    ) -> None:
        """A futures-only kind (fundingRate, markPriceKlines, metrics) from REST by time."""
        kind, iv = self.plan.kind, self.plan.interval
        rows = await fut.rest_rows(rest, kind, sym, iv, first, end_us, self.progress.say)
        if rows:
            ep = {
                "fundingRate": "fapi/v1/fundingRate",
                "markPriceKlines": "fapi/v1/markPriceKlines",
                "metrics": "futures/data/openInterestHist",
            }[kind]
            res = await asyncio.to_thread(
                store.store_rows,
                kind,
                sym,
                iv,
                rows,
                name=f"rest:{kind}:{rows[0][0]}-{rows[-1][0]}",
                url=f"{self.rest_url}/{ep}",
                first_day=first,
                last_day=last,
            )
            self.result.rest_rows += res.rows
            self.result.rest_stored += res.stored
