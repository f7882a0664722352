"""History end to end: plan → download (verified) → load → REST for what no dump holds.

`fetch_history()` (sync) / `fetch_history_async()` run one request; `backfill_until()` is
the join a live capture uses: history from a date up to (not including) the first id
its stream delivered.

Days are covered, per symbol, by loaded dump files; every run of days without one (a
day not published yet, today, a 404 inside the range) and every break of the id sequence
between two files is fetched from REST by id (`historicalTrades` from the last id before
it; `aggTrades` by aggregate id; `klines` by time). A run at the start of the range with
no file before it starts at the first trade at or after its first midnight (found with
`aggTrades?startTime=`); when that trade lies past the run, the symbol did not trade
yet: a DataError says from which day it did (what was loaded stays loaded).

`market="usdm"` does the same for Binance USD-M futures (`data/futures/um` dumps, `/fapi` REST,
rows stored under `binance-usdm`, or `simulator-usdm` from the local exchange); the kinds only
futures have (markPriceKlines, fundingRate, metrics) are fetched from REST by time
(`history.futures`). Futures trades have no keyless REST: days no dump holds take aggTrades.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..binance.rest import RestClient
from ..binance.usdm import UsdmRestClient
from ..errors import CryptolabError, DataError, SourceError
from ..markets import check_market
from ..model import now_us
from . import futures as fut
from .download import DEFAULT_DUMPS_URL, Downloader, Fetched, Progress
from .plan import DumpFile, HistoryPlan, plan_history
from .store import HistoryStore, Loaded

__all__ = ["fetch_history", "fetch_history_async", "backfill_until", "HistoryResult", "DEFAULT_REST_URL",
           "default_cache", "utc_today"]

DEFAULT_REST_URL = "https://api.binance.com"
PAGE = 1000
REST_BATCH_PAGES = 20
"""REST pages stored per transaction (a killed run keeps what committed; a re-run resumes)."""
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _fapi_url() -> str:
    from ..config import settings

    return settings().fapi_url


def default_cache() -> Path:
    from ..config import settings

    return Path(settings().home) / "history-cache"


def _day_us(d: date) -> int:
    return (d - _EPOCH).days * _US_PER_DAY


def _day(us: int) -> date:
    return _EPOCH + timedelta(days=us // _US_PER_DAY)


@dataclass
class HistoryResult:
    """What one history request did."""

    exchange: str
    kind: str
    symbols: tuple[str, ...]
    files_planned: int = 0
    files_loaded: int = 0
    files_skipped: int = 0  # already in the database (history_files)
    files_missing: list[str] = field(default_factory=list)  # 404: optional days and holes
    holes: list[str] = field(default_factory=list)  # 404 inside the range (filled from REST)
    bulk_files: int = 0
    rows: int = 0  # rows read from dumps
    stored: int = 0  # rows stored from dumps
    rest_rows: int = 0
    rest_stored: int = 0
    bytes: int = 0
    seconds: float = 0.0
    last_ids: dict[str, int] = field(default_factory=dict)
    checksum_retries: int = 0
    archived: int = 0  # rows not stored again: their ids live in the archive (days archived and dropped)

    @property
    def total_stored(self) -> int:
        return self.stored + self.rest_stored

    def summary(self) -> str:
        what = {"trades": "trades", "aggTrades": "aggregate trades", "klines": "klines",
                "markPriceKlines": "mark price klines", "fundingRate": "funding rates",
                "metrics": "open interest rows"}[self.kind]
        parts = [f"history {','.join(self.symbols)} ({self.exchange}): {self.total_stored:,} {what} stored "
                 f"({self.stored:,} from {self.files_loaded} dump file(s), {self.rest_stored:,} from REST)"]
        if self.files_skipped:
            parts.append(f"{self.files_skipped} file(s) already loaded")
        if self.holes:
            parts.append(f"{len(self.holes)} missing dump(s) filled from REST: {', '.join(self.holes[:4])}"
                         + (" …" if len(self.holes) > 4 else ""))
        if self.archived:
            parts.append(
                f"{self.archived:,} not stored again: their ids live in the archive (days archived and "
                "dropped)"
            )
        rate = (self.rows + self.rest_rows) / self.seconds if self.seconds else 0.0
        parts.append(f"{self.bytes / 1e6:,.1f} MB downloaded, {self.seconds:.1f} s, {rate:,.0f} rows/s")
        return "; ".join(parts)


@dataclass
class _Cover:
    """A file's place in a symbol's day line: its days and ids (None when it was not found)."""

    file: DumpFile
    loaded: Loaded | None


async def _exchange_name(rest: RestClient, symbols: Sequence[str], need_rest: bool) -> str:
    """'simulator' for a synthetic local market, else 'binance'; unknown symbols raise."""
    try:
        info = await rest.market_info(list(symbols))
    except SourceError as exc:
        if need_rest or "unknown symbol" in str(exc):
            raise
        return "binance"
    missing = [s for s in symbols if s not in info.symbols]
    if missing:
        raise DataError(
            f"unknown symbol {', '.join(missing)} at {rest.base_url}: check the spelling "
            f"(exchangeInfo lists {len(info.symbols)} symbols)"
        )
    return info.stored_as


class _History:
    def __init__(
        self,
        plan: HistoryPlan,
        *,
        dsn: str | None,
        rest_url: str,
        dumps_url: str,
        workers: int,
        cache: Path,
        exchange: str | None,
        progress: bool,
        until_ids: dict[str, int] | None,
        today: date,
    ) -> None:
        self.plan = plan
        self.dsn = dsn
        self.rest_url = rest_url
        self.dumps_url = dumps_url
        self.workers = workers
        self.cache = cache
        self.exchange_arg = exchange
        self.progress = Progress(progress, files=len(plan.files))
        self.until_ids = {k.upper(): v for k, v in (until_ids or {}).items()}
        self.today = today
        self.result = HistoryResult("?", plan.kind, plan.symbols, files_planned=len(plan.files))

    async def run(self) -> HistoryResult:
        from ..storage import db

        t0 = time.perf_counter()
        plan = self.plan
        # trades in µs (the dumps' unit since 2025); klines keep ms (their times are parsed as ms here)
        usdm = plan.market == "usdm"
        rest = (
            UsdmRestClient(self.rest_url)
            if usdm
            else RestClient(self.rest_url, time_unit=None if plan.kind == "klines" else "MICROSECOND")
        )
        try:
            need_rest = bool(plan.rest) or bool(self.until_ids)
            if self.exchange_arg:
                exchange = self.exchange_arg
            elif usdm:
                exchange = await fut.usdm_exchange(self.rest_url, list(plan.symbols), need_rest)
            else:
                exchange = await _exchange_name(rest, plan.symbols, need_rest)
            self.result.exchange = exchange
            conn = await asyncio.to_thread(db.connect, self.dsn, autocommit=True)
            try:
                store = HistoryStore(conn, exchange, dsn=db.resolve_dsn(self.dsn))
                try:
                    covers = await self._files(store)
                    for sym in plan.symbols:
                        await self._rest_fill(store, rest, sym, [c for c in covers if c.file.symbol == sym])
                finally:
                    store.close()
            finally:
                conn.close()
        finally:
            await rest.close()
            self.progress.close()
        self.result.seconds = time.perf_counter() - t0
        return self.result

    # ------------------------------------------------------------------ dumps
    async def _files(self, store: HistoryStore) -> list[_Cover]:
        """Download (concurrently) and load (as each arrives) every planned file not in yet."""
        covers: dict[DumpFile, _Cover] = {}
        todo: list[DumpFile] = []
        for f in self.plan.files:
            done = store.loaded(f.symbol, f.kind, f.interval, f.name)
            if done is not None:
                covers[f] = _Cover(f, done)
                self.result.files_skipped += 1
                self.progress.file_done(f.name, note="(already loaded)")
            else:
                todo.append(f)
        if todo:
            dl = Downloader(self.dumps_url, self.cache, workers=self.workers, progress=self.progress)
            queue: asyncio.Queue[Fetched | None] = asyncio.Queue(maxsize=max(2, self.workers))

            async def produce() -> None:
                sem = asyncio.Semaphore(self.workers)
                import aiohttp

                timeout = aiohttp.ClientTimeout(total=None, sock_connect=dl.timeout, sock_read=dl.timeout)
                async with aiohttp.ClientSession(timeout=timeout) as session:

                    async def one(f: DumpFile) -> None:
                        async with sem:
                            got = await dl.fetch(session, f)
                        await queue.put(got)

                    await asyncio.gather(*(one(f) for f in todo))
                await queue.put(None)

            producer = asyncio.ensure_future(produce())
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done_set, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done_set:
                        getter.cancel()
                        producer.result()  # raises the download error
                        continue
                    got = getter.result()
                    if got is None:
                        break
                    self.result.checksum_retries = dl.checksum_mismatches
                    covers[got.file] = _Cover(got.file, await self._load(store, got))
                producer.result()
            finally:
                if not producer.done():
                    producer.cancel()
                    await asyncio.gather(producer, return_exceptions=True)
        return [covers[f] for f in self.plan.files]

    async def _load(self, store: HistoryStore, got: Fetched) -> Loaded | None:
        f = got.file
        if got.path is None:
            self.result.files_missing.append(f.name)
            self.progress.file_done(f.name, note="(not published: REST fills it)" if f.optional else "(404)")
            return None
        self.result.bytes += got.size
        res = await asyncio.to_thread(store.load_file, f, got.path, url=got.url, sha256=got.sha256)
        self.result.files_loaded += 1
        self.result.rows += res.rows
        self.result.stored += res.stored
        self.result.archived += res.archived
        if res.mode == "bulk":
            self.result.bulk_files += 1
        self.progress.file_done(
            f.name,
            res.rows,
            note=f"{res.stored:,} new ({res.mode})"
            + (f", {res.archived:,} in the archive" if res.archived else ""),
        )
        return res

    # ------------------------------------------------------------------ REST
    async def _rest_fill(self, store: HistoryStore, rest: RestClient, sym: str, covers: list[_Cover]) -> None:
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


async def fetch_history_async(
    symbols: Sequence[str] | str,
    start: str | date,
    end: str | date | None = None,
    *,
    kind: str = "trades",
    interval: str = "1m",
    dumps: str | None = None,
    rest: str | None = None,
    workers: int = 4,
    cache: str | Path | None = None,
    dsn: str | None = None,
    exchange: str | None = None,
    progress: bool = False,
    until_ids: dict[str, int] | None = None,
    today: date | None = None,
    market: str = "spot",
) -> HistoryResult:
    """Store the history of `symbols` over the UTC days [start, end] (see the module doc);
    `market="usdm"`: Binance USD-M futures."""
    if isinstance(symbols, str):
        symbols = [s for s in symbols.replace(" ", "").split(",") if s]
    today = today or utc_today()
    plan = plan_history(
        symbols, start, end, today=today, kind=kind, interval=interval, market=check_market(market)
    )
    if workers < 1 or workers > 64:
        raise DataError(f"--workers must be 1-64 (got {workers})")
    h = _History(
        plan,
        dsn=dsn,
        rest_url=rest or (_fapi_url() if plan.market == "usdm" else DEFAULT_REST_URL),
        dumps_url=dumps or DEFAULT_DUMPS_URL,
        workers=workers,
        cache=Path(cache) if cache else default_cache(),
        exchange=exchange,
        progress=progress,
        until_ids=until_ids,
        today=today,
    )
    return await h.run()


def fetch_history(
    symbols: Sequence[str] | str, start: str | date, end: str | date | None = None, **kwargs: Any
) -> HistoryResult:
    """`fetch_history_async` from sync code (also inside Jupyter's running loop)."""
    from ..aio import run_sync

    result: HistoryResult = run_sync(fetch_history_async(symbols, start, end, **kwargs))
    return result


async def backfill_until(
    symbol: str,
    first_live_id: int,
    since: str | date,
    *,
    exchange: str,
    rest: str,
    dumps: str | None = None,
    dsn: str | None = None,
    cache: str | Path | None = None,
    workers: int = 4,
    progress: bool = False,
    market: str = "spot",
) -> HistoryResult:
    """The capture's join: every trade of `symbol` from UTC day `since` up to id `first_live_id - 1`.

    `market="usdm"`: every aggregate (futures are sequenced by aggregate id) from the futures
    dumps (`futures/um` aggTrades) and `/fapi/v1/aggTrades` by id; `rest` is the `/fapi` root.

    Dumps for the whole days before today, REST by id for the rest, all stored on the
    idempotent path (rows the capture already stored are not stored twice). On return,
    `result.last_ids[symbol] == first_live_id - 1` and every id from the first trade of
    `since` to there is stored — the capture's sequencer can start at `first_live_id - 1`.
    """
    if first_live_id < 1:
        raise DataError(f"first_live_id must be >= 1 (got {first_live_id})")
    try:
        return await fetch_history_async(
            [symbol],
            since,
            None,
            kind="aggTrades" if market == "usdm" else "trades",
            dumps=dumps,
            rest=rest,
            workers=workers,
            cache=cache,
            dsn=dsn,
            exchange=exchange,
            progress=progress,
            until_ids={symbol.upper(): first_live_id},
            market=market,
        )
    except CryptolabError:
        raise
