"""Book days in the archive: closed UTC days of book_diffs, quotes, book_snapshots and book_gaps.

Every `cryptolab archive` run handles them beside the trade days, with the same options and the
same rules (archive/plan.py decides per table): a closed day is exported (staged, read back,
compared with the database by rows, first/last update id and content checksum, then published
whole and recorded in `archive_book_days`); with `--drop` / `--keep-days` a day goes from
PostgreSQL only after every archived file of it is read back, checked against its record (size,
SHA-256, page CRCs, rows, ids, checksum) and matched against the database under a lock:

* `book_diffs` and `quotes`: the day's partition is dropped (one transaction, partition locked;
  the day's `book_tops`, derived from the diffs, go with them);
* `book_snapshots`: the day's rows of the archived symbols are deleted (table locked for writes);
* `book_gaps`: copied, never dropped (a loss stays visible in PostgreSQL, like `capture_gaps`).

`--verify` checks every book file too (`verify_book_files`); the manifest lists book days under
`book_days` (`book_manifest`). The file layer (schemas, checksum, reads) is
`storage/parquet/book.py`; the readers of archived days `storage/parquet/book_read.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from ..errors import DatabaseError, first_line
from ..storage.db import partitions_of
from ..storage.parquet.book import (
    BOOK_FORMAT,
    KINDS,
    BookRecord,
    BookStats,
    book_contract_json,
    book_differences,
    book_path,
    checked_book_stats,
    db_book_stats,
    file_book_stats,
    parse_book_path,
    write_book_day,
)
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.manifest import sha256
from ..storage.parquet.store import ArchiveStore
from .plan import ArchivePlan, Group, Recorded, make_plan

__all__ = ["BookExport", "BookReport", "book_exports", "book_drops", "book_records", "book_manifest",
           "verify_book_files"]

_LOCK_WAIT = "30s"


@dataclass
class BookExport:
    kind: str
    exchange: str
    symbol: str
    day: date
    path: str
    stats: BookStats
    bytes: int
    status: str  # "exported", "replaced", "present"


@dataclass
class BookReport:
    plans: dict[str, ArchivePlan] = field(default_factory=dict)
    exported: list[BookExport] = field(default_factory=list)
    dropped: list[tuple[str, date]] = field(default_factory=list)
    partitions: dict[str, dict[date, tuple[str | None, list[tuple[str, str]]]]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(e.stats.rows for e in self.exported if e.status != "present")

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.exported if e.status != "present")

    @property
    def conflicts(self) -> list[tuple[Group, str]]:
        return [c for p in self.plans.values() for c in p.conflicts]


def _days(
    conn: psycopg.Connection, kind: str, today: date
) -> dict[date, tuple[str | None, list[tuple[str, str]]]]:
    """{closed day: (its partition or None, [(exchange, symbol) with rows that day])} of a book table."""
    table = KINDS[kind].table
    out: dict[date, tuple[str | None, list[tuple[str, str]]]] = {}
    if kind in ("book_diffs", "quotes"):  # day-partitioned
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
        width = len(table) + 9
        for schema, name in rows:
            if not (len(name) == width and name[len(table) + 1 :].isdigit()):
                continue
            digits = name[len(table) + 1 :]
            try:
                day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            except ValueError:
                continue
            if day < today:
                groups = partitions_of(conn, schema, name)
                if groups:
                    out[day] = (f"{schema}.{name}", groups)
        return out
    col = KINDS[kind].day_column
    rows = conn.execute(
        sql.SQL(
            "SELECT ({c} AT TIME ZONE 'UTC')::date AS day, exchange, symbol FROM {t} "
            "WHERE {c} < (%s::date)::timestamp AT TIME ZONE 'UTC' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).format(c=sql.Identifier(col), t=sql.Identifier(table)),
        (today,),
    ).fetchall()
    for day, exchange, symbol in rows:
        out.setdefault(day, (None, []))[1].append((str(exchange), str(symbol)))
    return out


def book_records(conn: psycopg.Connection, location: str, kind: str | None = None) -> list[BookRecord]:
    """What `archive_book_days` recorded at `location` (one kind, or all)."""
    rows = conn.execute(
        "SELECT kind, exchange, symbol, day, location, path, rows, first_id, last_id, checksum, bytes, "
        "sha256, format, dropped_at IS NOT NULL FROM archive_book_days WHERE location = %s AND (%s::text IS "
        "NULL OR kind = %s) ORDER BY kind, exchange, symbol, day",
        (location, kind, kind),
    ).fetchall()
    return [
        BookRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            int(r[6]),
            r[7],
            r[8],
            r[9],
            int(r[10]),
            r[11],
            int(r[12]),
            bool(r[13]),
        )
        for r in rows
    ]


def _recorded(conn: psycopg.Connection, kind: str) -> dict[Group, Recorded]:
    rows = conn.execute(
        "SELECT exchange, symbol, day, location, dropped_at IS NOT NULL, format = %s "
        "FROM archive_book_days WHERE kind = %s",
        (BOOK_FORMAT, kind),
    ).fetchall()
    return {Group(r[2], r[0], r[1]): Recorded(r[3], bool(r[4]), bool(r[5])) for r in rows}


def _present(store: ArchiveStore, kind: str) -> set[Group]:
    out = set()
    for rel, _size in store.files(kind):
        parsed = parse_book_path(rel)
        if parsed:
            out.add(Group(parsed[3], parsed[1], parsed[2]))
    return out


_RECORD = """
INSERT INTO archive_book_days AS a (kind, exchange, symbol, day, location, path, rows, first_id, last_id,
                                    checksum, bytes, sha256, format, exported_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (kind, exchange, symbol, day) DO UPDATE
SET location = excluded.location, path = excluded.path, rows = excluded.rows, first_id = excluded.first_id,
    last_id = excluded.last_id, checksum = excluded.checksum, bytes = excluded.bytes,
    sha256 = excluded.sha256, format = excluded.format, exported_at = excluded.exported_at, verified_at = NULL
"""


def _record(
    conn: psycopg.Connection,
    store: ArchiveStore,
    kind: str,
    exchange: str,
    symbol: str,
    day: date,
    stats: BookStats,
    size: int,
    digest: str,
) -> None:
    try:
        with conn.transaction():
            conn.execute(
                _RECORD,
                (
                    kind,
                    exchange,
                    symbol,
                    day,
                    store.uri(),
                    book_path(kind, exchange, symbol, day),
                    stats.rows,
                    stats.first_id,
                    stats.last_id,
                    stats.checksum,
                    size,
                    digest,
                    BOOK_FORMAT,
                ),
            )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not record {kind} of {exchange} {symbol} {day} in archive_book_days: {first_line(exc)}"
        ) from None


def export_book_day(
    conn: psycopg.Connection,
    store: ArchiveStore,
    kind: str,
    exchange: str,
    symbol: str,
    day: date,
    *,
    replace: bool = False,
) -> BookExport:
    """Archive one book day: staged, read back and matched against the database, then published whole."""
    final = book_path(kind, exchange, symbol, day)
    want = db_book_stats(conn, kind, exchange, symbol, day)
    status = "exported"
    if store.exists(final):
        data = store.get(final)
        try:
            have: BookStats | None = file_book_stats(data, kind, store.uri(final))
        except ArchiveError:
            have = None
        if have is not None and not book_differences(have, want):
            _record(conn, store, kind, exchange, symbol, day, have, len(data), sha256(data))
            return BookExport(kind, exchange, symbol, day, final, have, len(data), "present")
        if not replace:
            what = (
                "is unreadable"
                if have is None
                else "holds different content (" + "; ".join(book_differences(have, want)) + ")"
            )
            raise ArchiveError(
                f"{kind} of {exchange} {symbol} {day} is already archived at {store.uri(final)} but the "
                f"file {what}: nothing was deleted; pass --replace to rewrite it from the database, "
                "or move the file away"
            )
        status = "replaced"
    data, _written = write_book_day(conn, kind, exchange, symbol, day)
    staged = store.staging_name(final)
    store.put(staged, data)
    try:
        back = store.get(staged)
        got = file_book_stats(back, kind, store.uri(staged))
        diff = book_differences(got, want)
        if diff:
            raise ArchiveError(
                f"{kind} of {exchange} {symbol} {day}: the written file does not match the database "
                f"({'; '.join(diff)}) — rows arriving for a closed day? Nothing was published; re-run"
            )
        if sha256(back) != sha256(data):
            raise ArchiveError(
                f"{store.uri(staged)} was not stored as written (its SHA-256 differs): nothing was "
                "published; check the store and re-run"
            )
        store.publish(staged, final)
    finally:
        if store.exists(staged):
            store.delete(staged)
    _record(conn, store, kind, exchange, symbol, day, got, len(data), sha256(data))
    return BookExport(kind, exchange, symbol, day, final, got, len(data), status)


def book_exports(
    c: psycopg.Connection,
    store: ArchiveStore,
    *,
    before: date | None,
    drop: bool,
    keep_days: int | None,
    symbols: Collection[str] | None,
    replace: bool,
    dry_run: bool,
    today: date,
    say: Callable[[str], None],
) -> BookReport:
    """Plan every book table and export what is missing (the drops come after the manifest: `book_drops`)."""
    report = BookReport()
    present_kinds = {
        str(r[0])
        for r in c.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind IN ('r', 'p')", (list(KINDS),)
        ).fetchall()
    }
    for kind, spec in KINDS.items():
        if kind not in present_kinds:
            continue
        try:
            days = _days(c, kind, today)
            recorded = _recorded(c, kind)
        except psycopg.Error as exc:
            raise DatabaseError(f"could not list the days of {kind}: {first_line(exc)}") from None
        report.partitions[kind] = days
        plan = make_plan(
            {d: g for d, (_, g) in days.items()},
            recorded,
            _present(store, kind),
            today=today,
            location=store.uri(),
            before=before,
            drop=drop and spec.droppable,
            keep_days=keep_days if spec.droppable else None,
            symbols=symbols,
        )
        if replace:
            plan.export, plan.done = sorted(plan.export + plan.done), []
        report.plans[kind] = plan
        for _g, why in plan.conflicts:
            say(f"conflict ({kind}): {why}")
        for day, why in plan.kept:
            say(f"kept {kind} of {day}: {why}")
        if dry_run:
            for g in plan.export:
                say(f"would export {kind} of {g.exchange} {g.symbol} {g.day}")
            for day in plan.drop:
                say(f"would drop {kind} of {day} after verification")
            continue
        for g in plan.export:
            t = time.perf_counter()
            res = export_book_day(c, store, kind, g.exchange, g.symbol, g.day, replace=replace)
            report.exported.append(res)
            rate = res.stats.rows / max(time.perf_counter() - t, 1e-9)
            verb = {"present": "already archived (identical)", "replaced": "re-exported"}.get(
                res.status, "exported"
            )
            say(
                f"{verb} {kind} of {g.exchange} {g.symbol} {g.day}: {res.stats.rows:,} rows, "
                f"{res.bytes / 1e6:.1f} MB{'' if res.status == 'present' else f', {rate:,.0f} rows/s'} -> "
                f"{store.uri(res.path)}"
            )
    return report


def _archived_stats(
    c: psycopg.Connection, store: ArchiveStore, kind: str, day: date, groups: list[tuple[str, str]]
) -> dict[tuple[str, str], BookStats]:
    """Every archived file of the day read back and checked against its record (size, SHA-256,
    CRCs, content)."""
    records = {(r.exchange, r.symbol): r for r in book_records(c, store.uri(), kind) if r.day == day}
    out = {}
    for exchange, symbol in groups:
        rec = records.get((exchange, symbol))
        if rec is None:
            raise ArchiveError(
                f"{kind} of {exchange} {symbol} {day} is not recorded as archived at {store.uri()}: "
                "nothing deleted; re-run to archive it there first"
            )
        where = store.uri(rec.path)
        if not store.exists(rec.path):
            raise ArchiveError(f"{where} is missing: nothing deleted; re-run to archive the day again")
        try:
            stats = checked_book_stats(store.get(rec.path), rec, where)
        except ArchiveError as exc:
            raise ArchiveError(f"nothing deleted of {kind} of {day}: {exc}") from None
        if book_differences(stats, rec.stats):
            raise ArchiveError(
                f"{where} is damaged: it no longer holds what was recorded at publish "
                f"({'; '.join(book_differences(stats, rec.stats))}): nothing deleted; re-run with "
                "--replace to rewrite it from the database"
            )
        out[(exchange, symbol)] = stats
    return out


def _drop_locked(
    c: psycopg.Connection,
    store: ArchiveStore,
    kind: str,
    day: date,
    partition: str | None,
    archived: dict[tuple[str, str], BookStats],
) -> None:
    spec = KINDS[kind]
    c.execute(f"SET LOCAL lock_timeout = '{_LOCK_WAIT}'")
    if partition is not None:
        schema, name = partition.split(".", 1)
        c.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, name)))
        extra = sorted(set(partitions_of(c, schema, name)) - set(archived))
        if extra:
            raise ArchiveError(
                f"{partition} now also holds {', '.join(' '.join(g) for g in extra)}: not dropped; "
                "re-run to archive them first"
            )
    else:
        c.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(spec.table)))
    for (exchange, symbol), have in archived.items():
        diff = book_differences(have, db_book_stats(c, kind, exchange, symbol, day))
        if diff:
            raise ArchiveError(
                f"{kind} of {exchange} {symbol} {day}: the archive at "
                f"{store.uri(book_path(kind, exchange, symbol, day))} does not match the database "
                f"({'; '.join(diff)}): nothing deleted; re-run with --replace to rewrite it"
            )
        c.execute(
            "UPDATE archive_book_days SET verified_at = clock_timestamp(), dropped_at = clock_timestamp() "
            "WHERE kind = %s AND exchange = %s AND symbol = %s AND day = %s AND location = %s",
            (kind, exchange, symbol, day, store.uri()),
        )
        if partition is None:
            from ..storage.parquet.verify import day_bounds

            t0, t1 = day_bounds(day)
            c.execute(
                sql.SQL(
                    "DELETE FROM {t} WHERE exchange = %s AND symbol = %s AND {c} >= %s AND {c} < %s"
                ).format(t=sql.Identifier(spec.table), c=sql.Identifier(spec.day_column)),
                (exchange, symbol, t0, t1),
            )
    if partition is not None:
        schema, name = partition.split(".", 1)
        c.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
        if kind == "book_diffs":  # the day's stored tops go with its diffs (derived: book_top rebuilds)
            tops = f"book_tops_{day:%Y%m%d}"
            c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, tops)))


def book_drops(
    c: psycopg.Connection, store: ArchiveStore, report: BookReport, say: Callable[[str], None]
) -> None:
    """Drop the planned book days, each only after its files are read back and match the database."""
    for kind, plan in report.plans.items():
        for day in plan.drop:
            partition, groups = report.partitions[kind][day]
            archived = _archived_stats(c, store, kind, day, groups)
            try:
                with c.transaction():
                    _drop_locked(c, store, kind, day, partition, archived)
            except psycopg.errors.LockNotAvailable:
                raise ArchiveError(
                    f"{kind} of {day} is busy (writers held it for {_LOCK_WAIT}): nothing deleted; "
                    "re-run later"
                ) from None
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"could not drop {kind} of {day}: {first_line(exc)}; nothing deleted"
                ) from None
            report.dropped.append((kind, day))
            what = f"partition {partition}" if partition else f"the rows of {day}"
            say(f"dropped {kind}: {what} ({len(groups)} symbol(s) verified against {store.uri()})")


def book_manifest(
    conn: psycopg.Connection, store: ArchiveStore, previous: dict[str, Any] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the book tables' contracts, the book days) for the manifest: this database's days at this
    location, plus the days another writer listed that this database does not know."""
    days: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for d in (previous or {}).get("book_days", []):
        days[(str(d["table"]), str(d["exchange"]), str(d["symbol"]), str(d["date"]))] = dict(d)
    for r in book_records(conn, store.uri()):
        days[(r.kind, r.exchange, r.symbol, r.day.isoformat())] = r.as_json()
    return {k: book_contract_json(k) for k in KINDS}, [days[k] for k in sorted(days)]


def verify_book_files(conn: psycopg.Connection, store: ArchiveStore) -> tuple[int, list[str]]:
    """`--verify` for book days: (files checked, problems), stamping `verified_at` on the good ones."""
    problems: list[str] = []
    checked = 0
    recorded_paths = set()
    for rec in book_records(conn, store.uri()):
        recorded_paths.add(rec.path)
        where = store.uri(rec.path)
        checked += 1
        if not store.exists(rec.path):
            problems.append(f"{where}: missing (recorded {rec.rows:,} rows): restore it from a copy")
            continue
        try:
            stats = checked_book_stats(store.get(rec.path), rec, where)
        except ArchiveError as exc:
            problems.append(str(exc) if where in str(exc) else f"{where}: {exc}")
            continue
        diff = book_differences(stats, rec.stats)
        if diff:
            problems.append(f"{where}: {'; '.join(diff)}")
            continue
        with conn.transaction():
            conn.execute(
                "UPDATE archive_book_days SET verified_at = clock_timestamp() WHERE kind = %s AND "
                "exchange = %s AND symbol = %s AND day = %s AND location = %s",
                (rec.kind, rec.exchange, rec.symbol, rec.day, store.uri()),
            )
    for kind in KINDS:
        for rel, _size in store.files(kind):
            if rel not in recorded_paths and rel.endswith(".parquet"):
                problems.append(
                    f"{store.uri(rel)}: not recorded anywhere: not part of the dataset, but a plain "
                    f"scan of {kind}/ reads it; move it away or re-run `cryptolab archive`"
                )
    return checked, problems
