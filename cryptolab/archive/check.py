"""`cryptolab archive --verify`: every archived file checked against what was recorded at publish.

For each day recorded at the location (in `archive_days`, and in the manifest for days this
database does not know): the file is there, its size and SHA-256 are the recorded ones, it
decodes with every Parquet page CRC intact, and its row count, first/last id, Σqty and
Σ(price·qty) equal the record; it follows the current contract. A file under `trades/` that
nothing records is reported too (a plain scan of the folder would read it). Days checked
clean get `verified_at`; a day recorded before checksums existed gets its checksum once its
content matches the record. The manifest is rewritten when it does not list what it should.
One line per problem, naming the file; nothing is ever deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from ..errors import DatabaseError, first_line
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import FORMAT_VERSION, parse_day_path
from ..storage.parquet.manifest import DayRecord, check_file, file_format, read_manifest, sha256
from ..storage.parquet.store import DATASET, ArchiveStore
from ..storage.parquet.verify import table_stats
from .export import STAT_COLUMNS
from .records import day_records, publish_manifest

__all__ = ["VerifyReport", "verify_archive", "record_problems"]


@dataclass
class VerifyReport:
    location: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    checksums_recorded: int = 0
    manifest_rewritten: bool = False


def record_problems(rec: DayRecord, rows: int, first: int | None, last: int | None, sum_qty: object,
                    sum_quote: object, fmt: int) -> list[str]:
    """What differs between a decoded file and its record (pure)."""
    out = []
    for label, got, want in (("rows", rows, rec.rows), ("first id", first, rec.first_id),
                             ("last id", last, rec.last_id), ("Σqty", sum_qty, rec.sum_qty),
                             ("Σ(price·qty)", sum_quote, rec.sum_quote)):
        if got != want:
            out.append(f"{label} {got}, recorded {want}")
    if fmt != FORMAT_VERSION:
        out.append(
            f"schema version {fmt}, the contract is {FORMAT_VERSION}: `cryptolab archive` rewrites it while "
            "the day is still in the database"
        )
    return out


def verify_archive(
    conn: psycopg.Connection, store: ArchiveStore, say: Callable[[str], None] = lambda s: None
) -> VerifyReport:

    report = VerifyReport(store.uri())
    try:
        records = {r.key: r for r in day_records(conn, store.uri())}
    except psycopg.Error as exc:
        raise DatabaseError(f"could not read archive_days: {first_line(exc)}") from None
    mine = set(records)
    try:
        manifest = read_manifest(store)
    except ArchiveError as exc:
        report.problems.append(str(exc))
        manifest = None
    for d in (manifest or {}).get("days", []):
        rec = DayRecord.from_json(d)
        records.setdefault(rec.key, rec)
    recorded_paths = set()
    for key in sorted(records, key=lambda k: (k[2], k[0], k[1])):
        rec = records[key]
        recorded_paths.add(rec.path)
        where = store.uri(rec.path)
        report.checked += 1
        if not store.exists(rec.path):
            report.problems.append(f"{where}: missing (recorded {rec.rows:,} rows): restore it from a copy")
            continue
        data = store.get(rec.path)
        try:
            table = check_file(data, rec, where, STAT_COLUMNS)
            stats = table_stats(table)
        except ArchiveError as exc:
            report.problems.append(str(exc) if where in str(exc) else f"{where}: {exc}")
            continue
        bad = record_problems(
            rec, stats.rows, stats.first_id, stats.last_id, stats.sum_qty, stats.sum_quote, file_format(table)
        )
        if bad:
            report.problems.append(f"{where}: {'; '.join(bad)}")
            continue
        if key in mine:
            digest = None if rec.sha256 is not None else sha256(data)
            with conn.transaction():
                conn.execute(
                    "UPDATE archive_days SET verified_at = clock_timestamp(), sha256 = coalesce(sha256, %s) "
                    "WHERE exchange = %s AND symbol = %s AND day = %s AND location = %s",
                    (digest, rec.exchange, rec.symbol, rec.day, store.uri()),
                )
            if digest is not None:
                report.checksums_recorded += 1
    for rel, _size in store.files(DATASET):
        if rel not in recorded_paths and rel.endswith(".parquet"):
            parsed = parse_day_path(rel)
            what = f"{parsed[0]} {parsed[1]} {parsed[2]}" if parsed else "not a day file"
            report.problems.append(
                f"{store.uri(rel)}: not recorded anywhere ({what}): not part of the dataset, but a "
                "plain scan of trades/ reads it; move it away or re-run `cryptolab archive`"
            )
    from .book import verify_book_files

    checked, problems = verify_book_files(conn, store)  # book days: the same checks, their own record
    report.checked += checked
    report.problems.extend(problems)
    before = (manifest.get("days"), manifest.get("book_days")) if manifest else None
    doc = publish_manifest(conn, store)
    report.manifest_rewritten = before != (doc["days"], doc.get("book_days"))
    for line in report.problems:
        say(line)
    return report


def verify_location(
    to: str | None, conn: psycopg.Connection | None = None, say: Callable[[str], None] = lambda s: None
) -> VerifyReport:
    """`cryptolab archive --verify [--to URL]`."""
    from ..storage import db
    from ..storage.parquet.store import open_store

    store = open_store(to, check=False)
    own = conn is None
    c = conn if conn is not None else db.connect(autocommit=True)
    try:
        return verify_archive(c, store, say)
    finally:
        if own:
            c.close()
