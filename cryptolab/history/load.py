"""Import data.binance.vision dumps and stream recordings into the database.

`cryptolab load FILE…` reads trades / aggTrades dumps (zip, gz or csv) and raw stream
recordings (gz or plain; see `cryptolab.binance.dumps`) and stores them (`source='replay'`):

* a **trades dump** goes the history loader's way (`cryptolab.history.store`): its CSV is
  `COPY`ed into a scratch table and moved into `trades` by one `INSERT … SELECT` — with no
  per-row dedupe when its days hold no trade of the symbol yet (the bulk path), else
  leaving out what is already stored (also a trade a capture stored in ms) — and
  `bars_1s` built by one aggregate;
* an **aggTrades dump** goes to `agg_trades`, one row per aggregate with its first and
  last trade id (an aggregate is not a trade: counts are last − first + 1);
* a **recording** goes through the trade writer in batches of ~50k rows (COPY, dedupe,
  `bars_1s` folded in).

Loading a file twice stores it once. One truth per trade id: a trade already stored (also
in ms where the file holds µs, or the other way round) is not stored again; ids that live in
the archive (a day archived and dropped) are not stored again either, and the summary says
how many; a file whose trades contradict the stored trades of the same ids (another
symbol's file under this name, edited prices) is a conflict: refused, named, nothing stored.

A file is all in or all out: its batches share one transaction that commits when the
file's last row is stored. A damaged, truncated or malformed file (or a database error
half-way) rolls back everything of that file and stops with one line saying so; the
files before it stay loaded. A progress bar shows the bytes read and the rows stored.
This is the fast path for historical analysis: no exchange, no network.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..binance.dumps import DumpReader, check_symbol
from ..errors import CryptolabError, DataError
from ..model import Trade

__all__ = ["load_files", "LoadResult"]


BATCH_ROWS = 50_000


@dataclass
class LoadResult:
    """What a load did."""

    files: int = 0
    rows: int = 0
    inserted: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0
    aggregates: int = 0
    aggregates_inserted: int = 0
    archived: int = 0
    """Trades not stored because their ids live in the archive (days archived and dropped)."""

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


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

    from ..storage import db
    from ..storage.writer import TradeWriter
    from .plan import DumpFile
    from .store import Store

    if batch_rows < 1:
        raise DataError("--batch must be at least 1 row")
    if symbol is not None:
        symbol = check_symbol(symbol)
    readers = [DumpReader(Path(p), symbol=symbol, source="replay") for p in paths]  # checks every file first
    total = sum(r.size for r in readers)
    result = LoadResult()
    t0 = time.perf_counter()
    real_dsn = db.resolve_dsn(dsn)
    conn = db.connect(real_dsn, autocommit=True)
    store: Store | None = None
    bar = tqdm(total=total, unit="B", unit_scale=True, disable=not progress, file=sys.stderr, desc="loading")
    try:
        for reader in readers:
            bar.set_description(reader.path.name[:40])
            rows = inserted = seen = archived = 0
            try:
                if reader.kind in ("trades", "aggTrades"):
                    # a dump: the history loader's COPY + INSERT…SELECT path (bulk when the days are empty)
                    if store is None:
                        store = Store(conn, "binance", source="replay", dsn=real_dsn)
                    assert reader.symbol is not None
                    f = DumpFile(reader.symbol, reader.kind, "", "daily", date.min, date.max)
                    res = store.load_file(f, reader.path, url=str(reader.path), sha256=None, record=False)
                    if reader.kind == "aggTrades":
                        result.aggregates += res.rows
                        result.aggregates_inserted += res.stored
                    else:
                        rows, inserted = res.rows, res.stored
                        result.archived += res.archived
                    bar.update(reader.size)
                    seen = reader.size
                else:
                    # a fresh writer per file: a rolled-back file must not leave it believing in
                    # partitions (or a staging table) that the rollback took away
                    writer = TradeWriter(conn)
                    with conn.transaction():
                        for batch in _batches(reader, batch_rows):
                            res_w = writer.write(batch)  # a savepoint inside the file's transaction
                            # staging rows are only cleared at COMMIT: clear them per batch, or each
                            # batch would merge all the file's earlier batches again
                            writer.clear_stage()
                            rows += len(batch)
                            inserted += res_w.inserted
                            archived += res_w.archived
                            bar.update(reader.bytes_read - seen)
                            seen = reader.bytes_read
                            bar.set_postfix(trades=f"{result.rows + rows:,}", new=f"{result.inserted + inserted:,}",
                                            refresh=False)
            except CryptolabError as exc:
                before = f"; the {result.files} file(s) before it were loaded" if result.files else ""
                msg = str(exc) if str(reader.path.name) in str(exc) else f"{reader.path}: {exc}"
                if "nothing of this file was stored" in msg or "nothing of it was stored" in msg:
                    msg = msg.split(" — nothing of")[0].split("; nothing of")[0]
                cls = type(exc) if type(exc).__module__ == CryptolabError.__module__ else CryptolabError
                raise cls(f"{msg} — nothing of this file was stored{before}") from None
            bar.update(reader.size - seen)
            result.rows += rows
            result.inserted += inserted
            result.archived += archived
            result.files += 1
            result.skipped_lines += reader.skipped
    finally:
        bar.close()
        if store is not None:
            store.close()
        conn.close()
    result.seconds = time.perf_counter() - t0
    return result
