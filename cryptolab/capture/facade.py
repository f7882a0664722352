"""`Capture`: the small facade that wires the rooms together and runs them in threads.

    cap = Capture(["btcusdt", "ethusdt"], source="binance")
    cap.start()          # returns once it runs (or raises why it cannot)
    cap.status()         # cheap, thread-safe snapshot
    cap.stop()           # flushes memory and journal, then returns

One daemon thread runs an asyncio loop with the stream workers (`streams.py`) and
the backfiller (`backfill.py`); a second thread is the sink's writer (`sink.py`).
Sequencing and the gap policy are pure (`sequencer.py`), the run log is SQL
(`runs.py`), and `locks.py` keeps two captures on one machine off the same symbol.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from typing import Any

import psycopg

from ..binance.rest import RestClient
from ..binance.usdm_rest import UsdmRestClient
from ..config import mask_url, settings
from ..errors import ConfigError, CryptolabError, DatabaseError, SourceError
from ..markets import check_market, exchange_for
from ..model import DEFAULT_EXCHANGE, SIMULATOR_EXCHANGE, us_to_datetime
from ..storage import db
from ..storage.book import last_diff_ids
from ..storage.journal import Journal
from .backfill import Backfiller
from .book import BookFeed
from .cluster import Cluster, record_final_rows
from .endpoints import Endpoint, resolve_source
from .limits import option_problems, since_problem
from .options import CaptureOptions, CaptureStatus, Counters
from .pressure import Valve
from .rates import RateMeter
from .roster import Roster
from .runs import RunLog, db_key, mark_dead_runs, max_stored_ids, resume_points
from .sequencer import GapPolicy, Sequencer
from .sink import DbLink, Sink

__all__ = ["Capture"]

log = logging.getLogger("cryptolab.capture")


class Capture:
    """Capture trades for `symbols` from `source` into the database at `dsn`.

    `source`: `binance` (default), `binance.us`, `binance-data`
    (data-stream.binance.vision), `simulator` (an in-process local exchange), or the
    URL of a local exchange (`ws://127.0.0.1:PORT`). Synthetic markets (the simulator,
    or a local exchange that says it is synthetic) are stored as exchange 'simulator',
    apart from real data; name `exchange=` to store a replay of real data as such.
    `dsn`: any libpq DSN; default `CRYPTOLAB_DSN`, else the embedded server.
    `from_ids` (optional, per symbol): the first trade id wanted; anything older than
    what the stream delivers is fetched from REST.
    """

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] | str,
        source: str = "binance",
        dsn: str | None = None,
        *,
        options: CaptureOptions | None = None,
        exchange: str | None = None,
        from_ids: dict[str, int] | None = None,
        standby: bool = False,
        since: str | date | None = None,
        dumps: str | None = None,
        market: str = "spot",
        **overrides: Any,
    ) -> None:
        if isinstance(symbols, str):
            symbols = [s for s in symbols.replace(" ", "").split(",") if s]
        syms = tuple(dict.fromkeys(s.upper() for s in symbols))
        if not syms:
            raise SourceError("no symbols given: pass e.g. symbols=['btcusdt']")
        self.symbols = syms
        self.source = source
        self.market = check_market(market)
        """"spot", or "usdm" (Binance USD-M futures: aggTrade, markPrice, forceOrder, open interest,
        the book)."""
        self._exchange_arg = exchange
        self.exchange = exchange or (SIMULATOR_EXCHANGE if source == "simulator" else DEFAULT_EXCHANGE)
        if self.market == "usdm" and exchange is None:
            self.exchange = exchange_for("usdm", self.exchange)
        """Value of `trades.exchange` for what this capture stores (known for sure after start)."""
        if isinstance(overrides.get("streams"), str):
            overrides["streams"] = tuple(k for k in overrides["streams"].replace(" ", "").split(",") if k)
        self.options = replace(options or CaptureOptions(), **overrides)
        problems = option_problems(self.options)
        if problems:
            raise ConfigError(f"capture options: {'; '.join(problems)}")
        if self.market == "usdm":
            from .usdm import usdm_kinds

            usdm_kinds(self.options.streams)  # one line for a stream futures do not have
        else:
            from .usdm import spot_kinds_problem

            why = spot_kinds_problem(self.options.streams)
            if why:
                raise ConfigError(why)
        self._dsn_arg = dsn
        self.standby = standby
        if since is not None:
            from ..history.plan import parse_day

            since = parse_day(since, "--since")
            why = since_problem(since, datetime.now(timezone.utc).date())
            if why:
                raise ConfigError(why)
        self.since: date | None = since
        """First UTC day of history to join to the live stream (dumps + REST up to the first live id)."""
        self.dumps = dumps
        """Dump site for `since` (default: data.binance.vision; a local exchange serves its own)."""
        """A warm standby owns nothing until an owner of one of its symbols disappears."""
        self.from_ids = {k.upper(): int(v) for k, v in (from_ids or {}).items()}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.counters = Counters()
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self._start_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._seqs: dict[str, Sequencer] = {}
        self._active: tuple[str, ...] = ()
        self._skipped: dict[str, str] = {}
        self._cluster: Cluster | None = None
        self._dsn: str | None = None
        self._roster: Roster | None = None
        self._sink: Sink | None = None
        self._books: BookFeed | None = None
        self._endpoint: Endpoint | None = None
        self._local_exchange: Any = None
        self._run_id: int | None = None
        self._started_at: datetime | None = None
        self._error: str | None = None
        self._failed = False
        self._stream_source = "simulator" if self.source == "simulator" else "live"
        self._rates = RateMeter(time.monotonic())

    # ---- public API

    def start(self) -> Capture:
        """Start capturing in a daemon thread; return once it runs, or raise why it cannot.

        Start-up (database, the exchange's symbol list) is retried as a running capture
        retries, within `options.start_timeout`; then the cause is raised. Calling it
        again on a running capture does nothing. Symbols another capture already records
        into the same database are skipped (`status().skipped_symbols`).
        """
        if self._thread is not None and self._thread.is_alive():
            return self
        self._reset_state()
        name = f"cryptolab-capture[{','.join(self.symbols)[:60]}]"
        self._thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        self._thread.start()
        ready = self._ready.wait(self.options.start_timeout + 2.0)
        if self._start_error is None and not ready:
            why = self._error or "no answer"
            self._start_error = SourceError(
                f"capture did not start within {self.options.start_timeout:g} s ({why}): is the exchange "
                "reachable? raise start_timeout, or try --source simulator"
            )
        if self._start_error is not None:
            err = self._start_error
            self._request_stop()
            self._thread.join(10)
            self._thread = None
            if isinstance(err, CryptolabError):
                raise err
            raise SourceError(f"capture could not start: {type(err).__name__}: {err}") from err
        return self

    def stop(self, timeout: float = 30.0) -> CaptureStatus:
        """Stop reading, store everything received (memory and journal), return the final status.

        If the database is down, what could not be stored stays in the journal and is
        replayed by the next capture on this database; the status says how much.
        """
        thread = self._thread
        if thread is None:
            return self.status()
        self._request_stop()
        thread.join(timeout)
        self._thread = None
        return self.status()

    def status(self) -> CaptureStatus:
        """A cheap, thread-safe snapshot: rates, last trade times, queue, lag, gaps, rows."""
        c = self.counters
        now = time.monotonic()
        with self._lock:
            rate = self._rates.rate(now, c.messages)
        seqs = dict(self._seqs)  # one C-level copy: the event loop may add a symbol meanwhile
        last_times = {
            s: us_to_datetime(q.last_trade_us) for s, q in seqs.items() if q.last_trade_us is not None
        }
        thread, sink, books = self._thread, self._sink, self._books
        error = self._error or (sink.error if sink is not None else None)
        return CaptureStatus(
            running=thread is not None and thread.is_alive(),
            symbols=self._roster.active if self._roster else self._active if self._cluster else self.symbols,
            source=mask_url(self.source),
            started_at=self._started_at,
            run_id=self._run_id,
            rows_stored=c.stored,
            commits=c.commits,
            appended=c.appended,
            copied=c.copied,
            worker_restarts=c.worker_restarts,
            duplicates=c.duplicates + c.dropped_duplicates,
            messages=c.messages,
            trades_per_s=round(rate, 1),
            last_trade_time=last_times,
            queue_depth=len(sink.trades) + sink.queued_columns() if sink is not None else 0,
            journal_rows=len(sink.journal) if sink is not None else 0,
            lag_ms=sink.lag_ms if sink is not None else None,
            reconnects=c.reconnects,
            read_pauses=c.read_pauses,
            rotations=c.rotations,
            gaps_found=c.gaps_found,
            gaps_filled=c.gaps_filled,
            gaps_lost=c.gaps_lost,
            backfilled=c.backfilled,
            dead_letters=c.dead_letters,
            database_up=sink.link.up if sink is not None else False,
            skipped_symbols=dict(self._skipped),
            error=error,
            failed=self._failed or (sink.failed if sink is not None else False),
            exchange=self.exchange,
            database=sink.link.snapshot() if sink is not None else {},
            journal_bad_records=c.journal_bad_records,
            standby=self.standby,
            history=dict(self._roster.history) if self._roster else {},
            member_id=self._cluster.member_id if self._cluster is not None else None,
            book=books.status() if books is not None else {},
            book_gaps=tuple(books.gap_log.values()) if books is not None else (),
            book_diffs=c.book_diffs,
            level_updates=c.level_updates,
            quotes=c.quotes,
            snapshots=c.snapshots,
            futures={
                "agg_trades": c.agg_trades,
                "mark_prices": c.mark_prices,
                "liquidations": c.liquidations,
                "open_interest": c.open_interest,
            }
            if self.market == "usdm"
            else {},
        )

    @property
    def endpoint(self) -> Endpoint | None:
        """The resolved endpoint (after start)."""
        return self._endpoint

    @property
    def local_exchange(self) -> Any:
        """The in-process local exchange when source='simulator', else None."""
        return self._local_exchange

    def latencies_us(self) -> list[int]:
        """Receive→commit latencies (µs) of recent live trades, for benchmarks and the dashboard."""
        return list(self._sink.latencies_us) if self._sink is not None else []

    def reset_latencies(self) -> None:
        """Forget the latencies measured so far (a benchmark starts a new phase)."""
        if self._sink is not None:
            self._sink.latencies_us.clear()

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        st = self.status()
        state = "running" if st.running else "stopped"
        return f"<Capture {','.join(self.symbols)} from {self.source}: {state}, {st.rows_stored} stored>"

    # ---- internals

    def _request_stop(self) -> None:
        self._stop_requested.set()
        loop, ev = self._loop, self._stop_async
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the loop closed in between
                pass

    def _on_fatal(self, why: str) -> None:
        """The sink cannot go on: stop reading, say why (status().failed)."""
        self._failed = True
        self._error = why
        log.error("capture stopping: %s", why)
        self._request_stop()

    def _report_error(self, why: str) -> None:
        self._error = why

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
            else:
                self._error = f"{type(exc).__name__}: {exc}"
                self._failed = True
                log.exception("capture failed")
        finally:
            if self._sink is not None:
                self._sink.finish()
                self._sink.join()
                if self._cluster is not None and self._dsn is not None:
                    record_final_rows(self._dsn, self._cluster.member_id, self.counters.stored)
            if self._local_exchange is not None:
                try:
                    self._local_exchange.stop()
                except Exception:
                    log.exception("stopping the local exchange")
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _main(self) -> None:
        opts = self.options
        cfg = settings()
        self._stop_async = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop_async.set()
        deadline = time.monotonic() + opts.start_timeout
        # the database first: a clear DatabaseError when it cannot be had
        dsn = db.resolve_dsn(self._dsn_arg)
        self._dsn = dsn
        conn = db.connect(dsn)
        handed_over = False
        try:
            mark_dead_runs(conn, opts.dead_run_seconds)
            if self.market == "usdm":
                from .usdm import usdm_endpoint

                self._endpoint = usdm_endpoint(self.source)
            elif self.source == "simulator":
                self._start_simulator(conn)
            else:
                self._endpoint = resolve_source(self.source)
            ep = self._endpoint
            assert ep is not None
            client = (
                UsdmRestClient(ep.rest)
                if self.market == "usdm"
                else RestClient(ep.rest, time_unit=ep.time_unit)
            )
            async with client as rest:
                await self._check_exchange(rest, ep, deadline)
                cluster = Cluster(
                    dsn,
                    self.exchange,
                    self.symbols,
                    standby=self.standby,
                    lease_seconds=opts.lease_seconds,
                    grace=opts.takeover_grace,
                    settle=opts.handoff_settle,
                )
                self._cluster = cluster
                try:
                    first = await asyncio.wait_for(cluster.tick(), max(0.5, deadline - time.monotonic()))
                except (psycopg.Error, asyncio.TimeoutError) as exc:
                    raise DatabaseError(f"cannot register this capture in the database: {exc}") from None
                self._note_holders(first.holders)
                owned = [s for s in self.symbols if s in cluster.owned]
                self._active = tuple(owned)
                dbkey = db_key(dsn)
                names = ",".join(sorted(self.symbols))
                jdir = (
                    cfg.journal_dir
                    / dbkey
                    / f"{self.exchange}-{hashlib.sha1(names.encode()).hexdigest()[:10]}-p{os.getpid()}"
                )
                journal = Journal(jdir, max_bytes=opts.journal_max_bytes)
                leftovers = [
                    j
                    for j in Journal.all_under(jdir.parent, max_bytes=opts.journal_max_bytes)
                    if j.dir != jdir
                ]
                for sym, seq in self._sequencers(conn, owned).items():
                    self._seqs[sym] = seq
                runs = RunLog(self.exchange)
                note = "; ".join(f"{k}: {v}" for k, v in self._skipped.items()) or None
                self._run_id = runs.open(conn, self._active or self.symbols, mask_url(ep.ws), note)
                link = DbLink(dsn, opts.db_retry_seconds)
                link.attach(conn)
                handed_over = True  # the sink owns the connection now
                self._sink = Sink(opts, self.counters, journal, link, runs, self._on_fatal)
                if opts.backpressure:
                    s = self._sink
                    s.valve = Valve(
                        (s.trades, s.queued_live, s.book, s.futures), opts.max_queue_rows, self.counters,
                        asyncio.get_running_loop(),
                    )
                self._sink.leftovers = leftovers
                self._sink.start(f"{threading.current_thread().name}-writer")
                self._started_at = datetime.now(timezone.utc)
                with self._lock:
                    self._rates = RateMeter(time.monotonic(), self.counters.messages)
                self._ready.set()
                try:
                    await self._run(rest, ep, cluster)
                finally:
                    await cluster.leave()
        finally:
            if not handed_over:
                conn.close()

    def _sequencers(self, conn: psycopg.Connection, symbols: list[str]) -> dict[str, Sequencer]:
        """Sequencers that resume after what is stored (and re-open the holes found in it)."""
        if self.market == "usdm":
            from .usdm import agg_open_ranges, agg_resume_points

            last = agg_resume_points(conn, self.exchange, symbols, self.options.lookback_seconds)
            opened = agg_open_ranges(conn, self.exchange, symbols)  # a stopped history join's holes
            for s, rs in opened.items():
                last[s] = max([last.get(s, -1), *(b for _, b in rs)])
            return {
                s: Sequencer(
                    s,
                    max(last.get(s, -1), self.from_ids.get(s, 0) - 1)
                    if s in last or s in self.from_ids
                    else None,
                    opened.get(s, ()),
                )
                for s in symbols
            }
        resume = resume_points(conn, self.exchange, symbols, self.options.lookback_seconds, self.from_ids)
        out = {}
        for sym in symbols:
            last_id, holes = resume.get(sym, (None, []))
            if sym in self.from_ids and (last_id is None or last_id < self.from_ids[sym] - 1):
                last_id = self.from_ids[sym] - 1
            out[sym] = Sequencer(sym, last_id, holes)
        return out

    def _book_resume(self, symbols: list[str]) -> dict[str, int]:
        """The last stored diff's update id per symbol (a restart's hole is measured from it)."""
        assert self._dsn is not None
        with db.connect(self._dsn, ensure_schema=False) as conn:
            return last_diff_ids(conn, self.exchange, symbols)

    def _sequencers_fresh(self, symbols: list[str]) -> dict[str, Sequencer]:
        assert self._dsn is not None
        with db.connect(self._dsn, ensure_schema=False) as conn:
            return self._sequencers(conn, symbols)

    def _note_holders(self, holders: dict[str, str]) -> None:
        self._skipped = {
            s: ("standby: " if self.standby else "")
            + f"owned by the capture of {who} in this database; taken over if it stops"
            for s, who in holders.items()
        }
        if self.standby:
            for s in self.symbols:
                if s not in holders and (self._cluster is None or s not in self._cluster.owned):
                    self._skipped.setdefault(s, "standby: owned by no one yet")

    def _start_simulator(self, conn: Any) -> None:
        from ..exchange import LocalExchange

        # our own market continues the simulated history already stored, kept whole from its first trade
        first = {sym: 1 for sym in self.symbols} | {
            s: top + 1 for s, top in max_stored_ids(conn, self.exchange, self.symbols).items()
        }
        for sym, fid in first.items():
            self.from_ids.setdefault(sym, fid)
        self._local_exchange = LocalExchange(
            symbols=[s.lower() for s in self.symbols],
            rate=self.options.simulator_rate,
            seed=int(time.time()),
            first_ids=first,
        ).start()
        self._endpoint = resolve_source(self._local_exchange.ws_url)

    async def _check_exchange(self, rest: RestClient, ep: Endpoint, deadline: float) -> None:
        """Ask the exchange for the symbols (bounded by the start deadline); learn if it is synthetic."""
        remaining = max(0.5, deadline - time.monotonic())
        if self.market == "usdm":
            await self._check_contracts(rest, ep, remaining)
        try:
            info = await asyncio.wait_for(rest.market_info(list(self.symbols)), remaining)
        except asyncio.TimeoutError:
            raise SourceError(
                f"{mask_url(ep.rest)} did not answer exchangeInfo within {self.options.start_timeout:g} s: "
                "the exchange is slow or unreachable — retry later, raise start_timeout, or try --source "
                "simulator"
            ) from None
        unknown = [s for s in self.symbols if s not in info.symbols]
        if unknown:
            raise SourceError(
                f"unknown symbol {', '.join(unknown)} on {mask_url(ep.rest)}: check the spelling "
                "(e.g. BTCUSDT), or the exchange lists it under another name (a USD-M futures contract? add "
                "--market usdm)"
            )
        if self._exchange_arg is None and self.source != "simulator":
            # a synthetic market is never stored as a real exchange's data
            self.exchange = exchange_for(self.market, info.stored_as)

    async def _check_contracts(self, rest: RestClient, ep: Endpoint, remaining: float) -> None:
        """Futures: every symbol a trading contract (a spot-only symbol, a delisted contract: one line)."""
        from .usdm import contract_problems

        try:
            body = await asyncio.wait_for(rest.exchange_info(list(self.symbols)), remaining)
        except asyncio.TimeoutError:
            raise SourceError(
                f"{mask_url(ep.rest)} did not answer /fapi/v1/exchangeInfo within "
                f"{self.options.start_timeout:g} s: retry later or raise start_timeout"
            ) from None
        why = contract_problems(body, self.symbols, mask_url(ep.rest))
        if why:
            raise SourceError(why)

    async def _run(self, rest: RestClient, ep: Endpoint, cluster: Cluster) -> None:
        opts, stop, sink, dsn = self.options, self._stop_async, self._sink, self._dsn
        assert stop is not None and sink is not None and dsn is not None
        if {"depth", "bookTicker"} & set(opts.streams):
            self._books = BookFeed(
                self.exchange, sink, self.counters, rest, opts, futures=self.market == "usdm"
            )
        roster = Roster(
            requested=self.symbols,
            active=self._active,
            endpoint=ep,
            exchange=self.exchange,
            stream_source=self._stream_source,
            seqs=self._seqs,
            sink=sink,
            counters=self.counters,
            options=opts,
            rest=rest,
            stop=stop,
            dsn=dsn,
            resume=self._sequencers_fresh,
            report_error=self._report_error,
            since=self.since,
            dumps=self.dumps,
            books=self._books,
            book_resume=self._book_resume,
            market=self.market,
        )
        if self._books is not None:
            roster.book_last.update(await asyncio.to_thread(self._book_resume, list(self._active)))
        self._roster = roster
        filler = Backfiller
        if self.market == "usdm":
            from .usdm import UsdmBackfiller

            filler = UsdmBackfiller
        backfiller = filler(
            rest,
            self._seqs,
            sink,
            self.counters,
            GapPolicy(opts.gap_grace, opts.max_backfill_trades),
            self.exchange,
            self._report_error,
        )
        await roster.begin()
        tasks = [
            asyncio.create_task(backfiller.run()),
            asyncio.create_task(roster.follow(cluster, lambda res: self._note_holders(res.holders))),
        ]
        if self.market == "usdm":
            from .usdm import poll_open_interest

            tasks.append(
                asyncio.create_task(
                    poll_open_interest(
                        rest,  # type: ignore[arg-type]
                        lambda: roster.active,
                        sink,
                        self.counters,
                        self.exchange,
                        opts.open_interest_interval,
                        self._report_error,
                    )
                )
            )
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await roster.close(history_timeout=opts.start_timeout)
        if not self._failed:
            # last chance for ranges still missing: one more REST pass (bounded)
            try:
                await asyncio.wait_for(backfiller.fill_due(final=True), timeout=10)
            except (asyncio.TimeoutError, CryptolabError):
                pass
        for seq in self._seqs.values():
            for ev in seq.take_open("still missing at stop: the next capture retries it"):
                sink.put_gap(ev)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        self._check_orphans(roster)

    def _check_orphans(self, roster: Roster) -> None:
        """A symbol asked for that no one captured at the end is a failure, said loudly."""
        if self.standby:
            return
        orphaned = [s for s in self.symbols if s not in roster.active and s not in self._skipped]
        if orphaned and not self._failed:
            self._failed = True
            self._error = (
                f"stopped capturing {', '.join(orphaned)}: its lease ran out while the database was "
                "away and was not won back before the stop, and no other capturer holds it; trades "
                "since then are not stored — run the capture again, it resumes after what is stored"
            )
            log.error("%s", self._error)
