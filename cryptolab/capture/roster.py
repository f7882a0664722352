"""The roster: the symbols this capture streams right now, and how that set changes.

At start a capture streams the symbols it owns; later the cluster hands it more (a
takeover) or takes some away (a lease lost or handed back). The roster keeps, per
symbol, its sequencer and the stream worker carrying it; adopting a symbol resumes it
after what is stored (and, with `since`, joins its history first); dropping one stops
its stream and leaves what is still missing as 'open' gaps for the new owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date

import psycopg

from ..binance.rest import RestClient
from ..errors import CryptolabError
from .backoff import ConnectBudget, backoff
from .book import BookFeed, stream_names
from .cluster import Cluster, TickResult
from .endpoints import Endpoint
from .joins import Join, first_id_of_day, settle
from .options import CaptureOptions, Counters
from .sequencer import Sequencer
from .sink import Sink
from .streams import StreamWorker
from .supervise import supervise

__all__ = ["Roster"]

log = logging.getLogger("cryptolab.capture")


class Roster:
    """Sequencers, stream workers and history joins of the symbols being captured."""

    def __init__(
        self,
        *,
        requested: tuple[str, ...],
        active: tuple[str, ...],
        endpoint: Endpoint,
        exchange: str,
        stream_source: str,
        seqs: dict[str, Sequencer],
        sink: Sink,
        counters: Counters,
        options: CaptureOptions,
        rest: RestClient,
        stop: asyncio.Event,
        dsn: str,
        resume: Callable[[list[str]], dict[str, Sequencer]],
        report_error: Callable[[str], None],
        since: date | None = None,
        dumps: str | None = None,
        books: BookFeed | None = None,
        book_resume: Callable[[list[str]], dict[str, int]] | None = None,
        market: str = "spot",
    ) -> None:
        self.market = market
        """"usdm": futures streams, one connection per route (`usdm.route_streams`)."""
        self.requested = requested
        self.books = books
        """The symbols' books, when the capture follows depth or quotes."""
        self.book_resume = book_resume
        self.book_last: dict[str, int] = {}
        """Per symbol, the last diff stored before this capture followed it (a restart's hole shows
        from it)."""
        self.active = active
        self.endpoint = endpoint
        self.exchange = exchange
        self.stream_source = stream_source
        self.seqs = seqs
        self.sink = sink
        self.counters = counters
        self.options = options
        self.rest = rest
        self.stop = stop
        self.dsn = dsn
        self.resume = resume
        self.report_error = report_error
        self.since = since
        self.dumps = dumps
        self.budget = ConnectBudget(options.max_connects_per_5min)
        self.history: dict[str, str] = {}
        """Per symbol, how the history join of `since` stands."""
        self._workers: dict[tuple[str, ...], asyncio.Task[None]] = {}
        self._history_tasks: set[asyncio.Task[None]] = set()
        self.joins: dict[str, Join] = {}
        """History joins not finished yet (said and recorded at stop: `joins.settle`)."""

    async def begin(self) -> None:
        """Stream the symbols owned at start (after joining their history, with `since`)."""
        await self.join_history(list(self.active))
        self.start_workers(list(self.active))

    def start_workers(self, symbols: list[str]) -> None:
        """One stream worker per `max_streams_per_connection` symbols (its own connection)."""
        n = max(1, self.options.max_streams_per_connection)
        for i in range(0, len(symbols), n):
            group = tuple(symbols[i : i + n])
            if self.market == "usdm":
                self._workers[group] = asyncio.create_task(self._usdm_workers(group))
                continue
            names = [
                n for s in group for n in stream_names(s, self.options.streams, self.options.depth_speed)
            ]
            if self.books is not None:
                for s in group:
                    self.books.follow(s, self.book_last.get(s))
            worker = StreamWorker(
                names,
                self.endpoint,
                self.exchange,
                self.stream_source,
                self.seqs,
                self.sink,
                self.counters,
                self.options,
                self.budget,
                self.rest,
                self.stop,
                self.report_error,
                self.books,
            )
            self._workers[group] = asyncio.create_task(self._supervised(worker))

    async def _usdm_workers(self, group: tuple[str, ...]) -> None:
        """One stream worker per route (`/market`: aggTrade, markPrice, forceOrder; `/public`: the book)."""
        from dataclasses import replace

        from .usdm import route_streams, usdm_kinds

        routes = route_streams(group, usdm_kinds(self.options.streams), self.options.depth_speed)
        if self.books is not None and "public" in routes:
            for s in group:
                self.books.follow(s, self.book_last.get(s))
        workers = [
            StreamWorker(
                names,
                replace(self.endpoint, ws=f"{self.endpoint.ws}/{route}"),
                self.exchange,
                self.stream_source,
                self.seqs,
                self.sink,
                self.counters,
                self.options,
                self.budget,
                self.rest,
                self.stop,
                self.report_error,
                self.books if route == "public" else None,
                market="usdm",
            )
            for route, names in routes.items()
        ]
        await asyncio.gather(*(self._supervised(w) for w in workers))

    async def _supervised(self, worker: StreamWorker) -> None:
        """The worker's run, started again (after a backoff delay, reported) whenever it raises."""
        more = len(worker.streams) - 3
        names = ", ".join(worker.streams[:3]) + (f" and {more} more" if more > 0 else "")

        def report(text: str) -> None:
            self.counters.worker_restarts += 1
            self.report_error(text)

        delays = backoff(self.options.backoff_base, self.options.backoff_max)
        await supervise(f"the stream worker of {names}", worker.run, self.stop, report, delays)

    async def join_history(self, symbols: list[str]) -> None:
        """With `since`: live starts after the exchange's latest id now; history fills up to it.

        For each symbol the REST edge (latest id) is asked first; the sequencer continues
        from it, so the live stream and REST backfill cover what comes after, and a history
        task stores everything from the first trade of `since` up to the edge (dumps for
        whole days, REST by id for the rest, all idempotent). The id sequence is then whole
        from `since` to the live edge.
        """
        if self.since is None:
            return
        from ..history import backfill_until

        ep, since, usdm = self.endpoint, self.since, self.market == "usdm"
        what = "aggregates" if usdm else "trades"  # futures are sequenced by aggregate id
        for sym in symbols:
            if sym in self.history:
                continue
            if usdm:
                from .usdm import latest_agg_id

                top = await latest_agg_id(self.rest, sym)  # type: ignore[arg-type]
            else:
                items = await self.rest.recent_trades(sym, limit=1)
                top = int(items[-1]["id"]) if items else None
            if top is None:
                continue
            edge = top
            seq = self.seqs.get(sym)
            if seq is not None and (seq.last_id is None or seq.last_id < edge):
                seq.last_id = edge
            self.history[sym] = f"joining history from {since} up to id {edge}"
            self.joins[sym] = Join(
                sym,
                since,
                await first_id_of_day(self.rest, sym, since, "a" if usdm else "f"),
                edge,
                self.market,
            )

            async def run(sym: str = sym, edge: int = edge) -> None:
                try:
                    res = await backfill_until(
                        sym,
                        edge + 1,
                        since,
                        exchange=self.exchange,
                        rest=ep.rest,
                        dumps=self.dumps or (ep.rest if ep.local else None),
                        dsn=self.dsn,
                        market=self.market,
                    )
                    self.joins.pop(sym, None)
                    self.history[sym] = (
                        f"history joined: {res.stored + res.rest_stored:,} {what} stored up to id {edge}"
                    )
                    log.info("%s: %s", sym, self.history[sym])
                except (
                    CryptolabError,
                    psycopg.Error,
                    OSError,
                ) as exc:  # said in status(), never lost in a task
                    self.history[sym] = f"history failed: {exc}"
                    self.report_error(
                        f"{sym}: history from {since} failed: {exc} (re-run with the same --since)"
                    )

            task = asyncio.create_task(run())
            self._history_tasks.add(task)
            task.add_done_callback(self._history_tasks.discard)

    async def drop(self, symbols: list[str], why: str) -> None:
        """Stop capturing `symbols` (lease lost or handed over); other symbols keep their streams."""
        gone = set(symbols)
        if self.books is not None:
            self.books.forget(symbols)
        for group in [g for g in self._workers if gone & set(g)]:
            task = self._workers.pop(group)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            kept = [s for s in group if s not in gone]
            if kept:
                self.start_workers(kept)
        for sym in symbols:
            seq = self.seqs.pop(sym, None)
            if seq is not None:
                for ev in seq.take_open(f"{why}: the new owner fills it"):
                    self.sink.put_gap(ev)
        self.active = tuple(s for s in self.active if s not in gone)
        log.warning("stopped capturing %s: %s", ", ".join(symbols), why)

    async def adopt(self, symbols: list[str]) -> None:
        """Start capturing `symbols` (a new lease): resume after what is stored, backfill the rest."""
        self.seqs.update(await asyncio.to_thread(self.resume, symbols))
        if self.books is not None and self.book_resume is not None:
            self.book_last.update(await asyncio.to_thread(self.book_resume, symbols))
        await self.join_history(symbols)
        self.active = tuple(s for s in self.requested if s in self.seqs)
        self.start_workers(symbols)
        log.info("now capturing %s", ", ".join(symbols))

    async def follow(self, cluster: Cluster, on_tick: Callable[[TickResult], None]) -> None:
        """Renew leases every `lease_renew_seconds`; take over orphans, hand back, stop when cut off."""
        self.sink.run_beats = False
        try:
            await self._follow(cluster, on_tick)
        finally:
            self.sink.run_beats = True

    async def _follow(self, cluster: Cluster, on_tick: Callable[[TickResult], None]) -> None:
        opts = self.options
        last_beat = 0.0
        while True:
            await asyncio.sleep(opts.lease_renew_seconds)
            # the run's heartbeat rides in the renewal's transaction (the sink beats only while this is
            # not running)
            beat = time.monotonic() - last_beat >= opts.heartbeat_seconds
            also = [self.sink.runs.heartbeat_statement(self.counters)] if beat else []
            try:
                res = await asyncio.wait_for(
                    cluster.tick(
                        rows_stored=self.counters.stored,
                        lag_ms=self.sink.lag_ms,
                        also=also,
                        carrier=self.sink,
                    ),
                    max(1.0, opts.lease_seconds / 2),
                )
            except (psycopg.Error, asyncio.TimeoutError, OSError) as exc:
                lost = cluster.expired_locally()
                if lost:
                    await self.drop(
                        lost,
                        f"lease not renewed in time ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]}); resumed from what is stored "
                        "when the database returns",
                    )
                continue
            if beat:
                last_beat = time.monotonic()
            if res.lost:
                await self.drop(res.lost, "lease given to another capturer")
            if res.gained:
                await self.adopt(res.gained)
            on_tick(res)

    async def close(self, history_timeout: float) -> None:
        """Wait (bounded) for history joins, then stop every stream."""
        if self._history_tasks:
            await asyncio.wait(self._history_tasks, timeout=history_timeout)
        await settle(
            self.joins, self._history_tasks, self.history, self.sink.put_gap, self.dsn, self.exchange
        )
        workers = list(self._workers.values())
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()
