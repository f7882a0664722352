"""What `archive_days` recorded per published day, and the manifest published from it.

The manifest (see `storage/parquet/manifest.py`) lists the days of this database at a
location that follow the current contract with a recorded checksum; it is written last,
atomically, and only when what it should list changed.
"""

from __future__ import annotations

from datetime import date, timezone
from typing import Any

import psycopg

from ..storage.parquet.layout import FORMAT_VERSION
from ..storage.parquet.manifest import DayRecord, build_manifest, read_manifest, write_manifest
from ..storage.parquet.store import ArchiveStore

__all__ = ["day_records", "publish_manifest"]


def day_records(conn: psycopg.Connection, location: str) -> list[DayRecord]:
    """What archive_days recorded for the days published at `location`."""
    rows = conn.execute(
        "SELECT exchange, symbol, day, path, rows, first_trade_id, last_trade_id, sum_qty, sum_quote, "
        "bytes, sha256, format, exported_at FROM archive_days WHERE location = %s "
        "ORDER BY exchange, symbol, day",
        (location,),
    ).fetchall()
    return [
        DayRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            int(r[4]),
            r[5],
            r[6],
            r[7],
            r[8],
            int(r[9]),
            r[10],
            int(r[11]),
            r[12].astimezone(timezone.utc).isoformat(timespec="seconds"),
        )
        for r in rows
    ]


def publish_manifest(conn: psycopg.Connection, store: ArchiveStore) -> dict[str, Any]:
    """Write the manifest (atomically) when what it should list differs from what it lists; return it.

    It lists this database's days at this location that follow the current contract with a
    recorded checksum, and keeps the days another writer listed that this database does not know."""
    records = day_records(conn, store.uri())
    known = {r.key for r in records}
    listed = [r for r in records if r.format == FORMAT_VERSION and r.sha256 is not None]
    previous = read_manifest(store)
    if previous is not None:  # days this database knows but whose file is not (yet) under the contract leave
        previous = {
            **previous,
            "days": [
                d
                for d in previous["days"]
                if (d["exchange"], d["symbol"], date.fromisoformat(d["date"])) not in known
            ],
        }
    doc = build_manifest(listed, previous)
    if conn.execute("SELECT to_regclass('archive_book_days') IS NOT NULL").fetchone() == (True,):
        from .book import book_manifest

        tables, book_days = book_manifest(conn, store, previous)
        doc["tables"].update(tables)
        doc["book_days"] = book_days
    old = read_manifest(store)
    if (
        old is None
        or old.get("days") != doc["days"]
        or old.get("tables") != doc["tables"]
        or old.get("book_days") != doc.get("book_days")
    ):
        write_manifest(store, doc)
    return doc
