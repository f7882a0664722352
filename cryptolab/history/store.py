"""Storing history: a verified dump file (or a page run of REST rows) into the database, once.

A file is one transaction: its rows, its `bars_1s` and its `history_files` row commit
together, or nothing of it does. Two paths:

* **bulk** (trades): the file's days hold no trade of the symbol yet. The CSV is
  `COPY`ed (text, straight from the zip member) into a session scratch table, then one
  `INSERT … SELECT` moves it into `trades` (no per-row dedupe) and one aggregate over the
  scratch table builds the days' `bars_1s`. The day partitions are locked against
  concurrent writers (SHARE ROW EXCLUSIVE) while this runs, and emptiness is checked
  under that lock, so a live capture of the symbol waits for the commit instead of racing
  it; a duplicate id inside the file itself makes the bulk insert fail and the file is
  redone on the idempotent path.
* **idempotent**: otherwise. Rows whose id is already stored for the symbol as the same
  trade (the writer's `SAME_TRADE`: price, qty, side, and the time to the millisecond — a
  capture in ms and a 2025+ dump in µs hold the same trade) are left out, and
  `ON CONFLICT DO NOTHING` covers the rest; `bars_1s` is folded from exactly the rows
  inserted (the writer's rule: open/close by trade id).

One truth per trade id, on both paths: a file is a **conflict** — refused as a whole with a
`TradeConflict` naming it and its first contradicting id — when any of its ids is stored
(on any day) as a different trade; and ids inside the id range of a day archived and
dropped (`archive_days.dropped_at`) live in the archive: they are left out and counted
(`Loaded.archived`), never stored a second time.

aggTrades go to `agg_trades` (one row per aggregate, first/last trade id), klines to
`klines` (a dump's kline is final: it replaces a kline fetched while still open). USD-M
futures dumps (`DumpFile.market == "usdm"`) load the same way under the store's exchange
(`binance-usdm`); their columns and the futures-only kinds are `history.futures`'.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, cast

import psycopg
from psycopg import errors as pgerr

from ..binance.dumps import time_to_us
from ..errors import DataError, TradeConflict
from ..storage.writer import (
    BARS_FOLD,
    BARS_INSERT,
    BARS_ON_CONFLICT,
    SAME_TRADE,
    TRADE_TEXT,
    conflict_text,
    lock_symbols,
)
from . import futures as fut
from .plan import DumpFile, Kind

__all__ = ["HistoryStore", "Loaded", "COLUMNS", "open_member"]

_EPOCH = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
_CHUNK = 1 << 20

COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
    "aggTrades": (
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
        "is_best_match",
    ),
    "klines": (
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "count",
        "taker_buy_volume",
        "taker_buy_quote_volume",
        "ignore",
    ),
}
"""The columns of each kind of spot dump (no header in the files, in this order)."""

_SCRATCH = {
    # quote_qty is not read (trades.quote_qty is price × qty, computed): kept as text, not parsed
    "trades": "CREATE TEMP TABLE IF NOT EXISTS _hist_trades (id bigint, price numeric, qty numeric, "
    "quote_qty text, t bigint, m boolean, best text)",
    "aggTrades": "CREATE TEMP TABLE IF NOT EXISTS _hist_agg (a bigint, price numeric, qty numeric, f bigint, "
    "l bigint, t bigint, m boolean, best boolean)",
    "klines": "CREATE TEMP TABLE IF NOT EXISTS _hist_klines (open_t bigint, o numeric, h numeric, "
    "lo numeric, c numeric, v numeric, close_t bigint, qv numeric, n bigint, tbv numeric, tbq numeric, "
    "ign text)",
}
WORK_MEM = "256MB"
_TABLE = {"trades": "_hist_trades", "aggTrades": "_hist_agg", "klines": "_hist_klines", **fut.TABLE}


def _us(col: str) -> str:
    """SQL: an epoch time in ms, µs or ns (detected per value, as cryptolab.binance.dumps does) → µs."""
    return (
        f"(CASE WHEN {col} >= 100000000000000000 THEN {col} / 1000 "
        f"WHEN {col} >= 100000000000000 THEN {col} ELSE {col} * 1000 END)"
    )


def _us_py(v: int) -> int:
    return time_to_us(v)


def _ts(col: str) -> str:
    return f"(timestamptz 'epoch' + {_us(col)} * interval '1 microsecond')"


# bars_1s from a set of rows `rows(trade_id, price, qty, is_buyer_maker, trade_time)`, merged
# into what is stored with the writer's rule (open/close by trade id).
_BARS = (
    """
, agg AS (
    SELECT %(ex)s AS exchange, %(sym)s AS symbol, date_trunc('second', trade_time) AS ts,
           (array_agg(price ORDER BY trade_id))[1]      AS open,
           max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY trade_id DESC))[1] AS close,
           sum(qty) AS volume, sum(price * qty) AS quote_volume,
           coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0)         AS taker_buy_volume,
           coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0) AS taker_buy_quote,
           count(*)::integer AS trade_count, min(trade_id) AS first_trade_id, max(trade_id) AS last_trade_id,
           sum(qty * price * price) AS price_sq_volume
    FROM rows GROUP BY 3
), bars AS (
"""
    + BARS_FOLD
    + """
)
"""
)

# The bulk path: two plain statements over the scratch table (no RETURNING to carry
# along). {t} is the file's time expression (its unit decided once per file).
_BULK_INSERT = """
INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, source)
SELECT %(ex)s, %(sym)s, id, price, qty, m, {t}, %(src)s FROM {s}
"""
# bars_1s of the scratch table by one aggregate: open/close are the prices of the second's
# first/last trade id, looked up by id (no per-second sort); the bulk path runs this only
# when the insert proves the ids unique. {s} is the scratch table, {sec} its time in whole
# seconds (integer division: far cheaper than date_trunc over a timestamptz per row).
_BARS_SELECT = """
WITH s AS (
    SELECT id, price, qty, m, price * qty AS pq, {sec} AS sec FROM {s}
), agg AS (
    SELECT timestamptz 'epoch' + sec * interval '1 second' AS ts, min(id) AS fid, max(id) AS lid,
           max(price) AS high, min(price) AS low, sum(qty) AS volume,
           sum(pq) AS quote_volume,
           coalesce(sum(qty) FILTER (WHERE NOT m), 0) AS taker_buy_volume,
           coalesce(sum(pq) FILTER (WHERE NOT m), 0) AS taker_buy_quote,
           count(*)::integer AS trade_count, sum(pq * price) AS price_sq_volume
    FROM s GROUP BY sec
)
SELECT agg.ts, o.price AS open, high, low, c.price AS close, volume, quote_volume, taker_buy_volume,
       taker_buy_quote, trade_count, fid, lid, price_sq_volume
FROM agg JOIN {s} o ON o.id = agg.fid JOIN {s} c ON c.id = agg.lid
"""
_BARS_INSERT = BARS_INSERT + "\nSELECT %(ex)s, %(sym)s, x.* FROM ({select}) x"
_BARS_UPSERT = _BARS_INSERT + "\n" + BARS_ON_CONFLICT


def _time_expr(raw_lo: int, raw_hi: int) -> str:
    """The scratch table's time column as timestamptz: one unit for the file when it has one."""
    for lo, hi, unit in (
        (10**17, 2**63, None),
        (10**14, 10**17, "1 microsecond"),
        (0, 10**14, "1 millisecond"),
    ):
        if lo <= raw_lo and raw_hi < hi:
            return f"(timestamptz 'epoch' + t * interval '{unit}')" if unit else _ts("t")
    return _ts("t")


def _sec_expr(raw_lo: int, raw_hi: int) -> str:
    """The scratch table's time column in whole epoch seconds (an integer)."""
    for lo, hi, div in ((10**17, 2**63, 10**9), (10**14, 10**17, 10**6), (0, 10**14, 10**3)):
        if lo <= raw_lo and raw_hi < hi:
            return f"(t / {div})"
    return f"({_us('t')} / 1000000)"


_IDEMPOTENT_TRADES = f"""
WITH src AS (
    SELECT DISTINCT ON (id) id, price, qty, m, {_ts("t")} AS ts FROM _hist_trades ORDER BY id
), rows AS (
    INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, source)
    SELECT %(ex)s, %(sym)s, id, price, qty, m, ts, %(src)s FROM src
    WHERE NOT EXISTS (
        SELECT 1 FROM trades t
        WHERE t.exchange = %(ex)s AND t.symbol = %(sym)s AND t.trade_id = src.id
          AND t.trade_time >= date_trunc('milliseconds', src.ts)
          AND t.trade_time < date_trunc('milliseconds', src.ts) + interval '1 millisecond')
    ON CONFLICT DO NOTHING
    RETURNING trade_id, price, qty, is_buyer_maker, trade_time
){_BARS}
SELECT (SELECT count(*) FROM rows), (SELECT count(*) FROM bars)
"""

# The scratch rows that contradict a stored trade of the same id (any day): how many, and the
# first as (id, stored, offered). Run before the idempotent insert; a hit refuses the file.
_CONFLICTS = f"""
SELECT count(*) OVER (), s.id, {TRADE_TEXT.format(t="t")}, {TRADE_TEXT.format(t="s")}
FROM (SELECT DISTINCT ON (id) id, price, qty, m AS is_buyer_maker, {_ts("t")} AS trade_time
      FROM _hist_trades ORDER BY id) s
JOIN trades t ON t.exchange = %(ex)s AND t.symbol = %(sym)s AND t.trade_id = s.id
WHERE t.trade_id BETWEEN %(lo)s AND %(hi)s AND NOT {SAME_TRADE.format(o="t", s="s")}
ORDER BY s.id LIMIT 1
"""

# Ids of the scratch table inside the id range of a day archived and dropped: they live in the
# archive and are not stored again.
_ARCHIVED = """
WITH gone AS (
    DELETE FROM _hist_trades h USING archive_days a
    WHERE a.exchange = %(ex)s AND a.symbol = %(sym)s AND a.dropped_at IS NOT NULL
      AND a.last_trade_id >= %(lo)s AND a.first_trade_id <= %(hi)s
      AND h.id BETWEEN a.first_trade_id AND a.last_trade_id
    RETURNING h.id
)
SELECT count(*), count(DISTINCT id) FROM gone
"""

_AGG = f"""
WITH ins AS (
    INSERT INTO agg_trades (exchange, symbol, agg_id, price, qty, first_trade_id, last_trade_id,
                            trade_time, is_buyer_maker, is_best_match, source)
    SELECT DISTINCT ON (a) %(ex)s, %(sym)s, a, price, qty, f, l, {_ts("t")}, m, best, %(src)s
    FROM _hist_agg ORDER BY a
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM ins
"""

_KLINES = f"""
WITH ins AS (
    INSERT INTO klines AS k (exchange, symbol, interval, open_time, close_time, open, high, low, close,
                        volume, quote_volume, trade_count, taker_buy_volume, taker_buy_quote)
    SELECT DISTINCT ON (open_t) %(ex)s, %(sym)s, %(iv)s, {_ts("open_t")}, {_ts("close_t")},
           o, h, lo, c, v, qv, n, tbv, tbq
    FROM _hist_klines ORDER BY open_t
    ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
        close_time = EXCLUDED.close_time, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume,
        trade_count = EXCLUDED.trade_count, taker_buy_volume = EXCLUDED.taker_buy_volume,
        taker_buy_quote = EXCLUDED.taker_buy_quote, fetched_at = clock_timestamp()
    WHERE (k.close_time, k.open, k.high, k.low, k.close, k.volume, k.quote_volume, k.trade_count,
           k.taker_buy_volume, k.taker_buy_quote)
      IS DISTINCT FROM (EXCLUDED.close_time, EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
           EXCLUDED.volume, EXCLUDED.quote_volume, EXCLUDED.trade_count, EXCLUDED.taker_buy_volume,
           EXCLUDED.taker_buy_quote)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM ins
"""


@dataclass
class Loaded:
    """What one file (or one REST run) stored."""

    rows: int
    stored: int
    first_id: int | None
    last_id: int | None
    mode: str
    skipped: bool = False
    archived: int = 0
    """Rows left out because their ids live in the archive (a day archived and dropped)."""


def open_member(path: Path) -> tuple[contextlib.ExitStack, IO[bytes]]:
    """The CSV bytes of a dump: the (only) CSV member of a zip, a gunzipped file, or the file.

    Returns what to close and the binary stream; a DataError when a zip cannot be opened."""
    stack = contextlib.ExitStack()
    try:
        fh = stack.enter_context(path.open("rb"))
        magic = fh.read(4)
        fh.seek(0)
        if magic == b"PK\x03\x04" or path.suffix.lower() == ".zip":
            zf = stack.enter_context(zipfile.ZipFile(fh))
            names = [n for n in zf.namelist() if not n.endswith("/")]
            csvs = [n for n in names if n.lower().endswith(".csv")] or names
            if not csvs:
                raise DataError(f"{path.name}: an empty zip archive (no CSV inside)")
            return stack, stack.enter_context(zf.open(csvs[0]))
        if magic[:2] == b"\x1f\x8b":
            gz = gzip.GzipFile(fileobj=fh, mode="rb")
            stack.callback(gz.close)
            return stack, cast(IO[bytes], gz)
        return stack, fh
    except DataError:
        stack.close()
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
        stack.close()
        raise DataError(
            f"{path.name}: a damaged or truncated zip archive ({' '.join(str(exc).split())[:100]})"
        ) from None


def _day(us: int) -> date:
    return _EPOCH + timedelta(days=us // _US_PER_DAY)


class _Beside(threading.Thread):
    """One statement on another connection, in a thread; its error kept for the caller."""

    def __init__(self, fn: Any) -> None:
        super().__init__(name="cryptolab-history-bars", daemon=True)
        self.fn = fn
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:  # handed to the loading thread
            self.error = exc


class HistoryStore:
    """Loads history into one database connection (autocommit; each file its own transaction)."""

    def __init__(
        self, conn: psycopg.Connection, exchange: str, *, source: str = "backfill", dsn: str | None = None
    ) -> None:
        """`dsn` (the same database): the bulk path builds bars_1s on a second connection while
        the first inserts the trades (two cores at work); without it, one after the other."""
        if not conn.autocommit:
            raise ValueError("HistoryStore needs an autocommit connection (it runs its own transactions)")
        self.conn = conn
        self.exchange = exchange
        self.source = source
        self.dsn = dsn
        self._raw_t = (0, 0)
        self._conn2: psycopg.Connection | None = None
        self.ts_table = "_hist_trades"
        if dsn is not None:
            # a scratch table the second connection can read: unlogged, named by this backend;
            # those of loaders that died are dropped
            pid = conn.info.backend_pid
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relname ~ '^cryptolab_hist_(scratch|bars)_[0-9]+$' "
                "AND c.relkind = 'r' AND substring(c.relname from '[0-9]+$')::int "
                "NOT IN (SELECT pid FROM pg_stat_activity)"
            ).fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            self.ts_table = f"cryptolab_hist_scratch_{pid}"
            self._bars_table = f"cryptolab_hist_bars_{pid}"
            conn.execute(
                _SCRATCH["trades"]
                .replace("TEMP TABLE", "UNLOGGED TABLE")
                .replace("_hist_trades", self.ts_table)
            )
        # the per-file aggregate (bars_1s of a day: ~86k groups) and joins stay in memory,
        # and the scratch table in local buffers (only settable before the session's first temp table)
        conn.execute(f"SET work_mem = '{WORK_MEM}'")
        try:
            conn.execute(f"SET temp_buffers = '{WORK_MEM}'")
        except psycopg.Error:
            pass
        for ddl in [*_SCRATCH.values(), *fut.SCRATCH.values()]:
            conn.execute(ddl)

    def close(self) -> None:
        """Drop the shared scratch tables and the second connection (the temp ones go with the session)."""
        if self.dsn is not None and not self.conn.closed:
            self.conn.execute(f'DROP TABLE IF EXISTS "{self.ts_table}", "{self._bars_table}"')
        if self._conn2 is not None:
            self._conn2.close()
            self._conn2 = None

    def _table(self, kind: str) -> str:
        return self.ts_table if kind == "trades" else _TABLE[kind]

    # ------------------------------------------------------------------ bookkeeping
    def loaded(self, symbol: str, kind: str, interval: str, file_name: str) -> Loaded | None:
        """The history_files record of a file already loaded (None when it is not in)."""
        row = self.conn.execute(
            "SELECT rows, stored, first_id, last_id, mode FROM history_files "
            "WHERE exchange = %s AND symbol = %s AND kind = %s AND interval = %s AND file_name = %s",
            (self.exchange, symbol, kind, interval, file_name),
        ).fetchone()
        if row is None:
            return None
        return Loaded(int(row[0]), int(row[1]), row[2], row[3], str(row[4]), skipped=True)

    def _record(
        self,
        f: DumpFile | None,
        *,
        symbol: str,
        kind: str,
        interval: str,
        period: str,
        first_day: date,
        last_day: date,
        name: str,
        url: str,
        sha256: str | None,
        size: int | None,
        res: Loaded,
    ) -> None:
        self.conn.execute(
            "INSERT INTO history_files (exchange, symbol, kind, interval, period, first_day, last_day, "
            "file_name, url, sha256, bytes, rows, stored, first_id, last_id, mode) VALUES (%s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (exchange, symbol, kind, interval, "
            "file_name) DO NOTHING",
            (
                self.exchange,
                symbol,
                kind,
                interval,
                period,
                first_day,
                last_day,
                name,
                url,
                sha256,
                size,
                res.rows,
                res.stored,
                res.first_id,
                res.last_id,
                res.mode,
            ),
        )

    # ------------------------------------------------------------------ files
    def load_file(
        self, f: DumpFile, path: Path, *, url: str, sha256: str | None, record: bool = True
    ) -> Loaded:
        """Store one verified dump file (see the module doc); it is in or out as a whole.

        `record=False` (`cryptolab load`): no history_files row, and no check that the rows
        lie in the file's days."""
        table = self._table(f.kind)
        label = path.name
        self.conn.execute(f"TRUNCATE {table}")

        def bookkeep(res: Loaded) -> None:
            if record:
                self._record(
                    f,
                    symbol=f.symbol,
                    kind=f.kind,
                    interval=f.interval,
                    period=f.period,
                    first_day=f.first_day,
                    last_day=f.last_day,
                    name=f.name,
                    url=url,
                    sha256=sha256,
                    size=path.stat().st_size,
                    res=res,
                )

        try:
            n = self._copy_zip(f, path, table)
            stats = self._stats(f.kind, table, n)
            if record:
                self._check_days(f, path, stats)
            if f.kind == "trades":
                return self._merge_trades(stats, bulk_ok=True, record=bookkeep, symbol=f.symbol, label=label)
            with self.conn.transaction():
                stored = self._merge_other(f.kind, f.symbol, f.interval)
                res = Loaded(n, stored, stats[1], stats[2], "idempotent")
                bookkeep(res)
            return res
        except pgerr.DiskFull:
            raise DataError(
                f"{label}: the database's disk is full — nothing of this file was stored; "
                "free space and run again"
            ) from None
        except (psycopg.DataError, pgerr.IntegrityError) as exc:
            raise DataError(
                f"{label}: not a valid {f.kind} dump — {' '.join(str(exc).split())[:160]}; "
                "nothing of this file was stored"
            ) from None
        finally:
            self.conn.execute(f"TRUNCATE {table}")

    def _copy_zip(self, f: DumpFile, path: Path, table: str) -> int:
        closer, member = open_member(path)
        names = fut.COLUMNS[f.kind] if f.market == "usdm" else COLUMNS[f.kind]
        want = len(names)
        market = "futures" if f.market == "usdm" else "spot"
        label = path.name
        try:
            with closer:
                head = member.read(_CHUNK)
                sample = head[:65536]
                if b"\x00" in sample:
                    raise DataError(f"{label}: is not text (NUL bytes where CSV lines were expected)")
                try:
                    sample.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
                        raise DataError(
                            f"{label}: is not text (binary data where CSV lines were expected)"
                        ) from None
                first = head.split(b"\n", 1)[0].strip()
                if not first:
                    return 0
                header = not first[:1].isdigit()
                cols = len(next(csv.reader([first.decode("utf-8", "replace")])))
                if header and len(head.split(b"\n", 2)) > 1:
                    line2 = head.split(b"\n", 2)[1].strip()
                    cols = len(next(csv.reader([line2.decode("utf-8", "replace")]))) if line2 else want
                if cols != want:
                    raise DataError(
                        f"{label}: {cols} columns where a {market} {f.kind} dump has {want} "
                        f"({','.join(names)}) — wrong file or kind; nothing of it was stored"
                    )
                opts = "FORMAT csv, HEADER true" if header else "FORMAT csv"
                cols_sql = fut.COPY_COLUMNS.get(f.kind, "") if f.market == "usdm" else ""
                with self.conn.cursor().copy(f"COPY {table} {cols_sql} FROM STDIN ({opts})") as cp:
                    chunk = head
                    while chunk:
                        cp.write(chunk)
                        chunk = member.read(_CHUNK)
        except (zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(
                f"{label}: a damaged or truncated archive "
                f"({' '.join(str(exc).split())[:100]}); nothing of it was stored"
            ) from None
        self.conn.execute(f"ANALYZE {table}")  # the planner's row counts for the merge
        row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def _stats(
        self, kind: str, table: str, n: int
    ) -> tuple[int, int | None, int | None, int | None, int | None]:
        """(rows, first id, last id, first time µs, last time µs) of the scratch table."""
        if n == 0:
            return (0, None, None, None, None)
        idc, tc = {
            "trades": ("id", "t"),
            "aggTrades": ("a", "t"),
            "klines": ("NULL::bigint", "open_t"),
            **fut.STATS,
        }[kind]
        row = self.conn.execute(
            f"SELECT min({idc}), max({idc}), min({tc}), max({tc}) FROM {table}"
        ).fetchone()
        assert row is not None
        self._raw_t = (int(row[2]), int(row[3]))
        return (n, row[0], row[1], _us_py(int(row[2])), _us_py(int(row[3])))

    def _check_days(
        self, f: DumpFile, path: Path, stats: tuple[int, int | None, int | None, int | None, int | None]
    ) -> None:
        if stats[3] is None or stats[4] is None:
            return
        lo, hi = _day(stats[3]), _day(stats[4])
        if lo < f.first_day or hi > f.last_day:
            raise DataError(
                f"{f.name}: holds rows of {lo} … {hi}, outside the file's days "
                f"{f.first_day} … {f.last_day} — not this symbol's dump? nothing of it was stored"
            )

    def _merge_other(self, kind: str, symbol: str, interval: str) -> int:
        sql = _AGG if kind == "aggTrades" else fut.MERGE.get(kind, _KLINES)
        row = self.conn.execute(
            sql, {"ex": self.exchange, "sym": symbol, "src": self.source, "iv": interval}
        ).fetchone()
        return int(row[0]) if row else 0

    def _merge_trades(
        self,
        stats: tuple[int, int | None, int | None, int | None, int | None],
        *,
        bulk_ok: bool,
        record: Any,
        symbol: str,
        label: str,
    ) -> Loaded:
        n, first_id, last_id, t_lo, t_hi = stats
        if n == 0:
            with self.conn.transaction():
                res = Loaded(0, 0, None, None, "bulk")
                record(res)
            return res
        assert first_id is not None and last_id is not None
        params: dict[str, Any] = {
            "ex": self.exchange,
            "sym": symbol,
            "src": self.source,
            "lo": first_id,
            "hi": last_id,
        }
        archived, left = self._leave_out_archived(params)
        if archived:
            if not left:
                with self.conn.transaction():
                    res = Loaded(n, 0, first_id, last_id, "idempotent", archived=archived)
                    record(res)
                return res
            _, params["lo"], params["hi"], t_lo, t_hi = self._stats("trades", self.ts_table, left)
        assert t_lo is not None and t_hi is not None
        self.conn.execute(
            "SELECT cryptolab_ensure_partitions(timestamptz 'epoch' + %s * interval '1 microsecond', "
            "timestamptz 'epoch' + %s * interval '1 microsecond')",
            (t_lo, t_hi),
        )
        if bulk_ok:
            bulk: Loaded | None = None
            try:
                with self.conn.transaction():
                    lock_symbols(
                        self.conn, [(self.exchange, symbol)]
                    )  # the trade writer's lock: one writer per symbol
                    d, last = _day(t_lo), _day(t_hi)
                    days = []
                    while d <= last:
                        days.append(d)
                        d += timedelta(days=1)
                    for day in days:  # in day order: two loaders never deadlock
                        self.conn.execute(f"LOCK TABLE trades_{day:%Y%m%d} IN SHARE ROW EXCLUSIVE MODE")
                    # nothing of the symbol on these days, and none of the file's ids on any day
                    row = self.conn.execute(
                        "SELECT EXISTS (SELECT 1 FROM trades WHERE exchange = %s AND symbol = %s "
                        "AND trade_id BETWEEN %s AND %s) OR EXISTS (SELECT 1 FROM trades WHERE exchange = %s "
                        "AND symbol = %s AND trade_time >= %s::date::timestamptz AND trade_time < (%s::date "
                        "+ 1)::timestamptz)",
                        (
                            self.exchange,
                            symbol,
                            params["lo"],
                            params["hi"],
                            self.exchange,
                            symbol,
                            days[0],
                            days[-1],
                        ),
                    ).fetchone()
                    if row is not None and not row[0]:
                        t = _time_expr(*self._raw_t)
                        sec = _sec_expr(*self._raw_t)
                        bars = self._bars_beside(sec) if self.dsn is not None else None
                        try:
                            cur = self.conn.execute(_BULK_INSERT.format(t=t, s=self.ts_table), params)
                        finally:
                            if bars is not None:
                                bars.join()
                        if bars is not None:
                            if bars.error is not None:
                                raise bars.error
                            # the days hold no trade of the symbol, so no bar either: a plain insert
                            # (a bar there after all fails it, and the file goes the idempotent way)
                            self.conn.execute(
                                _BARS_INSERT.format(select=f'SELECT * FROM "{self._bars_table}"'), params
                            )
                        else:
                            self.conn.execute(
                                _BARS_UPSERT.format(select=_BARS_SELECT.format(sec=sec, s=self.ts_table)),
                                params,
                            )
                        bulk = Loaded(n, cur.rowcount, first_id, last_id, "bulk", archived=archived)
                        record(bulk)
                if (
                    bulk is not None
                ):  # committed: give the planner the new rows (autovacuum may be minutes away)
                    for day in days:
                        self.conn.execute(f"ANALYZE trades_{day:%Y%m%d}")
                    return bulk
            except pgerr.UniqueViolation:
                pass  # an id twice in the file (or a bar already there): redo it on the idempotent path
        with self.conn.transaction():
            lock_symbols(
                self.conn, [(self.exchange, symbol)]
            )  # the trade writer's lock: one writer per symbol
            hit = self.conn.execute(_CONFLICTS.replace("_hist_trades", self.ts_table), params).fetchone()
            if hit is not None:
                raise TradeConflict(
                    f"{label}: {conflict_text(int(hit[0]), symbol, int(hit[1]), hit[2], hit[3])} — "
                    f"is it {symbol}'s, unedited? Nothing of this file was stored"
                )
            out = self.conn.execute(
                _IDEMPOTENT_TRADES.replace("_hist_trades", self.ts_table), params
            ).fetchone()
            assert out is not None
            res = Loaded(n, int(out[0]), first_id, last_id, "idempotent", archived=archived)
            record(res)
            return res

    def _leave_out_archived(self, params: dict[str, Any]) -> tuple[int, int]:
        """Delete from the scratch table the ids that live in the archive: (how many, how many are left)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM archive_days WHERE exchange = %(ex)s AND symbol = %(sym)s "
            "AND dropped_at IS NOT NULL AND last_trade_id >= %(lo)s AND first_trade_id <= %(hi)s)",
            params,
        ).fetchone()
        if not row or not row[0]:
            return 0, 0
        out = self.conn.execute(_ARCHIVED.replace("_hist_trades", self.ts_table), params).fetchone()
        gone = int(out[0]) if out else 0
        left = self.conn.execute(f"SELECT count(*) FROM {self.ts_table}").fetchone()
        return gone, int(left[0]) if left else 0

    def _bars_beside(self, sec: str) -> _Beside:
        """Start computing the scratch table's bars_1s on the second connection (a thread)."""
        if self._conn2 is None:
            from ..storage import db

            self._conn2 = db.connect(self.dsn, autocommit=True, ensure_schema=False)
            self._conn2.execute(f"SET work_mem = '{WORK_MEM}'")
        conn2 = self._conn2
        sql = (
            f'DROP TABLE IF EXISTS "{self._bars_table}"; CREATE UNLOGGED TABLE "{self._bars_table}" AS '
            + _BARS_SELECT.format(sec=sec, s=self.ts_table)
        )
        return _Beside(lambda: conn2.execute(sql))

    # ------------------------------------------------------------------ REST rows
    def store_rows(
        self,
        kind: Kind,
        symbol: str,
        interval: str,
        rows: Sequence[Sequence[Any]],
        *,
        name: str,
        url: str,
        first_day: date,
        last_day: date,
    ) -> Loaded:
        """Store rows fetched from REST (in the dump's column order) on the idempotent path,
        in one transaction with their history_files record (`name` unique per run)."""
        table = self._table(kind)
        self.conn.execute(f"TRUNCATE {table}")
        try:
            if not rows:
                return Loaded(0, 0, None, None, "idempotent")
            with self.conn.cursor().copy(f"COPY {table} FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            stats = self._stats(kind, table, len(rows))

            def record(res: Loaded) -> None:
                self._record(
                    None,
                    symbol=symbol,
                    kind=kind,
                    interval=interval,
                    period="rest",
                    first_day=first_day,
                    last_day=last_day,
                    name=name,
                    url=url,
                    sha256=None,
                    size=None,
                    res=res,
                )

            if kind == "trades":
                return self._merge_trades(
                    stats, bulk_ok=False, record=record, symbol=symbol, label=f"{symbol} REST rows {name}"
                )
            with self.conn.transaction():
                stored = self._merge_other(kind, symbol, interval)
                res = Loaded(len(rows), stored, stats[1], stats[2], "idempotent")
                record(res)
                return res
        except pgerr.DiskFull:
            raise DataError(
                "the database's disk is full — the REST rows of this run were not stored; "
                "free space and run again"
            ) from None
        except (psycopg.DataError, pgerr.IntegrityError) as exc:
            raise DataError(
                f"{symbol}: REST rows rejected by the database — {' '.join(str(exc).split())[:160]}"
            ) from None
        finally:
            self.conn.execute(f"TRUNCATE {table}")

    # ------------------------------------------------------------------ queries
    def first_missing_id(self, symbol: str, from_id: int, to_id: int | None) -> int:
        """The first trade id >= from_id not stored for the symbol (stored ids are contiguous before it)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM trades WHERE exchange = %s AND symbol = %s AND trade_id = %s)",
            (self.exchange, symbol, from_id),
        ).fetchone()
        if not row or not row[0]:
            return from_id
        row = self.conn.execute(
            "SELECT trade_id + 1 FROM (SELECT trade_id, lead(trade_id) OVER (ORDER BY trade_id) AS nxt FROM "
            "trades WHERE exchange = %(ex)s AND symbol = %(sym)s AND trade_id >= %(lo)s AND trade_id <= "
            "%(hi)s) s WHERE nxt IS NULL OR nxt > trade_id + 1 ORDER BY trade_id LIMIT 1",
            {"ex": self.exchange, "sym": symbol, "lo": from_id, "hi": to_id if to_id is not None else 2**62},
        ).fetchone()
        if row and row[0] is not None:
            return int(row[0])
        return to_id + 1 if to_id is not None else from_id  # every id of [from_id, to_id] is stored
