"""Archive closed UTC days of raw trades to Parquet (a directory or s3://bucket/prefix),
verified; optionally drop them.

    cryptolab archive                                 # every closed day -> CRYPTOLAB_ARCHIVE
    cryptolab archive --before 2024-09-01 --drop      # ... and drop those partitions once verified
    cryptolab archive --keep-days 30                  # keep 30 days in PostgreSQL, archive+drop older
    cryptolab archive --to s3://bucket/trades --symbols BTCUSDT ETHUSDT
    cryptolab archive --verify                        # check every archived file against its record

bars_1s, klines, capture_runs and capture_gaps stay in PostgreSQL. Analyses and load_trades
read archived days back transparently (docs/archive.md).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from ..errors import ConfigError

__all__ = ["configure", "run"]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--before",
        type=_day,
        metavar="DATE",
        help="only days before DATE (YYYY-MM-DD, UTC); default: every closed day (before today)",
    )
    parser.add_argument(
        "--to",
        metavar="URL",
        help="archive directory or s3://bucket/prefix (default: CRYPTOLAB_ARCHIVE, else "
        "CRYPTOLAB_HOME/archive); S3 endpoint and credentials from AWS_* variables",
    )
    parser.add_argument(
        "--drop",
        action="store_true",
        help="drop the archived days' partitions after reading each file back and checking it",
    )
    parser.add_argument(
        "--keep-days",
        type=int,
        metavar="N",
        help="retention: drop (after checking) the partitions of days older than N days",
    )
    parser.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="only these symbols (default: all)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="rewrite an archived day from the database when the file differs (default: refuse)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="only check every archived file at the location against what was recorded at publish "
        "(size, SHA-256, page CRCs, rows, ids, sums); exit 1 naming each damaged file",
    )


def run(args: argparse.Namespace) -> int:
    from ..archive.job import archive

    if args.verify:
        return _verify(args)
    if args.keep_days is not None and args.keep_days < 0:
        raise ConfigError(f"--keep-days must be 0 or more, not {args.keep_days}")
    report = archive(
        to=args.to,
        before=args.before,
        drop=args.drop,
        keep_days=args.keep_days,
        symbols=args.symbols,
        replace=args.replace,
        dry_run=args.dry_run,
        say=lambda line: print(line, flush=True),
    )
    plan = report.plan
    done = len([r for r in report.exported if r.status != "present"])
    print(
        f"archive {report.location}: {done} day(s) written ({report.rows:,} rows, {report.bytes / 1e6:.1f} "
        f"MB), {len(plan.done) + len(report.exported) - done} already there, {len(report.dropped)} "
        f"partition(s) dropped, {report.seconds:.1f} s",
        flush=True,
    )
    book = report.book
    if book is not None and (book.exported or book.dropped or book.conflicts):
        new = [e for e in book.exported if e.status != "present"]
        print(
            f"book days: {len(new)} file(s) written ({book.rows:,} rows, {book.bytes / 1e6:.1f} MB), "
            f"{len(book.exported) - len(new)} already there, {len(book.dropped)} day(s) dropped",
            flush=True,
        )
    conflicts = len(plan.conflicts) + (len(book.conflicts) if book is not None else 0)
    if conflicts:
        print(f"{conflicts} conflict(s): see above", file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..archive.check import verify_location

    others = [
        flag
        for flag, on in (
            ("--drop", args.drop),
            ("--keep-days", args.keep_days is not None),
            ("--replace", args.replace),
            ("--before", args.before is not None),
            ("--symbols", bool(args.symbols)),
            ("--dry-run", args.dry_run),
        )
        if on
    ]
    if others:
        raise ConfigError(f"--verify only checks: drop {', '.join(others)} (run them without --verify)")
    report = verify_location(args.to, say=lambda line: print(line, file=sys.stderr, flush=True))
    extra = []
    if report.checksums_recorded:
        extra.append(f"{report.checksums_recorded} checksum(s) recorded for older days")
    if report.manifest_rewritten:
        extra.append("manifest rewritten")
    tail = f" ({', '.join(extra)})" if extra else ""
    print(
        f"verify {report.location}: {report.checked} day(s) checked, {len(report.problems)} problem(s){tail}",
        flush=True,
    )
    return 1 if report.problems else 0
