"""One history for the SQL modules: a session TEMP table `trades` = database rows + archived rows.

PostgreSQL looks in the session's temporary schema first, so while a temporary table named
`trades` exists, the unchanged SQL of `sql/*.sql` reads it instead of the partitioned table.
`attach(conn, exchange, symbol, start, end)` makes one when [start, end) (widened back to the
last trade before start, which gaps, halts and the tick rule look at, and on to the first
trade at or after end, which halts look at) touches a day that lives
only in the archive: it holds that range's database rows plus the archived rows, with the
same primary key, so every query answers as if the day had never left. When no such day is
touched it does nothing (two tiny queries). `detach(conn)` drops it; `cryptolab.analysis`
calls both around each analysis function.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ...errors import DatabaseError, first_line
from .layout import FILE_COLUMNS
from .read import _utc, as_stored_text, dropped_days, read_day_files
from .verify import day_bounds

__all__ = ["attach", "detach", "attach_for", "attached"]

_MARK = "cryptolab_archive_attached"
_STAGE = "cryptolab_archive_rows"
_COPY_ROWS = 500_000
_COLUMNS = ("exchange", "symbol", "trade_id", "price", "qty", "quote_qty", "is_buyer_maker",
            "trade_time", "event_time", "received_at", "ingested_at", "source")


def attached(conn: psycopg.Connection) -> tuple[str, str, datetime, datetime] | None:
    """(exchange, symbol, from, to) held by this session's temporary `trades`, or None."""
    row = conn.execute(f"SELECT to_regclass('pg_temp.{_MARK}') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    got = conn.execute(f"SELECT exchange, symbol, lo, hi FROM pg_temp.{_MARK}").fetchone()
    return None if got is None else (got[0], got[1], got[2], got[3])


def detach(conn: psycopg.Connection) -> None:
    """Drop this session's temporary `trades` (if any): `trades` means the database table again."""
    if conn.closed or conn.info.transaction_status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        return  # a failed transaction: its rollback removes what it created
    try:
        row = conn.execute(f"SELECT to_regclass('pg_temp.{_MARK}') IS NOT NULL").fetchone()
        if row and row[0]:
            conn.execute(f"DROP TABLE IF EXISTS pg_temp.trades, pg_temp.{_MARK}, pg_temp.{_STAGE}")
    except psycopg.Error:
        pass


def _base_table(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relname = 'trades' AND c.relkind = 'p' AND n.nspname = ANY "
        "(current_schemas(false)) ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1"
    ).fetchone()
    if not row:
        raise DatabaseError(
            "no partitioned table `trades` on the search path: apply the schema (cryptolab db init)"
        )
    return str(row[0])


def attach(conn: psycopg.Connection, exchange: str, symbol: str, start: datetime, end: datetime) -> bool:
    """Make `trades` in this session cover [start, end) of (exchange, symbol) from database and archive.

    Returns True when a temporary `trades` is in place (archived days are involved), False
    when the database alone holds the range (and no temporary table is left).
    """
    t0, t1 = _utc(start), _utc(end)
    assert t0 is not None and t1 is not None
    try:
        row = conn.execute(
            f"SELECT to_regclass('archive_days') IS NOT NULL, to_regclass('pg_temp.{_MARK}') IS NOT NULL"
        ).fetchone()
        assert row is not None
        has_archive, is_attached = bool(row[0]), bool(row[1])
        if not has_archive:
            if is_attached:
                detach(conn)
            return False
        days = dropped_days(conn, exchange, symbol, None, None) if has_archive else []
        lo, hi = t0, t1
        # the last trade before start and the first at or after end are looked at too (halts, gaps,
        # tick rule)
        if days:
            prior = conn.execute(
                "SELECT max(ts) FROM bars_1s WHERE exchange = %s AND symbol = %s AND ts < %s",
                (exchange, symbol, t0),
            ).fetchone()
            lo = min(t0, prior[0]) if prior and prior[0] is not None else t0
            after = conn.execute(
                "SELECT min(ts) + interval '1 second' FROM bars_1s "
                "WHERE exchange = %s AND symbol = %s AND ts >= %s",
                (exchange, symbol, t1),
            ).fetchone()
            hi = max(t1, after[0]) if after and after[0] is not None else t1
            days = dropped_days(conn, exchange, symbol, lo, hi)
        if not days:
            if is_attached:
                detach(conn)
            return False
        if is_attached:
            if attached(conn) == (exchange, symbol, lo, hi):
                return True
            detach(conn)
        got = read_day_files(days, lo, hi, FILE_COLUMNS)
        base = _base_table(conn)
        conn.execute(f"CREATE TEMP TABLE trades (LIKE {base} INCLUDING DEFAULTS)")  # indexes after the load
        conn.execute(
            f"INSERT INTO pg_temp.trades ({', '.join(_COLUMNS)}) "
            f"SELECT {', '.join(_COLUMNS)} FROM {base} "
            "WHERE exchange = %s AND symbol = %s AND trade_time >= %s AND trade_time < %s",
            (exchange, symbol, lo, hi),
        )
        if got is not None and got.num_rows:
            # rows stored again for a dropped day (late rows) may repeat archived ones: keep one of each
            late = any(
                conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {base} WHERE exchange = %s AND symbol = %s "
                    "AND trade_time >= %s AND trade_time < %s)",
                    (exchange, symbol, *day_bounds(d.day)),
                ).fetchone()
                == (True,)
                for d in days
            )
            target = _STAGE if late else "trades"
            if late:
                conn.execute(f"CREATE TEMP TABLE {_STAGE} (LIKE pg_temp.trades)")
            frame = as_stored_text(got, exchange, symbol, _COLUMNS)  # each value as PostgreSQL stored it
            with conn.cursor() as cur:
                with cur.copy(f"COPY pg_temp.{target} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT csv)") as cp:
                    for part in frame.iter_slices(_COPY_ROWS):
                        buf = io.BytesIO()
                        part.write_csv(buf, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f%z")
                        cp.write(buf.getbuffer())
            if late:
                conn.execute(
                    f"INSERT INTO pg_temp.trades SELECT s.* FROM pg_temp.{_STAGE} s WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_temp.trades t WHERE t.trade_id = s.trade_id "
                    "AND t.trade_time = s.trade_time)"
                )
                conn.execute(f"DROP TABLE pg_temp.{_STAGE}")
        conn.execute("CREATE INDEX ON pg_temp.trades (exchange, symbol, trade_id)")
        conn.execute("ANALYZE pg_temp.trades")
        # statements psycopg prepared earlier on this connection were resolved to the database's
        # table: make PostgreSQL re-plan them (and so look `trades` up again) before their next use
        conn.execute("DISCARD PLANS")
        conn.execute(
            f"CREATE TEMP TABLE {_MARK} AS SELECT %s::text AS exchange, %s::text AS symbol, "
            "%s::timestamptz AS lo, %s::timestamptz AS hi",
            (exchange, symbol, lo, hi),
        )
        return True
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not join the archive to the database for {exchange} {symbol}: {first_line(exc)}"
        ) from None


_READS_TRADES = re.compile(r"\b(from|join)\s+trades\b", re.IGNORECASE)


def attach_for(conn: psycopg.Connection, values: Mapping[str, Any], sql_text: str | None = None) -> bool:
    """`attach` for a query's variables when they name an exchange, a symbol and a range (and, when
    `sql_text` is given, when that query reads raw trades at all); else nothing."""
    if sql_text is not None and not _READS_TRADES.search(sql_text):
        return False
    try:
        exchange, symbol, start, end = values["exchange"], values["symbol"], values["start"], values["end"]
    except KeyError:
        return False
    if not all(isinstance(v, str) for v in (exchange, symbol)):
        return False
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return False
    return attach(conn, exchange, str(symbol).upper(), start, end)
