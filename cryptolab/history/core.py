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

Here: the request and its dump stage (download concurrently, load as each file arrives);
the REST stage is `rest_fill.RestFill`, the outcome `result.HistoryResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ..binance.rest import RestClient
from ..binance.usdm_rest import UsdmRestClient
from ..errors import CryptolabError, DataError, SourceError
from ..markets import check_market
from . import futures as fut
from .download import DEFAULT_DUMPS_URL, Downloader, Fetched, Progress
from .plan import DumpFile, HistoryPlan, plan_history
from .rest_fill import Cover, RestFill
from .result import HistoryResult
from .store import HistoryStore, Loaded

__all__ = ["fetch_history", "fetch_history_async", "backfill_until", "HistoryResult", "DEFAULT_REST_URL",
           "default_cache", "utc_today"]

DEFAULT_REST_URL = "https://api.binance.com"


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _fapi_url() -> str:
    from ..config import settings

    return settings().fapi_url


def default_cache() -> Path:
    from ..config import settings

    return Path(settings().home) / "history-cache"


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
                    fill = RestFill(
                        plan,
                        rest_url=self.rest_url,
                        progress=self.progress,
                        until_ids=self.until_ids,
                        today=self.today,
                        result=self.result,
                    )
                    for sym in plan.symbols:
                        await fill.fill(store, rest, sym, [c for c in covers if c.file.symbol == sym])
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
    async def _files(self, store: HistoryStore) -> list[Cover]:
        """Download (concurrently) and load (as each arrives) every planned file not in yet."""
        covers: dict[DumpFile, Cover] = {}
        todo: list[DumpFile] = []
        for f in self.plan.files:
            done = store.loaded(f.symbol, f.kind, f.interval, f.name)
            if done is not None:
                covers[f] = Cover(f, done)
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
                    covers[got.file] = Cover(got.file, await self._load(store, got))
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
