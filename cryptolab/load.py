"""Import data.binance.vision dumps and stream recordings into the database.

`cryptolab load FILE…` reads trades / aggTrades dumps (zip or csv) and raw stream
recordings (gz or plain; see `cryptolab.dumps`) and stores them through the trade
writer (`source='replay'`), in batches of ~50k rows, one transaction each: COPY, dedupe
against what is already stored (loading a file twice stores it once), and `bars_1s`
folded in the same transaction. A progress bar shows the bytes read and the rows stored.
This is the fast path for historical analysis: no exchange, no network.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .dumps import DumpReader
from .errors import DataError
from .model import Trade

__all__ = ["configure", "run", "load_files", "LoadResult"]

BATCH_ROWS = 50_000


@dataclass
class LoadResult:
    """What a load did."""

    files: int = 0
    rows: int = 0
    inserted: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="dumps (.zip/.csv) or stream recordings (.gz/.txt)")
    p.add_argument("--symbol", default=None, help="symbol of dumps whose file name does not say it (e.g. BTCUSDT)")
    p.add_argument("--batch", type=int, default=BATCH_ROWS, help=f"rows per transaction (default {BATCH_ROWS})")
    p.add_argument("--dsn", default=None, help="database (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in cron jobs)")


def _batches(rows: Iterable[Trade], size: int) -> Iterable[list[Trade]]:
    batch: list[Trade] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_files(
    paths: Sequence[str | Path],
    *,
    dsn: str | None = None,
    symbol: str | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: bool = True,
) -> LoadResult:
    """Store every trade of the files (see the module doc); return the counts."""
    from tqdm import tqdm

    from . import db
    from .writer import TradeWriter

    if batch_rows < 1:
        raise DataError("--batch must be at least 1 row")
    readers = [DumpReader(Path(p), symbol=symbol, source="replay") for p in paths]  # checks every file first
    total = sum(r.size for r in readers)
    result = LoadResult()
    t0 = time.perf_counter()
    conn = db.connect(dsn)
    try:
        writer = TradeWriter(conn)
        bar = tqdm(total=total, unit="B", unit_scale=True, disable=not progress, file=sys.stderr, desc="loading")
        for reader in readers:
            bar.set_description(reader.path.name[:40])
            seen = 0
            for batch in _batches(reader, batch_rows):
                res = writer.write(batch)
                result.rows += len(batch)
                result.inserted += res.inserted
                bar.update(reader.bytes_read - seen)
                seen = reader.bytes_read
                bar.set_postfix(trades=f"{result.rows:,}", new=f"{result.inserted:,}", refresh=False)
            bar.update(reader.size - seen)
            result.files += 1
            result.skipped_lines += reader.skipped
        bar.close()
    finally:
        conn.close()
    result.seconds = time.perf_counter() - t0
    return result


def run(args: argparse.Namespace) -> int:
    res = load_files(
        args.files, dsn=args.dsn, symbol=args.symbol, batch_rows=args.batch, progress=not args.no_progress
    )
    rate = res.rows / res.seconds if res.seconds else 0.0
    print(
        f"loaded {res.rows:,} trades from {res.files} file(s): {res.inserted:,} new, {res.duplicates:,} already stored"
        + (f", {res.skipped_lines:,} non-trade lines skipped" if res.skipped_lines else "")
        + f" ({res.seconds:.1f} s, {rate:,.0f} trades/s)"
    )
    return 0
