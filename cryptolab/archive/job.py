"""One archive run: plan, export what is missing, then verify and drop what may go.

The drop of a `trades_YYYYMMDD` partition happens in one transaction that first locks the
partition (no writer can add a row meanwhile), re-reads the day's totals from the database
and compares them with the archived files read back from the store; it drops nothing unless
every (exchange, symbol) of that day matches exactly. Before that, the day's quality report
is computed and kept in `archive_quality` (on a partition analysed first when a bulk load left
it without statistics: the report's plan depends on them).

The manifest is written last: after the run's files are published (and before any drop), from
`archive_days` at this location (manifest.py). The run holds an advisory lock on its own
session, and asks the server to check every second that this client is still there
(`client_connection_check_interval`): a killed `cryptolab archive` never leaves a query running
that holds the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..errors import DatabaseError, first_line
from ..storage.db import partitions_of
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import FORMAT_VERSION, day_path, parse_day_path
from ..storage.parquet.store import DATASET, ArchiveStore, open_store
from ..storage.parquet.verify import day_bounds, db_stats, differences
from .export import ExportResult, export_day, inspect
from .plan import ArchivePlan, Group, Recorded, make_plan
from .records import day_records, publish_manifest

if TYPE_CHECKING:
    from .book import BookReport

__all__ = ["Report", "archive", "partitions"]

_LOCK = "cryptolab_archive"
_LOCK_WAIT = "30s"
_ALIVE_CHECK = "1s"


@dataclass
class Report:
    """What a run did."""

    location: str
    plan: ArchivePlan
    exported: list[ExportResult] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    cleaned: int = 0
    seconds: float = 0.0
    book: BookReport | None = None
    """The book days of the run (book_diffs, quotes, book_snapshots, book_gaps: archive/book.py)."""

    @property
    def rows(self) -> int:
        return sum(r.stats.rows for r in self.exported if r.status != "present")

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.exported if r.status != "present")


def _base(conn: psycopg.Connection) -> tuple[str, int]:
    row = conn.execute(
        "SELECT n.nspname, c.oid::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'trades' AND c.relkind = 'p' AND n.nspname = ANY (current_schemas(false)) "
        "ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1"
    ).fetchone()
    if not row:
        raise DatabaseError("no partitioned table `trades`: apply the schema first (cryptolab db init)")
    return str(row[0]), int(row[1])


def partitions(
    conn: psycopg.Connection, before: date | None = None
) -> dict[date, tuple[str, list[tuple[str, str]]]]:
    """{day: (partition name, [(exchange, symbol) it holds])} for the daily partitions before `before`."""
    _, oid = _base(conn)
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s",
        (oid,),
    ).fetchall()
    out: dict[date, tuple[str, list[tuple[str, str]]]] = {}
    for schema, name in rows:
        if not (name.startswith("trades_") and len(name) == 15 and name[7:].isdigit()):
            continue
        try:
            day = date(int(name[7:11]), int(name[11:13]), int(name[13:15]))
        except ValueError:
            continue
        if before is not None and day >= before:
            continue
        out[day] = (f"{schema}.{name}", partitions_of(conn, schema, name))
    return out


def _recorded(conn: psycopg.Connection) -> dict[Group, Recorded]:
    rows = conn.execute(
        "SELECT exchange, symbol, day, location, dropped_at IS NOT NULL, "
        "format = %s AND sha256 IS NOT NULL FROM archive_days",
        (FORMAT_VERSION,),
    ).fetchall()
    return {Group(r[2], r[0], r[1]): Recorded(r[3], bool(r[4]), bool(r[5])) for r in rows}


def _upgrade_dropped(
    c: psycopg.Connection,
    store: ArchiveStore,
    plan: ArchivePlan,
    symbols: Collection[str] | None,
    say: Callable[[str], None],
) -> None:
    """Rewrite under the contract the dropped days whose file predates it (one schema per dataset)."""
    from .upgrade import old_dropped_days, upgrade_day

    wanted = None if symbols is None else {s.upper() for s in symbols}
    records = {r.key: r for r in day_records(c, store.uri())}
    for exchange, symbol, day in old_dropped_days(c, store.uri()):
        if wanted is not None and symbol not in wanted:
            continue
        rec = records[(exchange, symbol, day)]
        try:
            size = upgrade_day(c, store, rec)
        except ArchiveError as exc:
            plan.conflicts.append((Group(day, exchange, symbol), str(exc)))
            say(f"conflict: {exc}")
            continue
        say(
            f"rewrote {exchange} {symbol} {day} under the contract from its file: {rec.rows:,} rows, "
            f"{size / 1e6:.1f} MB -> {store.uri(rec.path)}"
        )


def _analyze_if_stale(conn: psycopg.Connection, partition: str) -> None:
    """ANALYZE a partition that has no statistics, or whose rows changed a lot since (a bulk load)."""
    schema, name = partition.split(".", 1)
    ident = sql.Identifier(schema, name)
    row = conn.execute(
        "SELECT coalesce(greatest(last_analyze, last_autoanalyze) IS NULL, true) "
        "OR n_mod_since_analyze > 0.2 * greatest(n_live_tup, 1) "
        "FROM pg_stat_user_tables WHERE relid = %s::regclass",
        (partition,),
    ).fetchone()
    if row is None or row[0]:
        conn.execute(sql.SQL("ANALYZE {}").format(ident))


def _present(store: ArchiveStore) -> dict[Group, int]:
    """{group: file size} of the day files in the store."""
    out = {}
    for rel, size in store.files(DATASET):
        parsed = parse_day_path(rel)
        if parsed:
            out[Group(parsed[2], parsed[0], parsed[1])] = size
    return out


def _wrong_sizes(
    conn: psycopg.Connection, store: ArchiveStore, plan: ArchivePlan, present: dict[Group, int]
) -> None:
    """Days already archived whose file no longer has the published size: conflicts (reported, not dropped).
    A cheap check on every run (one listing); `--verify` reads every byte."""
    recorded = {r.key: r for r in day_records(conn, store.uri())}
    keep = []
    for g in plan.done:
        rec = recorded.get((g.exchange, g.symbol, g.day))
        if rec is not None and rec.sha256 is not None and present.get(g) != rec.bytes:
            plan.conflicts.append(
                (
                    g,
                    f"{store.uri(rec.path)} is damaged: {present.get(g, 0):,} bytes, {rec.bytes:,} "
                    "were published; `cryptolab archive --replace` rewrites it from the database",
                )
            )
            if g.day in plan.drop:
                plan.drop.remove(g.day)
                plan.kept.append((g.day, "an archived file of it is damaged"))
        else:
            keep.append(g)
    plan.done = keep


def _keep_quality(conn: psycopg.Connection, exchange: str, symbol: str, day: date) -> None:
    """Compute the day's quality report (while its rows are still in the database) and keep it."""
    from ..analysis import quality_report

    t0, t1 = day_bounds(day)
    report = quality_report(symbol, t0, t1, exchange=exchange, conn=conn)
    rows = [
        (exchange, symbol, day, r["check"], r["status"], r["count"], r["detail"]) for r in report.to_dicts()
    ]
    with conn.transaction():
        conn.execute(
            "DELETE FROM archive_quality WHERE exchange = %s AND symbol = %s AND day = %s",
            (exchange, symbol, day),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO archive_quality (exchange, symbol, day, check_name, status, count, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


def _drop_day(
    conn: psycopg.Connection,
    store: ArchiveStore,
    day: date,
    partition: str,
    groups: list[tuple[str, str]],
    say: Callable[[str], None],
) -> None:
    # 1. read every archived file of the day back from the store
    archived = {}
    recorded = {r.key: r for r in day_records(conn, store.uri())}
    for exchange, symbol in groups:
        rel = day_path(exchange, symbol, day)
        stats, _fmt, digest, _size = inspect(store, rel)
        rec = recorded.get((exchange, symbol, day))
        if rec is not None and rec.sha256 is not None and rec.sha256 != digest:
            raise ArchiveError(
                f"{store.uri(rel)} is damaged: its SHA-256 differs from the one recorded at publish; "
                "nothing deleted; re-run with --replace to rewrite it from the database"
            )
        archived[(exchange, symbol)] = stats
    # 2. keep the day's quality results (on fresh statistics: a bulk load may have left none)
    _analyze_if_stale(conn, partition)
    for exchange, symbol in groups:
        _keep_quality(conn, exchange, symbol, day)
    # 3. lock, compare with the database, drop: one transaction
    try:
        with conn.transaction():
            _verify_and_drop(conn, store, day, partition, groups, archived)
    except psycopg.errors.LockNotAvailable:
        raise ArchiveError(
            f"{partition} is busy (long queries or writers on trades held it for {_LOCK_WAIT}): "
            "nothing deleted; re-run later"
        ) from None
    except psycopg.Error as exc:
        raise DatabaseError(f"could not drop {partition}: {first_line(exc)}; nothing deleted") from None
    say(f"dropped partition {partition} ({len(groups)} symbol(s) verified against {store.uri()})")


def _verify_and_drop(
    conn: psycopg.Connection,
    store: ArchiveStore,
    day: date,
    partition: str,
    groups: list[tuple[str, str]],
    archived: dict[tuple[str, str], Any],
) -> None:
    schema, name = partition.split(".", 1)
    conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_WAIT}'")
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, name)))
    still = partitions_of(conn, schema, name)
    extra = sorted(set(still) - set(groups))
    if extra:
        raise ArchiveError(
            f"{partition} now also holds {', '.join(' '.join(g) for g in extra)}: "
            "not dropped; re-run to archive them first"
        )
    for (exchange, symbol), have in archived.items():
        diff = differences(have, db_stats(conn, exchange, symbol, day))
        if diff:
            raise ArchiveError(
                f"{exchange} {symbol} {day}: the archive at {store.uri(day_path(exchange, symbol, day))} "
                f"does not match the database ({'; '.join(diff)}): nothing deleted; "
                "re-run with --replace to rewrite the file from the database"
            )
    for exchange, symbol in groups:
        cur = conn.execute(
            "UPDATE archive_days SET verified_at = clock_timestamp(), dropped_at = clock_timestamp() "
            "WHERE exchange = %s AND symbol = %s AND day = %s AND location = %s",
            (exchange, symbol, day, store.uri()),
        )
        if cur.rowcount != 1:
            raise ArchiveError(
                f"{exchange} {symbol} {day} is not recorded as archived at {store.uri()}: "
                "not dropped; re-run to archive it there first"
            )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))


def archive(
    conn: psycopg.Connection | None = None,
    *,
    to: str | None = None,
    before: date | None = None,
    drop: bool = False,
    keep_days: int | None = None,
    symbols: Collection[str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    today: date | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> Report:
    """Archive closed UTC days of raw trades (and drop verified partitions when asked).

    `to`: directory or s3://bucket/prefix (default CRYPTOLAB_ARCHIVE, else CRYPTOLAB_HOME/archive).
    `before`: only days before this date (default: every closed day). `drop`: drop the
    partitions of the archived days (after verification); `keep_days` N: drop only days older
    than N days. `symbols`: only these symbols (a partition holding others is kept).
    """
    from ..storage import db

    if keep_days is not None and keep_days < 0:
        raise ArchiveError(f"--keep-days must be 0 or more, not {keep_days}")
    started = time.perf_counter()
    store = open_store(to, check=not dry_run)
    own = conn is None
    c = conn if conn is not None else db.connect(autocommit=True)
    was_autocommit = c.autocommit
    if not was_autocommit:
        if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise ArchiveError(
                "archive() needs a connection with no open transaction: commit or roll back first"
            )
        c.autocommit = True  # every step commits on its own; the drop is one explicit transaction
    before_check: str | None = None
    try:
        before_check = _watch_client(c)
        got = c.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_LOCK,)).fetchone()
        if not got or not got[0]:
            raise ArchiveError(
                f"another `cryptolab archive` is running on this database ({_holder(c)}): "
                "wait for it to finish"
            )
        try:
            return _run(
                c,
                store,
                before,
                drop,
                keep_days,
                symbols,
                replace,
                dry_run,
                today or datetime.now(timezone.utc).date(),
                say,
                started,
            )
        finally:
            if not c.closed:
                c.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))
    finally:
        if own:
            c.close()
        elif not c.closed:
            if before_check is not None and c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                _watch_client(c, before_check)  # the caller's connection, as it was
            c.autocommit = was_autocommit


def _watch_client(c: psycopg.Connection, value: str = _ALIVE_CHECK) -> str | None:
    """Have the server end this session's query within a second when the client is gone (PostgreSQL 14+);
    return the previous setting (None on an older server, where a killed run's query holds the
    lock until it ends)."""
    try:
        row = c.execute(
            "SELECT current_setting('client_connection_check_interval'), "
            "set_config('client_connection_check_interval', %s, false)",
            (value,),
        ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0])


def _holder(c: psycopg.Connection) -> str:
    """Who holds the archive lock: backend pid, client, since when, what it runs."""
    row = c.execute(
        "SELECT a.pid, coalesce(a.client_addr::text, 'local'), a.state, "
        "round(extract(epoch FROM clock_timestamp() - a.query_start))::int, left(a.query, 60) "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = hashtext(%s)::oid "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        (_LOCK,),
    ).fetchone()
    if row is None:
        return "it just finished: re-run"
    return (
        f"server pid {row[0]}, client {row[1]}, {row[2]} for {row[3]} s: {' '.join(str(row[4]).split())!r}; "
        "if no archive runs, end it with SELECT pg_terminate_backend(" + str(row[0]) + ")"
    )


def _run(
    c: psycopg.Connection,
    store: ArchiveStore,
    before: date | None,
    drop: bool,
    keep_days: int | None,
    symbols: Collection[str] | None,
    replace: bool,
    dry_run: bool,
    today: date,
    say: Callable[[str], None],
    started: float,
) -> Report:
    cleaned = 0
    if not dry_run:
        for rel in store.leftovers():  # files of an interrupted run: never visible, safe to remove
            store.delete(rel)
            cleaned += 1
        if cleaned:
            say(f"removed {cleaned} staging file(s) left by an interrupted run")
    try:
        parts = partitions(c, today)
        recorded = _recorded(c)
    except psycopg.Error as exc:
        raise DatabaseError(f"could not list the trades partitions: {first_line(exc)}") from None
    present = _present(store)
    plan = make_plan(
        {d: groups for d, (_, groups) in parts.items()},
        recorded,
        set(present),
        today=today,
        location=store.uri(),
        before=before,
        drop=drop,
        keep_days=keep_days,
        symbols=symbols,
    )
    if not replace:
        _wrong_sizes(c, store, plan, present)
    if replace:  # check the days already archived too: rewritten where they differ from the database
        plan.export = sorted(plan.export + plan.done)
        plan.done = []
    report = Report(store.uri(), plan, cleaned=cleaned)
    for _g, why in plan.conflicts:
        say(f"conflict: {why}")
    for day, why in plan.kept:
        say(f"kept partition of {day}: {why}")
    if dry_run:
        for g in plan.export:
            say(f"would export {g.exchange} {g.symbol} {g.day}")
        for day in plan.drop:
            say(f"would drop {parts[day][0]} after verification")
        report.book = _book(c, store, before, drop, keep_days, symbols, replace, dry_run, today, say)
        report.seconds = time.perf_counter() - started
        return report
    for g in plan.export:
        t = time.perf_counter()
        res = export_day(c, store, g.exchange, g.symbol, g.day, replace=replace)
        report.exported.append(res)
        rate = res.stats.rows / max(time.perf_counter() - t, 1e-9)
        verb = {
            "present": "already archived (identical)",
            "replaced": "re-exported",
            "upgraded": "rewritten under the contract",
        }.get(res.status, "exported")
        say(
            f"{verb} {g.exchange} {g.symbol} {g.day}: {res.stats.rows:,} rows, {res.bytes / 1e6:.1f} MB"
            f"{'' if res.status == 'present' else f', {rate:,.0f} rows/s'} -> {store.uri(res.path)}"
        )
    _upgrade_dropped(c, store, plan, symbols, say)
    report.book = _book(c, store, before, drop, keep_days, symbols, replace, dry_run, today, say)
    publish_manifest(c, store)  # written last: after the data, before any drop
    for day in plan.drop:
        name, groups = parts[day]
        _drop_day(c, store, day, name, groups, say)
        report.dropped.append(day)
    from .book import book_drops

    book_drops(c, store, report.book, say)
    report.seconds = time.perf_counter() - started
    return report


def _book(
    c: psycopg.Connection,
    store: ArchiveStore,
    before: date | None,
    drop: bool,
    keep_days: int | None,
    symbols: Collection[str] | None,
    replace: bool,
    dry_run: bool,
    today: date,
    say: Callable[[str], None],
) -> BookReport:
    """The book days beside the trade days: same options, same rules (archive/book.py)."""
    from .book import book_exports

    return book_exports(
        c,
        store,
        before=before,
        drop=drop,
        keep_days=keep_days,
        symbols=symbols,
        replace=replace,
        dry_run=dry_run,
        today=today,
        say=say,
    )
