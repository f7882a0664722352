"""`cryptolab load FILE…`: data.binance.vision dumps and stream recordings into the database,
each file all in or all out (see `cryptolab.history.load`).
"""

from __future__ import annotations

import argparse

from ..history.load import BATCH_ROWS, load_files

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="dumps (.zip/.csv) or stream recordings (.gz/.txt)"
    )
    p.add_argument(
        "--symbol", default=None, help="symbol of dumps whose file name does not say it (e.g. BTCUSDT)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=BATCH_ROWS,
        help=f"rows per COPY batch (default {BATCH_ROWS}); each file is one transaction",
    )
    p.add_argument(
        "--market",
        choices=("spot", "usdm"),
        default=None,
        help="market of stream recordings (exchange binance or binance-usdm); default: told by the "
        "messages (a depth diff with `pu` is USD-M futures)",
    )
    p.add_argument("--dsn", default=None, help="database (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in cron jobs)")


def run(args: argparse.Namespace) -> int:
    from ..history.recording import exchange_for

    res = load_files(
        args.files,
        dsn=args.dsn,
        symbol=args.symbol,
        batch_rows=args.batch,
        progress=not args.no_progress,
        market=None if args.market is None else exchange_for(args.market),
    )
    rate = res.rows / res.seconds if res.seconds else 0.0
    print(
        f"loaded {res.rows:,} trades from {res.files} file(s): {res.inserted:,} new, {res.duplicates:,} "
        "already stored"
        + (
            f" ({res.archived:,} of them in the archive: their days were archived and dropped, "
            "they are not stored again)"
            if res.archived
            else ""
        )
        + (f", {res.skipped_lines:,} lines skipped (nothing to store)" if res.skipped_lines else "")
        + (
            f"; {res.aggregates:,} aggregate trades into agg_trades: {res.aggregates_inserted:,} new"
            if res.aggregates
            else ""
        )
        + f" ({res.seconds:.1f} s, {rate:,.0f} trades/s)"
    )
    for rec in res.recordings:
        print(
            f"recording ({rec.exchange}, {rec.files} file(s)): {rec.diffs:,} depth diffs "
            f"({rec.diffs_inserted:,} new) carrying {rec.level_updates:,} level updates, {rec.quotes:,} "
            f"quotes ({rec.quotes_inserted:,} new), {rec.snapshots:,} snapshots, {rec.gaps:,} book gaps "
            f"({rec.healed:,} healed), {rec.dead_letters:,} dead letters"
            + (
                f"; {rec.book_archived:,} book rows of days archived and dropped not stored again"
                if rec.book_archived
                else ""
            )
        )
        if rec.unsynced:
            print(
                f"note: the book of {', '.join(rec.unsynced)} never started (no usable depth snapshot in the "
                "recording): its diffs are stored, a book can be rebuilt from them only after a snapshot"
            )
    return 0
