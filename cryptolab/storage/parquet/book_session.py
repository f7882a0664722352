"""One history for the book readers: session TEMP views `book_diffs`, `quotes`, `book_snapshots`
= the database's table UNION ALL the archived rows of the dropped days asked for.

PostgreSQL resolves an unqualified name in the session's temporary schema first, so while a
temporary view `book_diffs` exists the readers' unchanged SQL reads it instead of the table. The
view is the whole database table (its indexes and partition pruning still apply: the predicates
reach both arms of the UNION ALL) plus a temporary table holding the rows of the archived days
`attach_book_days` loaded, read from Parquet after the file is checked against its record (size,
SHA-256, page CRCs, rows, ids). A row stored again in the database for a dropped day is kept
once (the database's copy wins, key for key). Days load on demand, once per session, so a reader
can ask for more as it learns which update ids it needs (`cryptolab.analysis.book_archive`).
`detach_book(conn)` drops the views and tables: the names mean the database's tables again.
`book_gaps` is never dropped and never shadowed.
"""

from __future__ import annotations

import io
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ...errors import DatabaseError, first_line
from .book import KINDS, BookRecord, check_book_file
from .errors import ArchiveError
from .store import ArchiveStore, open_store

__all__ = ["attach_book_days", "detach_book", "book_attached", "book_base_table", "newest_archived_time"]

_MARK = "cryptolab_book_attached"
_KEYS = {"book_diffs": ("last_update_id", "event_time"), "quotes": ("update_id", "received_at"),
         "book_snapshots": ("last_update_id",)}


def _stage(kind: str) -> str:
    return f"cryptolab_archived_{kind}"


def book_attached(conn: psycopg.Connection) -> bool:
    """Whether this session's book table names are shadowed by archived days now."""
    row = conn.execute(f"SELECT to_regclass('pg_temp.{_MARK}') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _loaded(conn: psycopg.Connection) -> set[tuple[str, str, str, str]]:
    if not book_attached(conn):
        return set()
    return {(r[0], r[1], r[2], r[3].isoformat()) for r in
            conn.execute(f"SELECT kind, exchange, symbol, day FROM pg_temp.{_MARK}").fetchall()}


def detach_book(conn: psycopg.Connection) -> None:
    """Drop this session's book views and archived rows (if any); the session is left as found."""
    if conn.closed or conn.info.transaction_status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        return  # a failed transaction: its rollback removes what it created
    try:
        if not book_attached(conn):
            return
        names = [f"pg_temp.{k}" for k in _KEYS]
        conn.execute(f"DROP VIEW IF EXISTS {', '.join(names)}")
        conn.execute(
            f"DROP TABLE IF EXISTS {', '.join(f'pg_temp.{_stage(k)}' for k in _KEYS)}, pg_temp.{_MARK}"
        )
        conn.execute("DISCARD PLANS")  # statements planned against the views look the tables up again
    except psycopg.Error:
        pass


def book_base_table(conn: psycopg.Connection, kind: str) -> str:
    """The database's own table `kind` (schema-qualified, quoted): what the view shadows."""
    row = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relname = %s AND c.relkind IN ('p', 'r') AND n.nspname = ANY "
        "(current_schemas(false)) ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1",
        (kind,),
    ).fetchone()
    if not row:
        raise DatabaseError(f"no table `{kind}` on the search path: apply the schema (cryptolab db init)")
    return str(row[0])


def _file(stores: dict[str, ArchiveStore], rec: BookRecord, columns: list[str] | None = None) -> object:
    store = stores.get(rec.location)
    if store is None:
        store = stores[rec.location] = open_store(rec.location, check=False)
    if not store.exists(rec.path):
        raise ArchiveError(
            f"{rec.kind} of {rec.exchange} {rec.symbol} {rec.day} is recorded as archived at "
            f"{store.uri(rec.path)} (and dropped from the database) but the file is missing: "
            "restore it there"
        )
    table = check_book_file(store.get(rec.path), rec, store.uri(rec.path))
    return table if columns is None else table.select(columns)


def newest_archived_time(rec: BookRecord) -> datetime | None:
    """The latest day-column time (event_time / received_at) in an archived day's file (checked first)."""
    import pyarrow.compute as pc

    table = _file({}, rec, [KINDS[rec.kind].day_column])
    got = pc.max(table.column(0)).as_py()  # type: ignore[attr-defined]
    return got if isinstance(got, datetime) else None


def _csv(table: object, kind: str, exchange: str, symbol: str) -> bytes:
    """The archived rows as COPY CSV in the database table's column order: arrays as `{a,b}`,
    numerics and times as text (exactly what PostgreSQL printed when it was archived)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    cols, names = [], []
    for name, arrow, _s, _n in KINDS[kind].columns:
        col = table.column(name)  # type: ignore[attr-defined]
        if arrow == "list<string>":
            col = pc.binary_join_element_wise("{", pc.binary_join(col, ","), "}", "")
        elif arrow != "string":
            col = pc.cast(col, pa.string())
        cols.append(col)
        names.append(name)
    n = table.num_rows  # type: ignore[attr-defined]
    out = pa.table(
        [pa.array([exchange] * n, pa.string()), pa.array([symbol] * n, pa.string()), *cols],
        names=["exchange", "symbol", *names],
    )
    buf = io.BytesIO()
    pcsv.write_csv(out, buf, pcsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _ensure_view(conn: psycopg.Connection, kind: str) -> None:
    if conn.execute(f"SELECT to_regclass('pg_temp.{_stage(kind)}') IS NOT NULL").fetchone() == (True,):
        return
    base = book_base_table(conn, kind)
    cols = ", ".join(["exchange", "symbol", *KINDS[kind].names])
    conn.execute(f"CREATE TEMP TABLE {_stage(kind)} (LIKE {base} INCLUDING DEFAULTS)")
    conn.execute(f"CREATE INDEX ON pg_temp.{_stage(kind)} (exchange, symbol, {KINDS[kind].id_column})")
    conn.execute(
        f"CREATE TEMP VIEW {kind} AS SELECT {cols} FROM {base} "
        f"UNION ALL SELECT {cols} FROM pg_temp.{_stage(kind)}"
    )


def attach_book_days(conn: psycopg.Connection, records: list[BookRecord]) -> int:
    """Load the archived days in `records` (not loaded yet in this session) behind the session's
    views; returns how many days were loaded now."""
    if not records:
        return 0
    try:
        if not book_attached(conn):
            conn.execute(f"CREATE TEMP TABLE {_MARK} (kind text, exchange text, symbol text, day date)")
        have = _loaded(conn)
        todo = [r for r in records if (r.kind, r.exchange, r.symbol, r.day.isoformat()) not in have]
        todo = list({(r.kind, r.exchange, r.symbol, r.day): r for r in todo}.values())
        stores: dict[str, ArchiveStore] = {}
        for rec in todo:
            if rec.kind not in _KEYS:
                raise ArchiveError(f"{rec.kind} is never dropped: it is read from the database")
            _ensure_view(conn, rec.kind)
            data = _csv(_file(stores, rec), rec.kind, rec.exchange, rec.symbol)
            cols = ", ".join(["exchange", "symbol", *KINDS[rec.kind].names])
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY pg_temp.{_stage(rec.kind)} ({cols}) FROM STDIN (FORMAT csv)") as cp,
            ):
                cp.write(data)
            keys = " AND ".join(f"d.{k} = a.{k}" for k in _KEYS[rec.kind])
            base = book_base_table(conn, rec.kind)
            # a row stored in the database again for a dropped day: one copy (the database's)
            conn.execute(
                f"DELETE FROM pg_temp.{_stage(rec.kind)} a USING {base} d WHERE d.exchange = a.exchange "
                f"AND d.symbol = a.symbol AND {keys} AND a.exchange = %s AND a.symbol = %s",
                (rec.exchange, rec.symbol),
            )
            conn.execute(
                sql.SQL("INSERT INTO pg_temp.{} VALUES (%s, %s, %s, %s)").format(sql.Identifier(_MARK)),
                (rec.kind, rec.exchange, rec.symbol, rec.day),
            )
        if todo:
            for kind in {r.kind for r in todo}:
                conn.execute(f"ANALYZE pg_temp.{_stage(kind)}")
            # statements psycopg prepared earlier on this connection were resolved to the tables:
            # make PostgreSQL re-plan them (and so find the views) before their next use
            conn.execute("DISCARD PLANS")
        return len(todo)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not join the archived book days to the database: {first_line(exc)}"
        ) from None
