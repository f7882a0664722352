"""The book writer: depth diffs, snapshots, quotes and book gaps into PostgreSQL, once each.

`BookWriter.store(rows)` runs inside the caller's transaction (the sink stores a turn's trades
and book rows in one), and for each kind of row decides per batch, like the trade writer:

* **append** (the fast path): a symbol's update ids in the batch strictly increase and lie above
  the highest one this writer knows stored → one text `COPY` straight into the table (its day
  partition); an append that meets a stored key anyway (another writer) rolls back to a
  savepoint and takes the merge;
* **merge**: `COPY` into a session-private staging table, then `INSERT … SELECT DISTINCT ON …
  WHERE NOT EXISTS … ON CONFLICT DO NOTHING` — a diff (exchange, symbol, last update id) or a
  quote (exchange, symbol, update id) offered twice is stored once, whatever path brought it.

Levels are written as the exchange's decimal strings in array literals (`{61837.63,0.5}`):
exact, and no conversion in this process. Snapshots and gaps are few: plain inserts (a gap is
upserted: seen, then healed). Tops (`BookTop`, the best bid/ask after each diff a synced book
applied) go to `book_tops` the way diffs go to `book_diffs`: appended, or merged once.

**Round trips.** When the database has `cryptolab_append_book` (sql/schema/append_book.sql),
a batch's diffs, quotes and tops are that one server-side call instead (`book_arrays`: each
table's columns as array literals), with this writer's decision per table (the same as above:
append, or merge, which the call runs under a per-symbol lock; what is stored is learned in
`prepare`, once per symbol). `queue()` sends the call and the batch's snapshots and gaps without
waiting for them, so `TradeWriter.write` puts trades, book rows and the riders' statements in
one pipelined implicit transaction: one round trip a commit instead of 10–15.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from ..book.model import BookGap, BookRow, BookSnapshot, BookTop, DepthDiff, Level, Quote
from ..model import us_to_datetime
from .append import _plain, _quoted

__all__ = ["APPEND_BOOK_FUNCTION", "BookWriter", "BookResult", "book_arrays", "last_diff_ids"]

_US_PER_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)

_DIFF_COLS = ("exchange, symbol, first_update_id, last_update_id, prev_update_id, event_time, received_at,"
              " bid_price, bid_qty, ask_price, ask_qty, source")
_QUOTE_COLS = (
    "exchange, symbol, update_id, received_at, event_time, bid_price, bid_qty, ask_price, ask_qty, source"
)
_TOP_COLS = "exchange, symbol, update_id, event_time, bid_price, bid_qty, ask_price, ask_qty, source"
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _cryptolab_book_stage (LIKE book_diffs INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS _cryptolab_quote_stage (LIKE quotes INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS _cryptolab_top_stage (LIKE book_tops INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
_MERGE_TOPS = f"""
INSERT INTO book_tops ({_TOP_COLS})
SELECT DISTINCT ON (exchange, symbol, update_id) {_TOP_COLS} FROM _cryptolab_top_stage s
WHERE NOT EXISTS (SELECT 1 FROM book_tops t WHERE t.exchange = s.exchange AND t.symbol = s.symbol
                  AND t.update_id = s.update_id)
ORDER BY exchange, symbol, update_id
ON CONFLICT DO NOTHING"""
_MERGE_DIFFS = f"""
INSERT INTO book_diffs ({_DIFF_COLS})
SELECT DISTINCT ON (exchange, symbol, last_update_id) {_DIFF_COLS} FROM _cryptolab_book_stage s
WHERE NOT EXISTS (SELECT 1 FROM book_diffs d WHERE d.exchange = s.exchange AND d.symbol = s.symbol
                  AND d.last_update_id = s.last_update_id)
ORDER BY exchange, symbol, last_update_id
ON CONFLICT DO NOTHING"""
_MERGE_QUOTES = f"""
INSERT INTO quotes ({_QUOTE_COLS})
SELECT DISTINCT ON (exchange, symbol, update_id) {_QUOTE_COLS} FROM _cryptolab_quote_stage s
WHERE NOT EXISTS (SELECT 1 FROM quotes q WHERE q.exchange = s.exchange AND q.symbol = s.symbol
                  AND q.update_id = s.update_id
                  AND q.received_at BETWEEN s.received_at - interval '1 day'
                                        AND s.received_at + interval '1 day')
ORDER BY exchange, symbol, update_id, received_at
ON CONFLICT DO NOTHING"""
# The server-side append (sql/schema/append_book.sql): {diffs, quotes, tops, appended, merged}.
_APPEND_BOOK_CALL = (
    "SELECT cryptolab_append_book("
    "%s::text[], %s::text[], %s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::int8[],"
    " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::text[], %s::text[], %s::int8[], %s::int8[], %s::int8[],"
    " %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::text[],"
    " %s::text[], %s::text[], %s::int8[], %s::int8[],"
    " %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::text[], %s::bool[])"
)
APPEND_BOOK_FUNCTION = (
    "cryptolab_append_book(text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[],"
    " text[], text[], text[], text[], text[],"
    " text[], text[], bigint[], bigint[], bigint[], numeric[], numeric[], numeric[], numeric[], text[],"
    " text[], text[], bigint[], bigint[], numeric[], numeric[], numeric[], numeric[], text[], boolean[])"
)
_MAX_DIFF = "SELECT max(last_update_id) FROM book_diffs WHERE exchange = %s AND symbol = %s"
_MAX_QUOTE = "SELECT max(update_id) FROM quotes WHERE exchange = %s AND symbol = %s"
_MAX_TOP = "SELECT max(update_id) FROM book_tops WHERE exchange = %s AND symbol = %s"
_MAX = {"book_diffs": _MAX_DIFF, "quotes": _MAX_QUOTE, "book_tops": _MAX_TOP}
_SNAPSHOT = """
INSERT INTO book_snapshots (exchange, symbol, last_update_id, received_at, event_time, bid_price, bid_qty,
                            ask_price, ask_qty, source)
VALUES (%s, %s, %s, %s, %s, %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s)
ON CONFLICT DO NOTHING"""
_GAP = """
INSERT INTO book_gaps AS g (exchange, symbol, reason, after_update_id, before_update_id, detected_at,
                            snapshot_update_id, healed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, reason, after_update_id) DO UPDATE SET
    before_update_id   = coalesce(g.before_update_id, EXCLUDED.before_update_id),
    detected_at        = least(g.detected_at, EXCLUDED.detected_at),
    snapshot_update_id = coalesce(g.snapshot_update_id, EXCLUDED.snapshot_update_id),
    healed_at          = coalesce(g.healed_at, EXCLUDED.healed_at)"""


@dataclass
class BookResult:
    """What one `store()` wrote (diffs and quotes: new rows; the rest: offered)."""

    diffs: int = 0
    diffs_offered: int = 0
    quotes: int = 0
    quotes_offered: int = 0
    snapshots: int = 0
    gaps: int = 0
    tops: int = 0
    level_updates: int = 0
    appended: int = 0
    merged: int = 0


def _array(levels: Sequence[Level], i: int) -> str:
    return "{" + ",".join([lv[i] for lv in levels]) + "}"


def _ts(us: int | None) -> str:
    return "\\N" if us is None else us_to_datetime(us).isoformat()


def _opt(v: int | None) -> str:
    return "\\N" if v is None else str(v)


def _diff_text(rows: Sequence[DepthDiff]) -> bytes:
    out = io.StringIO()
    w = out.write
    for d in rows:
        b, a = d.bids, d.asks
        w(
            f"{d.exchange}\t{d.symbol}\t{d.first_id}\t{d.last_id}\t{_opt(d.prev_id)}\t"
            f"{_ts(d.event_time_us)}\t{_ts(d.received_at_us)}\t"
            f"{_array(b, 0)}\t{_array(b, 1)}\t{_array(a, 0)}\t{_array(a, 1)}\t{d.source}\n"
        )
    return out.getvalue().encode()


def _quote_text(rows: Sequence[Quote]) -> bytes:
    return "".join(
        f"{q.exchange}\t{q.symbol}\t{q.update_id}\t{_ts(q.received_at_us)}\t{_ts(q.event_time_us)}\t"
        f"{q.bid_price}\t{q.bid_qty}\t{q.ask_price}\t{q.ask_qty}\t{q.source}\n"
        for q in rows
    ).encode()


def _top_text(rows: Sequence[BookTop]) -> bytes:
    n = "\\N"
    return "".join(
        f"{t.exchange}\t{t.symbol}\t{t.update_id}\t{_ts(t.event_time_us)}\t{t.bid_price or n}\t"
        f"{t.bid_qty or n}\t{t.ask_price or n}\t{t.ask_qty or n}\t{t.source}\n"
        for t in rows
    ).encode()


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[tuple[object, ...]]:
    return list(zip(*rows)) if rows else [() for _ in range(width)]


def book_arrays(
    diffs: Sequence[DepthDiff], quotes: Sequence[Quote], tops: Sequence[BookTop]
) -> tuple[str, ...]:
    """The parameters of `cryptolab_append_book`: each table's columns as array literals (a diff's
    levels as one array literal per row, prices and quantities as the exchange's digits, times in
    µs, empty sides and absent values as NULL), in the function's order."""
    d = _columns(
        [
            (
                x.exchange,
                x.symbol,
                x.first_id,
                x.last_id,
                x.prev_id,
                x.event_time_us,
                x.received_at_us,
                _array(x.bids, 0),
                _array(x.bids, 1),
                _array(x.asks, 0),
                _array(x.asks, 1),
                x.source,
            )
            for x in diffs
        ],
        12,
    )
    q = _columns(
        [
            (
                x.exchange,
                x.symbol,
                x.update_id,
                x.received_at_us,
                x.event_time_us,
                x.bid_price,
                x.bid_qty,
                x.ask_price,
                x.ask_qty,
                x.source,
            )
            for x in quotes
        ],
        10,
    )
    t = _columns(
        [
            (
                x.exchange,
                x.symbol,
                x.update_id,
                x.event_time_us,
                x.bid_price or None,
                x.bid_qty or None,
                x.ask_price or None,
                x.ask_qty or None,
                x.source,
            )
            for x in tops
        ],
        9,
    )
    text = {0, 1, 7, 8, 9, 10, 11, 12, 13, 21, 22, 23, 30}  # quoted (text) columns, by position
    cols = [*d, *q, *t]
    return tuple(
        _quoted(c) if i in text else _plain(c)  # type: ignore[arg-type]
        for i, c in enumerate(cols)
    )


def _snapshot_params(s: BookSnapshot) -> tuple[object, ...]:
    return (
        s.exchange,
        s.symbol,
        s.last_update_id,
        us_to_datetime(s.received_at_us),
        None if s.event_time_us is None else us_to_datetime(s.event_time_us),
        _array(s.bids, 0),
        _array(s.bids, 1),
        _array(s.asks, 0),
        _array(s.asks, 1),
        s.source,
    )


def _gap_params(g: BookGap) -> tuple[object, ...]:
    return (
        g.exchange,
        g.symbol,
        g.reason,
        g.after_id,
        g.before_id,
        us_to_datetime(g.detected_at_us),
        g.snapshot_id,
        None if g.healed_at_us is None else us_to_datetime(g.healed_at_us),
    )


def _increasing(ids: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], tuple[int, int]] | None:
    """Per (exchange, symbol): (lowest, highest) id when ids strictly increase, else None."""
    span: dict[tuple[str, str], tuple[int, int]] = {}
    for ex, sym, i in ids:
        key = (ex, sym)
        got = span.get(key)
        if got is None:
            span[key] = (i, i)
        elif i <= got[1]:
            return None
        else:
            span[key] = (got[0], i)
    return span


class BookWriter:
    """Writes book rows on one connection (not shared between threads)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._days: set[tuple[str, int]] = set()
        self._stored: dict[tuple[str, str, str], int] = {}
        self._ready = False
        self.server_append = False
        """Whether the database has `cryptolab_append_book` (diffs, quotes and tops in one call)."""

    def prepare(self, rows: Sequence[BookRow]) -> None:
        """Make the day partitions the rows need, each committed at once (call before the
        transaction that stores them: a rolled-back transaction must not take a partition along)."""
        if not self._ready:
            with (
                self.conn.transaction()
            ):  # (a connection not in autocommit must not be left in a transaction)
                self.conn.execute(_STAGE_DDL)
                fn = self.conn.execute(
                    "SELECT to_regprocedure(%s) IS NOT NULL", (APPEND_BOOK_FUNCTION,)
                ).fetchone()
            self.server_append = bool(fn and fn[0])
            self._ready = True
        self._ensure_days("book_diffs", (r.event_time_us for r in rows if type(r) is DepthDiff))
        self._ensure_days("quotes", (r.received_at_us for r in rows if type(r) is Quote))
        self._ensure_days("book_tops", (r.event_time_us for r in rows if type(r) is BookTop))
        if self.server_append:  # what is stored, asked once per symbol before any pipeline
            kinds = (("book_diffs", DepthDiff), ("quotes", Quote), ("book_tops", BookTop))
            unknown = {
                (table, r.exchange, r.symbol)
                for table, kind in kinds
                for r in rows
                if type(r) is kind
            } - self._stored.keys()
            if unknown:
                with self.conn.transaction():
                    for table, ex, sym in sorted(unknown):
                        self._stored_max(table, ex, sym)

    def queue(self, rows: Sequence[BookRow]) -> Callable[[], BookResult]:
        """Send a batch's statements through `cryptolab_append_book` (call `prepare` first, and
        only when `server_append`): the one call for its diffs, quotes and tops, then its
        snapshots and gaps, without waiting for their results (in pipeline mode they go with the
        rest of the transaction). Returns what gives the `BookResult` once the results are in.
        A duplicate key (a writer that does not lock) raises unique_violation: merge the batch."""
        diffs = [r for r in rows if type(r) is DepthDiff]
        quotes = [r for r in rows if type(r) is Quote]
        tops = [r for r in rows if type(r) is BookTop]
        spans = (
            self._append_span("book_diffs", [(d.exchange, d.symbol, d.last_id) for d in diffs]),
            self._append_span("quotes", [(q.exchange, q.symbol, q.update_id) for q in quotes]),
            self._append_span("book_tops", [(t.exchange, t.symbol, t.update_id) for t in tops]),
        )
        ids = (
            [(d.exchange, d.symbol, d.last_id) for d in diffs],
            [(q.exchange, q.symbol, q.update_id) for q in quotes],
            [(t.exchange, t.symbol, t.update_id) for t in tops],
        )
        flags = "{" + ",".join("t" if sp is not None or not i else "f" for sp, i in zip(spans, ids)) + "}"
        call = (
            self.conn.execute(_APPEND_BOOK_CALL, (*book_arrays(diffs, quotes, tops), flags))
            if diffs or quotes or tops
            else None
        )
        snaps = [self.conn.execute(_SNAPSHOT, _snapshot_params(r)) for r in rows if type(r) is BookSnapshot]
        gaps = [self.conn.execute(_GAP, _gap_params(r)) for r in rows if type(r) is BookGap]

        def result() -> BookResult:
            res = BookResult(
                diffs_offered=len(diffs),
                quotes_offered=len(quotes),
                level_updates=sum(len(d.bids) + len(d.asks) for d in diffs),
                gaps=len(gaps),
            )
            row = call.fetchone() if call is not None else None
            if row is not None:
                res.diffs, res.quotes, res.tops, res.appended, res.merged = row[0]
            for table, span, got in zip(("book_diffs", "quotes", "book_tops"), spans, ids):
                if span is not None:
                    self._remember(table, span)
                else:
                    self._merged(table, got)
            res.snapshots = sum(c.rowcount for c in snaps)
            return res

        return result

    def store(self, rows: Sequence[BookRow]) -> BookResult:
        """Store a batch of book rows inside the caller's transaction (or its own)."""
        self.prepare(rows)
        if self.server_append:
            try:
                with self.conn.transaction():
                    return self.queue(rows)()
            except psycopg.errors.UniqueViolation:
                pass  # another writer stored some of them: the merge sorts it out
        res = BookResult()
        diffs = [r for r in rows if type(r) is DepthDiff]
        quotes = [r for r in rows if type(r) is Quote]
        snaps = [r for r in rows if type(r) is BookSnapshot]
        gaps = [r for r in rows if type(r) is BookGap]
        tops = [r for r in rows if type(r) is BookTop]
        with self.conn.transaction():
            if diffs:
                res.diffs = self._put(
                    "book_diffs",
                    [(d.exchange, d.symbol, d.last_id) for d in diffs],
                    _diff_text(diffs),
                    _DIFF_COLS,
                    _MERGE_DIFFS,
                    "_cryptolab_book_stage",
                    res,
                )
                res.diffs_offered = len(diffs)
                res.level_updates = sum(len(d.bids) + len(d.asks) for d in diffs)
            if quotes:
                res.quotes = self._put(
                    "quotes",
                    [(q.exchange, q.symbol, q.update_id) for q in quotes],
                    _quote_text(quotes),
                    _QUOTE_COLS,
                    _MERGE_QUOTES,
                    "_cryptolab_quote_stage",
                    res,
                )
                res.quotes_offered = len(quotes)
            if tops:
                res.tops = self._put(
                    "book_tops",
                    [(t.exchange, t.symbol, t.update_id) for t in tops],
                    _top_text(tops),
                    _TOP_COLS,
                    _MERGE_TOPS,
                    "_cryptolab_top_stage",
                    res,
                )
            for s in snaps:
                cur = self.conn.execute(_SNAPSHOT, _snapshot_params(s))
                res.snapshots += cur.rowcount
            for g in gaps:
                self.conn.execute(_GAP, _gap_params(g))
                res.gaps += 1
        return res

    def _put(
        self,
        table: str,
        ids: list[tuple[str, str, int]],
        text: bytes,
        cols: str,
        merge: str,
        stage: str,
        res: BookResult,
    ) -> int:
        """Append when every symbol's ids lie above what is stored, else merge; rows inserted."""
        span = _increasing(ids)
        if span is not None and all(
            lo > self._stored_max(table, ex, sym) for (ex, sym), (lo, _) in span.items()
        ):
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        copy.write(text)
                self._remember(table, span)
                res.appended += 1
                return len(ids)
            except psycopg.errors.UniqueViolation:
                pass  # another writer stored some of them: the merge sorts it out
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                copy.write(text)
            cur.execute(merge)
            inserted = cur.rowcount
            cur.execute(f"TRUNCATE {stage}")
        res.merged += 1
        self._merged(table, ids)
        return inserted

    def _merged(self, table: str, ids: Iterable[tuple[str, str, int]]) -> None:
        for ex, sym, i in ids:
            key = (table, ex, sym)
            if i > self._stored.get(key, -1):
                self._stored[key] = i

    def _append_span(
        self, table: str, ids: list[tuple[str, str, int]]
    ) -> dict[tuple[str, str], tuple[int, int]] | None:
        """The batch's id span per symbol when it may be appended (ids strictly increase per
        symbol and lie above what this writer knows stored), else None (merge)."""
        span = _increasing(ids) if ids else None
        if span is not None and all(
            lo > self._stored_max(table, ex, sym) for (ex, sym), (lo, _) in span.items()
        ):
            return span
        return None

    def _stored_max(self, table: str, exchange: str, symbol: str) -> int:
        key = (table, exchange, symbol)
        got = self._stored.get(key)
        if got is None:
            row = self.conn.execute(_MAX[table], (exchange, symbol)).fetchone()
            got = -1 if row is None or row[0] is None else int(row[0])
            self._stored[key] = got
        return got

    def _remember(self, table: str, span: dict[tuple[str, str], tuple[int, int]]) -> None:
        for (ex, sym), (_, hi) in span.items():
            self._stored[(table, ex, sym)] = hi

    def forget(self) -> None:
        """Forget what this writer believes stored (after a rollback or a reconnect)."""
        self._stored.clear()
        self._days.clear()

    def _ensure_days(self, table: str, times: Iterable[int]) -> None:
        days = {(table, t // _US_PER_DAY) for t in times} - self._days
        if not days:
            return
        with self.conn.transaction():
            for _, d in sorted(days):
                self.conn.execute(
                    "SELECT cryptolab_ensure_day_partition(%s, %s)", (table, _EPOCH_DAY + timedelta(days=d))
                )
        self._days |= days


def last_diff_ids(conn: psycopg.Connection, exchange: str, symbols: Sequence[str]) -> dict[str, int]:
    """Per symbol, the highest update id of its stored diffs (symbols with none are left out)."""
    out: dict[str, int] = {}
    for sym in symbols:
        row = conn.execute(_MAX_DIFF, (exchange, sym)).fetchone()
        if row is not None and row[0] is not None:
            out[sym] = int(row[0])
    return out
