"""Rewrite an archived day of an older schema under the contract, from its own file (its rows
left PostgreSQL).

A day still in the database is simply exported again (export_day, status "upgraded"). A day
whose partition was dropped has only its file: it is read, checked against what was recorded
at publish (rows, ids, Σqty, Σ(price·qty)), cast to the contract (a value that does not fit
is refused, naming the file: the day then stays in its older schema, outside the manifest),
written, read back and checked again, and only then published over the old file.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import FORMAT_VERSION, contract_schema
from ..storage.parquet.manifest import DayRecord, check_file
from ..storage.parquet.store import ArchiveStore
from ..storage.parquet.verify import differences, table_stats
from .check import record_problems
from .export import encode, inspect, record_day

__all__ = ["old_dropped_days", "upgrade_day"]


def old_dropped_days(conn: psycopg.Connection, location: str) -> list[tuple[str, str, Any]]:
    """(exchange, symbol, day) of the dropped days at `location` whose file predates the contract."""
    rows = conn.execute(
        "SELECT exchange, symbol, day FROM archive_days WHERE location = %s AND dropped_at IS NOT NULL "
        "AND format <> %s ORDER BY day, exchange, symbol",
        (location, FORMAT_VERSION),
    ).fetchall()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def upgrade_day(conn: psycopg.Connection, store: ArchiveStore, rec: DayRecord) -> int:
    """Rewrite one dropped day's file under the contract; return its new size."""
    import pyarrow as pa

    where = store.uri(rec.path)
    table = check_file(store.get(rec.path), rec, where)
    have = table_stats(table)
    bad = record_problems(
        rec, have.rows, have.first_id, have.last_id, have.sum_qty, have.sum_quote, FORMAT_VERSION
    )
    if bad:
        raise ArchiveError(
            f"{where} does not hold what was recorded at publish ({'; '.join(bad)}): not rewritten; "
            "restore it from a copy"
        )
    schema = contract_schema()
    try:
        new = table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ArchiveError(
            f"{where} holds values the contract cannot hold ({' '.join(str(exc).split())[:120]}): it "
            f"stays in schema version {rec.format}, outside the manifest"
        ) from None
    meta = {
        "cryptolab.format": str(FORMAT_VERSION),
        "cryptolab.exchange": rec.exchange,
        "cryptolab.symbol": rec.symbol,
        "cryptolab.date": rec.day.isoformat(),
    }
    data = encode(new.replace_schema_metadata(meta))
    staged = store.staging_name(rec.path)
    store.put(staged, data)
    try:
        got, fmt, digest, size = inspect(store, staged)
        diff = differences(got, have)
        if diff or fmt != FORMAT_VERSION:
            raise ArchiveError(
                f"{where}: the rewritten file does not match the old one ({'; '.join(diff)}): "
                "nothing was replaced"
            )
        store.publish(staged, rec.path)
    finally:
        if store.exists(staged):
            store.delete(staged)
    record_day(conn, store, rec.exchange, rec.symbol, rec.day, got, size, digest, fmt)
    return size
