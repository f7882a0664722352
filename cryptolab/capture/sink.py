"""The sink: a writer thread that stores what the streams and backfill produce.

Producers (the event loop) append to unbounded deques and set `wake`; the writer
thread drains them in micro-batches (`batching.plan_turn` decides where each goes)
and stores them through `TradeWriter` — one transaction each, idempotent. While the
database is away (`DbLink` says so, and `status()` shows it), batches go to the
journal and are replayed in order when it is back. A batch the database *rejects*
as data is not an outage: it is split until the bad rows are found, and those become
dead letters. Any other error stops the capture loudly, with what was in memory
kept in the journal; the thread never dies silently.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg

from ..book.model import BookRow, DepthDiff, Quote
from ..errors import CryptolabError, DatabaseError, DataError, TradeConflict
from ..markets import AggTrade
from ..model import DeadLetter, Trade, now_us
from ..storage import db
from ..storage.columns import TradeColumns
from ..storage.futures import FuturesRow
from ..storage.journal import Journal, JournalFullError
from ..storage.journal_format import Segment
from ..storage.writer import Statement, TradeWriter
from .batching import commit_wait, drain, plan_turn
from .options import CaptureOptions, Counters
from .pressure import Valve
from .runs import RunLog
from .sequencer import GapEvent

__all__ = ["DbLink", "Sink"]

log = logging.getLogger("cryptolab.capture")

_Rows = list[list[tuple[Any, ...]]]
_Rider = tuple[list[Statement], "concurrent.futures.Future[_Rows]"]
"""Statements to commit with the next data, and who waits for their rows (`Sink.offer`)."""


@dataclass
class DbLink:
    """The writer's connection and whether the database is up (shown by `status()`)."""

    dsn: str
    retry_seconds: float
    conn: psycopg.Connection | None = None
    writer: TradeWriter | None = None
    state: str = "up"
    since: datetime | None = None
    last_error: str | None = None
    _next_try: float = 0.0

    def attach(self, conn: psycopg.Connection) -> None:
        self.conn, self.writer = conn, TradeWriter(conn)
        self._set("up", None)

    def _set(self, state: str, error: str | None) -> None:
        if state != self.state or self.since is None:
            self.state, self.since = state, datetime.now(timezone.utc)
        if error is not None:
            self.last_error = error

    @property
    def up(self) -> bool:
        """The database answered last time it was used (stays true after a clean close)."""
        return self.state == "up"

    def ensure(self) -> bool:
        """True when a writer is ready; reconnects at most every `retry_seconds`."""
        if self.writer is not None:
            return True
        if time.monotonic() < self._next_try:
            return False
        try:
            self.attach(db.connect(self.dsn, ensure_schema=False))
            log.info("database is back")
            return True
        except DatabaseError as exc:
            self._next_try = time.monotonic() + self.retry_seconds
            self._set("down", str(exc))
            return False

    def failed(self, exc: BaseException) -> None:
        """The database went away: drop the connection, retry later."""
        self._set("down", str(exc))
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                pass
        self.conn, self.writer = None, None
        self._next_try = time.monotonic() + self.retry_seconds

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, self.writer = None, None

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "last_error": self.last_error}


def _is_outage(exc: DatabaseError, link: DbLink) -> bool:
    cause = exc.__cause__
    return (isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)) or cause is None
            or link.conn is None or link.conn.closed)


class Sink:
    """Queues, writer thread, journal spill and replay for one capture."""

    def __init__(
        self,
        options: CaptureOptions,
        counters: Counters,
        journal: Journal,
        link: DbLink,
        runs: RunLog,
        on_fatal: Callable[[str], None],
    ) -> None:
        self.options = options
        self.counters = counters
        self.journal = journal
        self.link = link
        self.runs = runs
        self.on_fatal = on_fatal
        self.leftovers: list[Journal] = []
        """Journals earlier captures left under the same database (any symbols): replayed, then closed."""
        self.trades: collections.deque[Trade] = collections.deque()
        """Trades as rows: backfill, and the rare live frame only the careful decoder takes."""
        self.columns: TradeColumns | None = None
        """The live trades since the writer's last turn, column by column (`columns_for`): the
        stream appends under `columns_lock`, the writer takes the whole batch (`take_columns`)."""
        self.columns_lock = threading.Lock()
        self.book: collections.deque[BookRow] = collections.deque()
        """Depth diffs, quotes, snapshots and book gaps: written in the same turns as the trades."""
        self.futures: collections.deque[FuturesRow] = collections.deque()
        """USD-M futures rows (aggregate trades, mark prices, liquidations, open interest): same turns too."""
        self.dead: collections.deque[DeadLetter] = collections.deque()
        self.gaps: collections.deque[GapEvent] = collections.deque()
        self.wake = threading.Event()
        self.reading_done = threading.Event()
        self.lag_ms: float | None = None
        self.latencies_us: collections.deque[int] = collections.deque(maxlen=100_000)
        self.error: str | None = None
        self.failed = False
        self.replayed = threading.Event()
        """Set once the journals earlier captures left (`leftovers`) are stored: until then the
        backfiller waits, so their rows are replayed rather than fetched again from REST."""
        self._thread: threading.Thread | None = None
        self.run_beats = True
        """Whether this thread writes the run's periodic heartbeat (not while the cluster's tick
        carries it)."""
        self.riders: collections.deque[_Rider] = collections.deque()
        """Statements to commit with the next data (`offer`)."""
        self.last_write = 0.0
        """When (monotonic) the last batch was committed."""
        self.valve: Valve | None = None
        """With `backpressure`: stops the stream connections' reading while the queue is long."""

    # ---- producers (event-loop thread)

    def columns_for(self, exchange: str, source: str) -> bool:
        """Whether live trades of (`exchange`, `source`) go to the columns (the first stream to ask
        sets them; another exchange or source queues `Trade`s as before)."""
        with self.columns_lock:
            if self.columns is None:
                self.columns = TradeColumns(exchange, source)
            return self.columns.exchange == exchange and self.columns.source == source

    def take_columns(self, limit: int | None = None) -> TradeColumns | None:
        """The live trades queued as columns (at most `limit`, the oldest), None when there are none."""
        with self.columns_lock:
            cols = self.columns
            if cols is None or not len(cols):
                return None
            if limit is not None and len(cols) > limit:
                cols, self.columns = cols.split(limit)
            else:
                self.columns = cols.empty()
            return cols

    def queued_columns(self) -> int:
        cols = self.columns
        return len(cols) if cols is not None else 0

    @property
    def queued_live(self) -> _QueuedColumns:
        """The live columns' length as a queue's (`len()`), whichever batch is open now."""
        return _QueuedColumns(self)

    def put_dead(self, d: DeadLetter) -> None:
        self.dead.append(d)
        self.counters.dead_letters += 1
        self.wake.set()

    def put_book(self, row: BookRow) -> None:
        """A snapshot or a book gap (diffs and quotes are appended by the hot path directly)."""
        self.book.append(row)
        self.wake.set()

    def put_gap(self, ev: GapEvent) -> None:
        self.gaps.append(ev)
        self.wake.set()

    def offer(self, statements: Sequence[Statement]) -> concurrent.futures.Future[_Rows] | None:
        """Run `statements` in the next data transaction (the cluster's renewal rides there:
        `cluster.Carrier`); None when no rows wait to be committed. The future holds each
        statement's rows once committed, or the error that rolled it back; cancel it to take
        it back before the writer does. Also taken while nothing waits but data was committed in
        the last second (a quiet market between two trades: the next one comes soon)."""
        waiting = self.trades or self.book or self.futures or self.queued_columns()
        if not (waiting or time.monotonic() - self.last_write < 1.0) or self.failed or not self.link.up:
            return None
        fut: concurrent.futures.Future[_Rows] = concurrent.futures.Future()
        self.riders.append((list(statements), fut))
        return fut

    def _take_riders(self) -> list[_Rider]:
        """The renewals waiting for a data transaction, now running (cancelled ones dropped)."""
        out = []
        for rider in drain(self.riders, len(self.riders)):
            if rider[1].set_running_or_notify_cancel():
                out.append(rider)
        return out

    # ---- thread

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """No more input: store what is left, then end the thread."""
        self.reading_done.set()
        self.wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self._loop()
        except _Fatal as exc:
            self._fatal(str(exc))
            self._mark_failed()
        except BaseException as exc:  # the writer never dies silently
            self._fatal(f"the writer stopped on an unexpected error: {type(exc).__name__}: {exc}")
            log.exception("writer thread failed")
            self._mark_failed()
        finally:
            self.journal.close()
            for j in self.leftovers:
                j.close()
            self.link.close()

    def _fatal(self, why: str) -> None:
        self.failed = True
        rows = drain(self.trades, len(self.trades))
        cols = self.take_columns()
        rows += cols.rows() if cols is not None else []
        dead = drain(self.dead, len(self.dead))
        book = drain(self.book, len(self.book))
        fut = drain(self.futures, len(self.futures))
        if rows or dead or book or fut:
            try:  # keep what memory holds: the journal is replayed by the next capture
                self.journal.append(rows, dead, book, fut)
                why += (
                    f"; {len(rows) + len(dead) + len(book) + len(fut)} queued rows kept in the journal "
                    f"{self.journal.dir} for the next capture"
                )
            except Exception as exc:
                self.trades.extendleft(reversed(rows))
                self.dead.extendleft(reversed(dead))
                self.book.extendleft(reversed(book))
                self.futures.extendleft(reversed(fut))
                # the journal's own error is usually `why` itself: say it once
                cause = (
                    "" if isinstance(exc, JournalFullError) and "journal" in why else f" ({short_error(exc)})"
                )
                why += (
                    f"; {len(rows)} queued trades could not be kept{cause}: the next capture fetches "
                    "them again from REST by id"
                )
        self.error = why
        self.on_fatal(why)

    def _mark_failed(self) -> None:
        """Say in `capture_runs` that this run failed (when the database still answers)."""
        if self.link.conn is not None and not self.link.conn.closed:
            try:
                self.runs.heartbeat(self.link.conn, self.counters, final=True, failed=True)
            except psycopg.Error:
                log.warning("could not mark the run as failed in capture_runs")

    # ---- one turn at a time

    def _loop(self) -> None:
        """The writer's turns: replay journals, write or spill, run-log bookkeeping, until stopped."""
        opts, link, journal = self.options, self.link, self.journal
        last_beat = 0.0
        stop_deadline: float | None = None
        while True:
            stopping = self.reading_done.is_set()
            if not self._due(stopping):
                # not yet: the writer sleeps until the oldest row is due (producers wake it for
                # the first row of a group and when a group is full), keeping up the run log meanwhile
                wait = self._commit_wait()
                self.wake.wait(min(1.0, wait if wait is not None else 1.0))
                self.wake.clear()
                if not self._due(self.reading_done.is_set()):
                    last_beat = self._idle_turn(last_beat)
                    continue
                stopping = self.reading_done.is_set()
            batch = drain(self.trades, opts.max_batch_rows)
            cols = self.take_columns(opts.max_batch_rows)
            book = drain(self.book, opts.max_batch_rows)
            fut = drain(self.futures, opts.max_batch_rows) if self.futures else []
            dead = drain(self.dead, 10_000)
            up = self._replay_journals() if link.ensure() else False
            turn = plan_turn(
                queued=len(self.trades) + self.queued_columns() + len(self.book) + len(self.futures),
                journal_rows=len(journal),
                db_up=up,
                max_queue_rows=opts.max_queue_rows,
            )
            if self.valve is not None:  # drained: reading may go on (or must: the database is down)
                self.valve.after_turn(up)
            if batch or cols or dead or book or fut:
                to_db = turn.write_to == "database"
                self._write(batch, dead, book, to_database=to_db, futures=fut, cols=cols)
            if turn.spill:
                # the database is slower than the market: the oldest rows go to the journal
                # (replayed first, so order holds) instead of growing memory without bound
                spill_trades = drain(self.trades, turn.spill)
                spill_cols = self.take_columns(max(0, turn.spill - len(spill_trades)))
                spill_trades += spill_cols.rows() if spill_cols is not None else []
                spill_book = drain(self.book, max(0, turn.spill - len(spill_trades)))
                spill_fut = drain(self.futures, max(0, turn.spill - len(spill_trades) - len(spill_book)))
                self.counters.spilled += self._spill(spill_trades, [], spill_book, spill_fut)
            last_beat = self._bookkeeping(last_beat)
            if (
                stopping
                and not self.trades
                and not self.queued_columns()
                and not self.dead
                and not self.gaps
                and not self.book
                and not self.futures
            ):
                # a database that is merely between two retries gets a few of them before we give up
                stop_deadline = stop_deadline or time.monotonic() + 3 * opts.db_retry_seconds + 1.0
                if (link.ensure() or time.monotonic() < stop_deadline) and (len(journal) or not link.up):
                    time.sleep(0.05)
                    continue  # replay the rest first
                break
        self._final_bookkeeping()

    def _due(self, stopping: bool) -> bool:
        """Write now: stopping, dead letters or gaps to record, or the queued rows are due."""
        return stopping or bool(self.dead) or bool(self.gaps) or self._commit_wait() == 0.0

    def _commit_wait(self) -> float | None:
        """Seconds until the queued rows are due (see `batching.commit_wait`)."""
        trades, book, fut, cols = self.trades, self.book, self.futures, self.columns
        ncols = len(cols) if cols is not None else 0
        try:
            first = trades[0].received_at_us if trades else None
            if ncols:
                c = cols.received[0]  # type: ignore[union-attr]
                first = c if first is None or c < first else first
            if book:
                b = book[0].received_at_us if type(book[0]) in (DepthDiff, Quote) else None  # type: ignore[union-attr]
                first = b if first is None or (b is not None and b < first) else first
            if fut:
                f = getattr(fut[0], "received_at_us", None)
                first = f if first is None or (f is not None and f < first) else first
            oldest = (now_us() - (first or 0)) / 1e6 if trades or ncols or book or fut else 0.0
        except IndexError:  # drained meanwhile
            oldest = 0.0
        return commit_wait(
            queued=len(trades) + ncols + len(book) + len(fut),
            oldest_age=oldest,
            window=self.options.commit_window,
            enough_rows=self.options.commit_rows,
        )

    def _idle_turn(self, last_beat: float) -> float:
        """While rows wait for their group: replay a journal left behind, keep the run log up."""
        if self.link.ensure():
            self._replay_journals()  # also says when nothing is left to replay (backfill waits for that)
        if self.valve is not None:  # an idle writer still ends a pause (or one the database's loss ends)
            self.valve.after_turn(self.link.up)
        return self._bookkeeping(last_beat)

    def _replay_journals(self) -> bool:
        """Store what this capture's journal (and any left by earlier ones) holds; False on an outage."""
        link, journal = self.link, self.journal
        for j in [journal, *self.leftovers]:
            if not len(j) and j is journal:
                continue
            try:
                self.counters.journal_bad_records += j.replay(self._store_segment).bad
            except DatabaseError as exc:
                if not _is_outage(exc, link):
                    raise
                link.failed(exc)
                return False
            if j is not journal:
                log.info("replayed the journal %s left by an earlier capture", j.dir)
                j.close()
                self.leftovers.remove(j)
        if not self.leftovers:
            self.replayed.set()
        return True

    def _write(
        self,
        batch: list[Trade],
        dead: list[DeadLetter],
        book: list[BookRow],
        *,
        to_database: bool,
        futures: Sequence[FuturesRow] = (),
        cols: TradeColumns | None = None,
    ) -> None:
        """One batch to the database, or to the journal when the database is away."""
        riders = self._take_riders()
        if cols is not None and (batch or dead or book or futures or not to_database):
            batch = batch + cols.rows()  # rows go together (one transaction, or the journal)
            cols = None
        if not to_database:
            _settle(riders, DatabaseError("the database is away: the batch went to the journal"))
            self._spill(batch, dead, book, futures)
            return
        try:
            if cols is not None:
                self._store_columns(cols, riders)
            else:
                self._store(batch, dead, book, futures, riders)
        except DatabaseError as exc:
            _settle(riders, exc)
            if not _is_outage(exc, self.link):
                raise
            self.link.failed(exc)
            self._spill(batch if cols is None else cols.rows(), dead, book, futures)
        except BaseException as exc:
            _settle(riders, exc)
            raise

    def _bookkeeping(self, last_beat: float) -> float:
        """Gaps and the run's heartbeat into the run log (when the database answers)."""
        link = self.link
        if self.gaps and link.ensure():
            self._db_step(lambda c: self.runs.write_gaps(c, drain(self.gaps, len(self.gaps))))
        if self.run_beats and time.monotonic() - last_beat > self.options.heartbeat_seconds and link.ensure():
            last_beat = time.monotonic()
            self._db_step(lambda c: self.runs.heartbeat(c, self.counters, final=False))
        return last_beat

    def _final_bookkeeping(self) -> None:
        if self.link.ensure():
            self._db_step(lambda c: self.runs.write_gaps(c, drain(self.gaps, len(self.gaps))))
            self._db_step(lambda c: self.runs.heartbeat(c, self.counters, final=True, failed=self.failed))
        left = len(self.journal)
        if left and not self.error:
            self.error = (
                f"database unreachable at stop: {left} rows kept in the journal {self.journal.dir}; "
                "they are stored by the next capture on this database"
            )

    def _db_step(self, step: Callable[[psycopg.Connection], None]) -> None:
        conn = self.link.conn
        if conn is None:
            return
        try:
            step(conn)
        except psycopg.OperationalError as exc:
            log.warning("run log write failed (%s): retried when the database answers", exc)
            self.link.failed(exc)

    def _spill(
        self,
        rows: list[Trade],
        dead: list[DeadLetter],
        book: list[BookRow] | None = None,
        futures: Sequence[FuturesRow] = (),
    ) -> int:
        """Rows to the journal; a full journal stops the capture (nothing is dropped silently)."""
        try:
            return self.journal.append(rows, dead, book or (), futures)
        except CryptolabError as exc:
            self.trades.extendleft(reversed(rows))
            self.dead.extendleft(reversed(dead))
            self.book.extendleft(reversed(book or []))
            self.futures.extendleft(reversed(futures))
            raise _Fatal(str(exc)) from exc

    def _store_segment(self, seg: Segment) -> None:
        step = self.options.max_batch_rows
        for i in range(0, max(len(seg.trades), len(seg.book), len(seg.futures), 1), step):
            self._store(
                seg.trades[i : i + step],
                seg.dead_letters if i == 0 else [],
                seg.book[i : i + step],
                seg.futures[i : i + step],
            )

    def _store(
        self,
        rows: Sequence[Trade],
        dead: Sequence[DeadLetter],
        book: Sequence[BookRow] = (),
        futures: Sequence[FuturesRow] = (),
        riders: Sequence[_Rider] = (),
    ) -> None:
        """Store one batch (with the riders' statements); rows the database rejects as data become
        dead letters (the riders then run on their own)."""
        writer = self.link.writer
        assert writer is not None
        appended = writer.appended
        also = [st for stmts, _ in riders for st in stmts]
        try:
            if futures:
                res = writer.write(rows, dead, book, futures, also=also)
            else:
                res = writer.write(rows, dead, book, also=also)
        except DataError as exc:
            _settle(riders, exc)
            riders = ()
            if len(rows) + len(dead) + len(book) + len(futures) <= 1:
                self._reject(rows, dead, exc, book, futures)
                return
            mid, bmid, fmid = len(rows) // 2, len(book) // 2, len(futures) // 2
            self._store(rows[:mid], dead, book[:bmid], futures[:fmid])
            self._store(rows[mid:], [], book[bmid:], futures[fmid:])
            return
        self.last_write = time.monotonic()
        _answer(riders, res.also)
        if res.futures is not None:
            self._account_futures(res.futures, futures)
        if res.book is not None:
            c, b = self.counters, res.book
            c.book_diffs += b.diffs
            c.level_updates += b.level_updates
            c.quotes += b.quotes
            c.snapshots += b.snapshots
            c.stored_book_duplicates += (b.diffs_offered - b.diffs) + (b.quotes_offered - b.quotes)
            if not rows:
                c.commits += 1
        self._account(rows, res.inserted, res.duplicates)
        if rows:
            self.counters.commits += 1
            self.counters.appended += writer.appended - appended
        if res.archived:
            self.counters.archived += res.archived
            log.warning(
                "%d trades not stored: their ids live in the archive (days archived and dropped)",
                res.archived,
            )

    def _store_columns(self, cols: TradeColumns, riders: Sequence[_Rider]) -> None:
        """Store a batch of live trades kept as columns (with the riders' statements); a batch the
        database rejects as data takes `_store`'s way (rows, split to find the bad ones)."""
        writer = self.link.writer
        assert writer is not None
        appended, copied = writer.appended, writer.copied
        also = [st for stmts, _ in riders for st in stmts]
        try:
            res = writer.write_columns(cols, also=also)
        except DataError:
            self._store(cols.rows(), [], (), (), riders)
            return
        self.last_write = time.monotonic()
        _answer(riders, res.also)
        c = self.counters
        c.stored += res.inserted
        c.duplicates += res.duplicates
        c.commits += 1
        c.appended += writer.appended - appended
        c.copied += writer.copied - copied
        done = now_us()
        self.lag_ms = (done - cols.times[-1]) / 1000.0
        self.latencies_us.extend([done - r for r in cols.received])
        if res.archived:
            c.archived += res.archived
            log.warning(
                "%d trades not stored: their ids live in the archive (days archived and dropped)",
                res.archived,
            )

    def _reject(
        self,
        rows: Sequence[Trade],
        dead: Sequence[DeadLetter],
        exc: DataError,
        book: Sequence[BookRow] = (),
        futures: Sequence[FuturesRow] = (),
    ) -> None:
        writer = self.link.writer
        assert writer is not None
        why = (
            f"conflicts with the stored trade: {exc}"
            if isinstance(exc, TradeConflict)
            else f"database rejected the row: {exc}"
        )
        letters = [
            DeadLetter(why, repr(t).encode(), t.source, t.exchange, t.symbol, t.received_at_us) for t in rows
        ]
        letters += [
            DeadLetter(
                f"database rejected the book row: {exc}",
                repr(r).encode(),
                "live",
                r.exchange,
                r.symbol,
                now_us(),
            )
            for r in book
        ]
        letters += [
            DeadLetter(
                f"database rejected the futures row: {exc}",
                repr(r).encode(),
                r.source,
                r.exchange,
                r.symbol,
                getattr(r, "received_at_us", None) or now_us(),
            )
            for r in futures
        ]
        letters += [d._replace(reason=f"{d.reason} (database rejected it: {exc})", payload=b"") for d in dead]
        writer.write([], letters)
        self.counters.rejected_rows += len(rows)
        self.counters.dead_letters += len(rows)
        log.warning("database rejected %d rows as data (%s): stored as dead letters", len(rows), exc)

    def _account_futures(self, res: Any, rows: Sequence[FuturesRow]) -> None:
        """Counters of a stored futures batch; receive→commit latencies and lag of its aggregates."""
        c = self.counters
        c.agg_trades += res.agg_trades
        c.mark_prices += res.mark_prices
        c.liquidations += res.liquidations
        c.open_interest += res.open_interest
        c.duplicates += res.agg_offered - res.agg_trades
        c.commits += 1
        done = now_us()
        lat = self.latencies_us
        last = None
        for r in rows:
            if type(r) is AggTrade:
                last = r
                if r.received_at_us is not None and r.source != "backfill":
                    lat.append(done - r.received_at_us)
        if last is not None:
            self.lag_ms = (done - last.trade_time_us) / 1000.0

    def _account(self, batch: Sequence[Trade], inserted: int, duplicates: int) -> None:
        self.counters.stored += inserted
        self.counters.duplicates += duplicates
        if batch:
            done = now_us()
            self.lag_ms = (done - batch[-1].trade_time_us) / 1000.0
            lat = self.latencies_us
            for t in batch:
                if t.received_at_us is not None and t.source != "backfill":
                    lat.append(done - t.received_at_us)


class _QueuedColumns:
    """`len()` of a sink's open columns batch (the batch object changes at each writer turn)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __len__(self) -> int:
        return self.sink.queued_columns()


def _answer(riders: Sequence[_Rider], rows: _Rows | None) -> None:
    """The riders' statements committed with the data: hand each its own statements' rows."""
    got, k = rows or [], 0
    for stmts, fut in riders:
        fut.set_result(got[k : k + len(stmts)])
        k += len(stmts)


def _settle(riders: Sequence[_Rider], exc: BaseException) -> None:
    """The riders' statements did not commit: say so to whoever waits (they run on their own)."""
    for _, fut in riders:
        if not fut.done():
            fut.set_exception(DatabaseError(f"not committed with the data: {short_error(exc)}"))


def short_error(exc: BaseException, limit: int = 160) -> str:
    """An error's first line, whitespace folded, cut to `limit` characters."""
    text = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0].split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Fatal(CryptolabError):
    """Raised inside the writer loop to stop the capture with a message (e.g. the journal is full)."""
