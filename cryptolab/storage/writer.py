"""The trade writer: batches of normalized trades into `trades` and `bars_1s`, once.

One call to `TradeWriter.write()` is one transaction:

1. `COPY` (text: exact decimal digits) the batch into a session-private staging table,
   under a per-symbol transaction lock that every writer of `trades` takes (`lock_symbols`);
2. the **append** (the fast path, see `append.py`): when each symbol's ids strictly increase
   in the batch and none of the batch's id range is stored or archived and dropped, the staged
   rows go into `trades` as they are and `bars_1s` is folded from the staged rows themselves —
   no sort, no per-row lookups. An append that meets a duplicate key anyway rolls back to a
   savepoint and takes the merge;
3. otherwise the **merge**: `INSERT … SELECT DISTINCT … ON CONFLICT DO NOTHING RETURNING …`
   into `trades`, so a trade offered twice (in the batch, or again later) is stored once — one truth per
   trade id: a row whose id is already stored is left out when it is the same trade (price,
   qty, side, and the time to the millisecond: a ms time is the µs time cut), and is a
   `TradeConflict` (the batch stores nothing) when it is not; a row whose id lies in a day
   archived and dropped (`archive_days`) is left out and counted (`archived`);
   and exactly the rows that were inserted are folded into `bars_1s` (open/close by trade id,
   so a late backfill of earlier ids corrects the bar's open);
4. `COPY` any dead letters of the batch into `dead_letters`.

Either all of it commits or none of it does.

**Round trips.** When the database has `cryptolab_append_trades` (sql/schema/append_trades.sql),
steps 1–2 of an append are that one server-side call: the lock, the stored-range check, the
insert and the bars fold, with the batch as array parameters (no staging table). A batch of
trades alone, on a connection not inside a transaction, is then **one statement in one round
trip** (its own transaction); with statements to run alongside (`also`: the capture's lease
renewal and heartbeats) one pipelined round trip. A batch the call cannot append (it returns
NULL, or a duplicate key) is merged as above. A batch with book rows (when the database also
has `cryptolab_append_book`, storage/book.py) is one pipelined transaction: the trades' call,
the book's call, the batch's snapshots and gaps and `also`, in one round trip; a duplicate key
rolls it all back and the batch is merged. A batch with futures or dead letters is one
transaction with the call inside. Without the function the writer stages every batch
and asks statement by statement (~8 round trips a commit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import pq

from ..book.model import BookRow
from ..errors import DatabaseError, DataError, TradeConflict
from ..model import DeadLetter, Trade
from .append import AppendRange, append_ranges, trade_arrays
from .book import BookResult, BookWriter
from .columns import TradeColumns

__all__ = [
    "APPEND_FUNCTION",
    "BARS_FOLD",
    "BARS_INSERT",
    "BARS_ON_CONFLICT",
    "COPY_MIN_ROWS",
    "SAME_TRADE",
    "Statement",
    "TRADE_TEXT",
    "TradeWriter",
    "WriteResult",
    "conflict_text",
    "dead_letter_text",
    "lock_symbols",
]

MAX_PAYLOAD_CHARS = 65_536
_US_PER_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)

_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS _cryptolab_stage (
    exchange text, symbol text, trade_id bigint, price numeric, qty numeric,
    is_buyer_maker boolean, trade_time_us bigint, event_time_us bigint,
    received_at_us bigint, source text
) ON COMMIT DELETE ROWS
"""

# Text COPY: a Decimal goes as its exact digits (str) and PostgreSQL's numeric input parses
# them exactly, scale included. psycopg's binary numeric dumper costs about 3× as much CPU per
# row in this process, and this process's CPU is what bounds capture throughput.
_STAGE_COPY = (
    "COPY _cryptolab_stage (exchange, symbol, trade_id, price, qty, is_buyer_maker,"
    " trade_time_us, event_time_us, received_at_us, source) FROM STDIN"
)
_STAGE_TYPES = ["text", "text", "int8", "numeric", "numeric", "bool", "int8", "int8", "int8", "text"]

# How new 1 s bars fold into `bars_1s`: open/close by trade id, so a late backfill of earlier
# ids corrects the bar's open. The one rule every writer uses (the trade writer here, the
# history loader in cryptolab/history/store.py); BARS_FOLD folds a CTE named `agg`.
BARS_INSERT = """INSERT INTO bars_1s AS b (exchange, symbol, ts, open, high, low, close, volume, quote_volume,
                          taker_buy_volume, taker_buy_quote, trade_count,
                          first_trade_id, last_trade_id, price_sq_volume)"""
BARS_ON_CONFLICT = """ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open  = CASE WHEN EXCLUDED.first_trade_id < b.first_trade_id THEN EXCLUDED.open ELSE b.open END,
    close = CASE WHEN EXCLUDED.last_trade_id > b.last_trade_id THEN EXCLUDED.close ELSE b.close END,
    high  = greatest(b.high, EXCLUDED.high),
    low   = least(b.low, EXCLUDED.low),
    volume           = b.volume + EXCLUDED.volume,
    quote_volume     = b.quote_volume + EXCLUDED.quote_volume,
    taker_buy_volume = b.taker_buy_volume + EXCLUDED.taker_buy_volume,
    taker_buy_quote  = b.taker_buy_quote + EXCLUDED.taker_buy_quote,
    trade_count      = b.trade_count + EXCLUDED.trade_count,
    first_trade_id   = least(b.first_trade_id, EXCLUDED.first_trade_id),
    last_trade_id    = greatest(b.last_trade_id, EXCLUDED.last_trade_id),
    price_sq_volume  = b.price_sq_volume + EXCLUDED.price_sq_volume"""
BARS_FOLD = f"""
{BARS_INSERT}
SELECT * FROM agg
{BARS_ON_CONFLICT}
RETURNING 1"""

# One truth per trade id (the rule the history loader uses too): `o` (a stored row) and `s` (an
# offered one) of the same exchange, symbol and id are the same trade when price, qty and side
# are equal and the times agree to the millisecond — Binance's ms times are its µs times cut,
# so a live capture in ms and a 2025+ dump in µs hold the same trade. Anything else is a conflict.
SAME_TRADE = (
    "({o}.price = {s}.price AND {o}.qty = {s}.qty AND {o}.is_buyer_maker = {s}.is_buyer_maker "
    "AND date_trunc('milliseconds', {o}.trade_time) = date_trunc('milliseconds', {s}.trade_time))"
)


def conflict_text(count: int, symbol: str, trade_id: int, stored: str, offered: str) -> str:
    """The one line that names a conflict: how many ids, the first one, both versions of it."""
    more = f" (and {count - 1:,} more)" if count > 1 else ""
    return (
        f"{symbol} trade id {trade_id}{more} is stored as {stored} but offered as {offered}: "
        "a conflict (one trade id, two different trades)"
    )


# What a stored row and an offered one look like in a conflict message (SQL over a row alias {t}).
TRADE_TEXT = (
    "({t}.qty || ' at ' || {t}.price || CASE WHEN {t}.is_buyer_maker THEN ' (sell)' ELSE ' (buy)' END "
    "|| ', ' || to_char({t}.trade_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))"
)


def _bar_agg(rows: str, trade_time: str) -> str:
    """The 1 s bars of `rows` (a CTE or table with price, qty, side and trade id; `trade_time` the
    expression of a row's time): the one aggregate both the merge and the append fold."""
    return f"""
    SELECT exchange, symbol, date_trunc('second', {trade_time}) AS ts,
           (array_agg(price ORDER BY trade_id))[1]      AS open,
           max(price)                                    AS high,
           min(price)                                    AS low,
           (array_agg(price ORDER BY trade_id DESC))[1] AS close,
           sum(qty)                                      AS volume,
           sum(price * qty)                              AS quote_volume,
           coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0)         AS taker_buy_volume,
           coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0) AS taker_buy_quote,
           count(*)::integer                             AS trade_count,
           min(trade_id)                                 AS first_trade_id,
           max(trade_id)                                 AS last_trade_id,
           sum(qty * price * price)                      AS price_sq_volume
    FROM {rows}
    GROUP BY 1, 2, 3"""


# Times arrive as exact integer microseconds; 'epoch' + n µs is exact in PostgreSQL.
# `old`: the same id already stored, looked up a day either side of the row's time (a few
# partitions, by primary key); `arch`: ids inside the id range of a day archived and dropped.
_MERGE = (
    """
WITH src AS (
    SELECT DISTINCT ON (exchange, symbol, trade_id)
           exchange, symbol, trade_id, price, qty, is_buyer_maker,
           timestamptz 'epoch' + trade_time_us * interval '1 microsecond' AS trade_time,
           timestamptz 'epoch' + event_time_us * interval '1 microsecond' AS event_time,
           timestamptz 'epoch' + received_at_us * interval '1 microsecond' AS received_at,
           source
    FROM _cryptolab_stage
    ORDER BY exchange, symbol, trade_id, source = 'backfill'
), dropped AS (
    SELECT a.exchange, a.symbol, a.first_trade_id, a.last_trade_id FROM archive_days a
    WHERE a.dropped_at IS NOT NULL
      AND a.last_trade_id >= (SELECT min(trade_id) FROM src)
      AND a.first_trade_id <= (SELECT max(trade_id) FROM src)
), arch AS (
    SELECT DISTINCT s.exchange, s.symbol, s.trade_id FROM src s JOIN dropped a
      ON a.exchange = s.exchange AND a.symbol = s.symbol
     AND s.trade_id BETWEEN a.first_trade_id AND a.last_trade_id
), old AS (
    SELECT s.exchange, s.symbol, s.trade_id, s.price, s.qty, s.is_buyer_maker, s.trade_time,
           o.price AS o_price, o.qty AS o_qty, o.is_buyer_maker AS o_m, o.trade_time AS o_time,
           """
    + SAME_TRADE.format(o="o", s="s")
    + """ AS same
    FROM src s CROSS JOIN LATERAL (
        SELECT t.price, t.qty, t.is_buyer_maker, t.trade_time FROM trades t
        WHERE t.exchange = s.exchange AND t.symbol = s.symbol AND t.trade_id = s.trade_id
          AND t.trade_time > s.trade_time - interval '1 day'
          AND t.trade_time < s.trade_time + interval '1 day'
        ORDER BY t.trade_time LIMIT 1) o
), ins AS (
    INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker,
                        trade_time, event_time, received_at, source)
    SELECT exchange, symbol, trade_id, price, qty, is_buyer_maker,
           trade_time, event_time, received_at, source
    FROM src s
    WHERE NOT EXISTS (SELECT 1 FROM old o
                      WHERE o.exchange = s.exchange AND o.symbol = s.symbol AND o.trade_id = s.trade_id)
      AND NOT EXISTS (SELECT 1 FROM arch a
                      WHERE a.exchange = s.exchange AND a.symbol = s.symbol AND a.trade_id = s.trade_id)
    ON CONFLICT DO NOTHING
    RETURNING exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time
), agg AS ("""
    + _bar_agg("ins", "trade_time")
    + """
), bars AS (
"""
    + BARS_FOLD
    + """
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM bars), (SELECT count(*) FROM arch),
       (SELECT count(*) FROM old WHERE NOT same),
       (SELECT array[symbol, trade_id::text, """
    + TRADE_TEXT.format(t="c")
    + """, """
    + TRADE_TEXT.format(t="o")
    + """]
        FROM (SELECT symbol, trade_id, price, qty, is_buyer_maker, trade_time,
                     o_price, o_qty, o_m, o_time FROM old WHERE NOT same ORDER BY symbol, trade_id LIMIT 1) o,
             LATERAL (SELECT o.o_price AS price, o.o_qty AS qty, o.o_m AS is_buyer_maker,
                             o.o_time AS trade_time) c)
"""
)

# The append: staged rows go in as they are (ids checked above what is stored), bars are
# folded from the staged rows. One statement: both data-modifying CTEs always run.
_APPEND = (
    """
WITH ins AS (
    INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker,
                        trade_time, event_time, received_at, source)
    SELECT exchange, symbol, trade_id, price, qty, is_buyer_maker,
           timestamptz 'epoch' + trade_time_us * interval '1 microsecond',
           timestamptz 'epoch' + event_time_us * interval '1 microsecond',
           timestamptz 'epoch' + received_at_us * interval '1 microsecond',
           source
    FROM _cryptolab_stage
), agg AS ("""
    + _bar_agg("_cryptolab_stage", "timestamptz 'epoch' + trade_time_us * interval '1 microsecond'")
    + """
), bars AS (
"""
    + BARS_FOLD
    + """
)
SELECT count(*) FROM bars
"""
)

# Is any id of the batch's range already stored, or inside a day archived and dropped? Stored:
# partitions from a day before the range's first trade on (ids grow with time; a day of margin
# covers clocks and the ms/µs cut, as the merge's same-trade lookup does).
_STORED_IN_RANGE = (
    "SELECT EXISTS (SELECT 1 FROM trades WHERE exchange = %s AND symbol = %s AND trade_id BETWEEN %s AND %s"
    " AND trade_time >= timestamptz 'epoch' + %s * interval '1 microsecond' - interval '1 day')"
    " OR EXISTS (SELECT 1 FROM archive_days WHERE dropped_at IS NOT NULL AND exchange = %s AND symbol = %s"
    " AND last_trade_id >= %s AND first_trade_id <= %s)"
)

# Every writer of `trades` takes this lock per symbol (sorted: no deadlock) for its
# transaction, so "nothing stored in this id range" stays true until the append commits.
_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('cryptolab.trades/' || k, 0)) "
    "FROM unnest(%s::text[]) AS k ORDER BY k"
)


def lock_symbols(conn: psycopg.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Take the per-symbol write lock of `trades` for the current transaction."""
    names = sorted({f"{exchange}/{symbol}" for exchange, symbol in keys})
    if names:
        conn.execute(_LOCK, (names,))


# The server-side append (sql/schema/append_trades.sql): NULL when the batch must be merged.
_APPEND_CALL = (
    "SELECT cryptolab_append_trades(%s::text[], %s::text[], %s::int8[], %s::numeric[], %s::numeric[],"
    " %s::bool[], %s::int8[], %s::int8[], %s::int8[], %s::text[])"
)
APPEND_FUNCTION = (
    "cryptolab_append_trades(text[], text[], bigint[], numeric[], numeric[], boolean[], bigint[], bigint[],"
    " bigint[], text[])"
)
COPY_MIN_ROWS = 1_000
"""A batch of at least this many live trades goes by binary COPY (`trade_copy`; else the one-call
append): the COPY costs ~5 more round trips a commit (~0.4 ms of CPU in all) and saves PostgreSQL
~1.5 µs a row. `trade_copy` (numpy) is imported on the first such batch: a capture at a real pace
never makes one and does not pay for numpy (its import, its memory, its BLAS thread)."""
# around the binary COPY of a large batch (trade_copy.py): the lock and check before, the fold after
_APPENDABLE_CALL = (
    "SELECT cryptolab_trades_appendable(%s::text[], %s::text[], %s::int8[], %s::int8[], %s::int8[])"
)
_FOLD_CALL = (
    "SELECT cryptolab_fold_trades(%s::text[], %s::text[], %s::int8[], %s::int8[], %s::int8[], %s::int8[])"
)
_COPY_FUNCTIONS = (
    "cryptolab_trades_appendable(text[], text[], bigint[], bigint[], bigint[])",
    "cryptolab_fold_trades(text[], text[], bigint[], bigint[], bigint[], bigint[])",
)

Statement = tuple[str, Sequence[object]]
"""One SQL statement and its parameters, to run in a batch's transaction (`write(…, also=…)`)."""

_DEAD_COPY = (
    "COPY dead_letters (received_at, source, exchange, symbol, reason, payload, payload_bytes)"
    " FROM STDIN (FORMAT BINARY)"
)
_DEAD_TYPES = ["timestamptz", "text", "text", "text", "text", "text", "int4"]


@dataclass(frozen=True)
class WriteResult:
    """What one `write()` stored."""

    offered: int
    inserted: int
    bars_touched: int
    dead_letters: int
    archived: int = 0
    """Trades left out because their ids live in the archive (a day archived and dropped)."""
    book: BookResult | None = None
    """What the batch's book rows (diffs, quotes, snapshots, gaps) stored, when it had any."""
    futures: Any = None
    """What the batch's USD-M futures rows stored (`storage.futures.FuturesResult`), when it had any."""
    also: list[list[tuple[Any, ...]]] | None = None
    """The rows each of `write(…, also=…)`'s statements returned ([] for one that returns none),
    committed with the batch; None when there were no such statements."""

    @property
    def duplicates(self) -> int:
        """Trades offered that were already stored (or repeated in the batch, or archived)."""
        return self.offered - self.inserted


def dead_letter_text(payload: bytes | str) -> str:
    """The raw payload as storable text: undecodable bytes escaped, NULs escaped, capped."""
    text = payload.decode("utf-8", "backslashreplace") if isinstance(payload, (bytes, bytearray)) else payload
    text = text.replace("\x00", "\\x00")
    if len(text) > MAX_PAYLOAD_CHARS:
        text = text[:MAX_PAYLOAD_CHARS] + f"…[truncated, {len(text)} chars in all]"
    return text


class TradeWriter:
    """Writes trade batches on one connection (not shared between threads)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._days: set[int] = set()
        self._ready = False
        self.appended = 0
        """Batches stored by the append fast path."""
        self.merged = 0
        """Batches stored by the merge (staging, dedupe)."""
        self.server_append = False
        """Whether the database has `cryptolab_append_trades` (the one-call append)."""
        self.server_copy = False
        """Whether it has the functions around the binary COPY of a large batch (`trade_copy`)."""
        self.copied = 0
        """Batches stored by binary COPY (counted in `appended` too)."""
        self.book = BookWriter(conn)
        """The book's rows go in the same transaction as the trades (`write(…, book=…)`)."""

    def _prepare(self) -> None:
        if self._ready:
            return
        with self.conn.transaction():
            self.conn.execute(_STAGE_DDL)
            rows = self.conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'trades'::regclass"
            ).fetchall()
            fn = self.conn.execute(
                "SELECT to_regprocedure(%s) IS NOT NULL, to_regprocedure(%s) IS NOT NULL"
                " AND to_regprocedure(%s) IS NOT NULL",
                (APPEND_FUNCTION, *_COPY_FUNCTIONS),
            ).fetchone()
        self.server_append = bool(fn and fn[0])
        self.server_copy = bool(fn and fn[1])
        for (name,) in rows:
            if name.startswith("trades_") and name[7:].isdigit():
                d = date(int(name[7:11]), int(name[11:13]), int(name[13:15]))
                self._days.add((d - _EPOCH_DAY).days)
        self._ready = True

    def _ensure_days(self, trades: Sequence[Trade]) -> None:
        self._ensure_day_set({t.trade_time_us // _US_PER_DAY for t in trades})

    def _ensure_day_set(self, wanted: set[int]) -> None:
        days = wanted - self._days
        if not days:
            return
        with self.conn.transaction():
            for d in sorted(days):
                day = _EPOCH_DAY + timedelta(days=d)
                self.conn.execute("SELECT cryptolab_ensure_partition(%s)", (day,))
        self._days |= days

    def write(
        self,
        trades: Sequence[Trade],
        dead_letters: Iterable[DeadLetter] = (),
        book: Sequence[BookRow] = (),
        futures: Sequence[Any] = (),
        also: Sequence[Statement] = (),
    ) -> WriteResult:
        """Store a batch (trades, dead letters, book rows) in one transaction; return what was new.

        `also`: statements to commit in the same transaction (their rows in `WriteResult.also`).
        Raises `DataError` when the database rejects the rows themselves (split the batch
        to find them; `TradeConflict` when a row contradicts the stored trade of its id) and
        `DatabaseError` when it cannot be used (an outage: retry later).
        """
        dead = list(dead_letters)
        try:
            self._prepare()
            if trades:
                self._ensure_days(trades)
            if book:
                self.book.prepare(book)
            nested = self.conn.info.transaction_status != pq.TransactionStatus.IDLE
            merge = False
            if book and not (dead or futures or nested) and self._pipelines(trades):
                piped = self._write_pipelined(trades, book, also)
                if piped is not None:
                    return piped
                merge = True  # a duplicate key rolled it all back: merge (below)
            elif self.server_append and trades and not (dead or book or futures or nested):
                done = self._append_alone(trades, also)
                if done is not None and done.inserted == len(trades):
                    return done
                merge = True  # the call stored nothing of the trades: merge them
                if done is not None:  # ... but `also` committed with it
                    return self._with_also(self._write(trades, [], (), (), (), nested, merge), done.also)
            try:
                return self._write(trades, dead, book, futures, also, nested, merge)
            except psycopg.errors.UniqueViolation:
                if nested or merge or not self.server_append:
                    raise
                self.book.forget()  # the whole transaction rolled back: again, merging
                return self._write(trades, dead, book, futures, also, nested, True)
        except TradeConflict as exc:
            self.book.forget()
            raise TradeConflict(f"{exc}; nothing of this batch of {len(trades)} trades was stored") from None
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # the rows themselves are wrong (a value out of range, a constraint): not an outage
            self.book.forget()
            raise DataError(
                f"the database rejected a batch of {len(trades)} trades and {len(book)} book rows: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
        except psycopg.Error as exc:
            self.book.forget()
            self._ready = self._ready and not self.conn.closed
            raise DatabaseError(
                f"could not store {len(trades)} trades: {str(exc).strip().splitlines()[0]}"
            ) from exc

    @staticmethod
    def _with_also(res: WriteResult, also: list[list[tuple[Any, ...]]] | None) -> WriteResult:
        r = res
        return WriteResult(
            r.offered, r.inserted, r.bars_touched, r.dead_letters, r.archived, r.book, r.futures, also
        )

    def _write(
        self,
        trades: Sequence[Trade],
        dead: Sequence[DeadLetter],
        book: Sequence[BookRow],
        futures: Sequence[Any],
        also: Sequence[Statement],
        nested: bool,
        merge: bool,
    ) -> WriteResult:
        """The batch in one transaction (a savepoint when the caller's transaction is open)."""
        booked = fut = rows = None
        with self.conn.transaction():
            inserted = bars = archived = 0
            if trades:
                inserted, bars, archived = self._store(trades, nested=nested, merge=merge)
            if book:
                booked = self.book.store(book)
            if futures:
                from .futures import write_futures

                fut = write_futures(self.conn, futures)
            if dead:
                self._write_dead(dead)
            if also:
                rows = self._run_also(also)
        return WriteResult(len(trades), inserted, bars, len(dead), archived, booked, fut, rows)

    def _run_also(self, also: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        out = []
        for sql, params in also:
            cur = self.conn.execute(sql, params)
            out.append(cur.fetchall() if cur.description is not None else [])
        return out

    def _pipelines(self, trades: Sequence[Trade]) -> bool:
        """Can a batch with book rows go as one pipelined transaction (both one-call appends)?"""
        return self.book.server_append and (
            not trades or (self.server_append and append_ranges(trades) is not None)
        )

    def _write_pipelined(
        self, trades: Sequence[Trade], book: Sequence[BookRow], also: Sequence[Statement]
    ) -> WriteResult | None:
        """Trades, book rows and `also` as one transaction in one round trip: the trades' one-call
        append, the book's (`BookWriter.queue`), the statements, sent together in pipeline mode.
        When the trades' call returns NULL (stored or archived ids in range) the rest committed
        and the trades are merged in a transaction of their own; None when a duplicate key rolled
        the whole transaction back (nothing committed: the caller merges it all)."""
        conn = self.conn
        tcur = None
        prev = conn.autocommit
        # no BEGIN/COMMIT of psycopg's (each waits for the server): in autocommit every statement
        # up to the pipeline's one Sync runs in one implicit transaction, committed at the Sync,
        # all rolled back when one fails
        conn.autocommit = True
        try:
            with conn.pipeline():
                if trades:
                    tcur = conn.execute(_APPEND_CALL, trade_arrays(trades))
                booked = self.book.queue(book)
                curs = [conn.execute(sql, p) for sql, p in also]
        except psycopg.errors.UniqueViolation:
            self.book.forget()
            return None
        finally:
            if conn.info.transaction_status == pq.TransactionStatus.IDLE:  # (else it is broken)
                conn.autocommit = prev
        rows = [c.fetchall() if c.description is not None else [] for c in curs] if also else None
        got = booked()
        row = tcur.fetchone() if tcur is not None else None
        if tcur is not None and (row is None or row[0] is None):
            merged = self._write(trades, [], (), (), (), False, True)
            return dataclasses.replace(merged, book=got, also=rows)
        if tcur is not None:
            self.appended += 1
        bars = int(row[0]) if row is not None else 0
        return WriteResult(len(trades), len(trades), bars, 0, book=got, also=rows)

    def _append_alone(self, trades: Sequence[Trade], also: Sequence[Statement]) -> WriteResult | None:
        """A batch of trades alone through the one-call append, as its own transaction: one
        statement in autocommit (one round trip), or with `also` one pipelined transaction.
        Its result has inserted 0 when the call returned NULL (merge the trades; `also` committed),
        None when the database refused the append (a duplicate key: nothing committed)."""
        if append_ranges(trades) is None:
            return None
        return self._append_params(trade_arrays(trades), len(trades), also)

    def _append_params(
        self, params: tuple[str, ...], n: int, also: Sequence[Statement]
    ) -> WriteResult | None:
        """`_append_alone` of a batch of `n` trades given as the call's array literals."""
        conn = self.conn
        try:
            conn.autocommit = True
            try:
                if not also:
                    row = conn.execute(_APPEND_CALL, params).fetchone()
                    rows = None
                else:  # one implicit transaction up to the pipeline's one Sync (no BEGIN, no COMMIT)
                    with conn.pipeline():
                        cur = conn.execute(_APPEND_CALL, params)
                        curs = [conn.execute(sql, p) for sql, p in also]
                    row = cur.fetchone()
                    rows = [c.fetchall() if c.description is not None else [] for c in curs]
            finally:
                if conn.info.transaction_status == pq.TransactionStatus.IDLE:  # (else it is broken)
                    conn.autocommit = False
        except psycopg.errors.UniqueViolation:
            return None
        if row is None or row[0] is None:
            return WriteResult(n, 0, 0, 0, also=rows)
        self.appended += 1
        return WriteResult(n, n, int(row[0]), 0, also=rows)

    def _append_copy(self, cols: TradeColumns, buf: bytes, also: Sequence[Statement]) -> WriteResult | None:
        """A large batch of live trades (ids strictly increasing per symbol) appended by binary
        COPY (`trade_copy`), as one transaction with `also`: the per-symbol locks and the
        stored-range check, the COPY, the bars folded from the rows just stored, the statements.
        None when the check found stored or archived ids in range or the COPY met a duplicate key
        (nothing committed: the caller merges)."""
        from .trade_copy import TRADES_COPY, fold_ranges  # (imported already: see COPY_MIN_ROWS)

        conn = self.conn
        ex, sym, lo, hi, t0, t1 = fold_ranges(cols)
        try:
            with conn.transaction():
                ok = conn.execute(_APPENDABLE_CALL, (ex, sym, lo, hi, t0)).fetchone()
                if not (ok and ok[0]):
                    raise psycopg.Rollback()  # leaves the block, rolled back: merge
                with conn.cursor() as cur, cur.copy(TRADES_COPY) as copy:
                    copy.write(buf)
                row = conn.execute(_FOLD_CALL, (ex, sym, lo, hi, t0, t1)).fetchone()
                rows = self._run_also(also) if also else None
                self.appended += 1
                self.copied += 1
                return WriteResult(len(cols), len(cols), int(row[0]) if row else 0, 0, also=rows)
        except psycopg.errors.UniqueViolation:
            pass
        return None

    def write_columns(self, cols: TradeColumns, also: Sequence[Statement] = ()) -> WriteResult:
        """A batch of live trades kept as columns (`storage.columns`), as `write(cols.rows(),
        also=also)` stores it: the one-call append straight from the columns when the database has
        it and the ids strictly increase per symbol, else (and when the call meets stored or
        archived ids) the same rows through `write`. Raises as `write` does."""
        done = None
        if cols.ranges() is not None:
            try:
                self._prepare()
                if self.server_append and self.conn.info.transaction_status == pq.TransactionStatus.IDLE:
                    self._ensure_day_set(cols.days())
                    buf = None
                    if self.server_copy and len(cols) >= COPY_MIN_ROWS:
                        from .trade_copy import copy_buffer  # numpy, only now: see COPY_MIN_ROWS

                        buf = copy_buffer(cols)
                    if buf is not None:  # (None: a small batch, or one the COPY cannot carry exactly)
                        done = self._append_copy(cols, buf, also)
                    else:
                        done = self._append_params(cols.arrays(), len(cols), also)
            except (psycopg.DataError, psycopg.IntegrityError):
                done = None  # the rows themselves: `write` finds which and says so
            except psycopg.Error as exc:
                self._ready = self._ready and not self.conn.closed
                raise DatabaseError(
                    f"could not store {len(cols)} trades: {str(exc).strip().splitlines()[0]}"
                ) from exc
            if done is not None and done.inserted == len(cols):
                return done
        rows = cols.rows()
        if done is not None:  # the call stored none of them; `also` committed with it
            return self._with_also(self.write(rows), done.also)
        return self.write(rows, also=also)

    def _store(self, trades: Sequence[Trade], *, nested: bool, merge: bool) -> tuple[int, int, int]:
        """Append the batch or merge it; (inserted, bars touched, archived)."""
        ranges = None if merge else append_ranges(trades)
        if ranges is not None and self.server_append:
            # one call: lock, check, insert, fold. A duplicate key aborts the transaction; when
            # it is the caller's, only a savepoint's worth (else `write` rolls back and merges)
            if nested:
                try:
                    with self.conn.transaction():
                        row = self.conn.execute(_APPEND_CALL, trade_arrays(trades)).fetchone()
                except psycopg.errors.UniqueViolation:
                    row = None
            else:
                row = self.conn.execute(_APPEND_CALL, trade_arrays(trades)).fetchone()
            if row is not None and row[0] is not None:
                self.appended += 1
                return len(trades), int(row[0]), 0
            ranges = None  # stored or archived ids in range: merge
        lock_symbols(self.conn, {(t.exchange, t.symbol) for t in trades})
        with self.conn.cursor() as cur:
            with cur.copy(_STAGE_COPY) as copy:
                copy.set_types(_STAGE_TYPES)
                for t in trades:
                    copy.write_row(t)
            if ranges is not None and not self._stored_in(cur, ranges):
                try:
                    with self.conn.transaction():
                        row = cur.execute(_APPEND).fetchone()
                    assert row is not None
                    self.appended += 1
                    return len(trades), int(row[0]), 0
                except psycopg.errors.UniqueViolation:
                    pass  # a writer that does not lock stored some of them after all: the merge sorts it out
            row = cur.execute(_MERGE).fetchone()
            assert row is not None
            self.merged += 1
            if row[3]:
                sym, tid, stored, offered = row[4]
                raise TradeConflict(conflict_text(int(row[3]), sym, int(tid), stored, offered))
            return int(row[0]), int(row[1]), int(row[2])

    @staticmethod
    def _stored_in(cur: psycopg.Cursor[tuple[object, ...]], ranges: Sequence[AppendRange]) -> bool:
        """Does the database hold (or has it archived and dropped) any id of these ranges?"""
        for r in ranges:
            row = cur.execute(
                _STORED_IN_RANGE,
                (r.exchange, r.symbol, r.lo, r.hi, r.first_time_us, r.exchange, r.symbol, r.lo, r.hi),
            ).fetchone()
            if row is not None and row[0]:
                return True
        return False

    def clear_stage(self) -> None:
        """Empty the session's staging table (for a caller that writes inside its own transaction,
        where ON COMMIT DELETE ROWS does not run between batches)."""
        if self._ready:
            self.conn.execute("TRUNCATE _cryptolab_stage")

    def _write_dead(self, dead: Sequence[DeadLetter]) -> None:
        from ..model import now_us, us_to_datetime

        with self.conn.cursor() as cur, cur.copy(_DEAD_COPY) as copy:
            copy.set_types(_DEAD_TYPES)
            for d in dead:
                raw = d.payload if isinstance(d.payload, (bytes, bytearray)) else str(d.payload).encode()
                copy.write_row(
                    (
                        us_to_datetime(d.received_at_us or now_us()),
                        d.source,
                        d.exchange,
                        d.symbol,
                        d.reason,
                        dead_letter_text(raw),
                        len(raw),
                    )
                )
